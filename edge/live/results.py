"""One frame's answer: the decision, the top-K, and the JSON line that reports it.

``identify`` is the one place that turns a query vector into a decision; until the gallery has
open-set answers (issue 10: ``Gallery.identify`` -> label or None for unknown) the decision is
the top-1 match's label.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from edge.gallery.store import Gallery, Match


@dataclass(frozen=True)
class Answer:
    """The decision (a label, or None for "unknown") and the matches behind it, best first."""

    label: str | None
    matches: list[Match]


def identify(gallery: Gallery, vector: np.ndarray, k: int, search_k: int | None = None,
             exact: bool | None = None) -> Answer:
    """The gallery's answer for one query vector (top-1 label until open-set answers land)."""
    matches = gallery.search(vector, k, search_k, exact)
    return Answer(matches[0].label if matches else None, matches)


def frame_record(number: int, captured: float, answer: Answer, done: float | None = None) -> dict:
    """The JSON object for one processed frame.

    ``captured`` is the unix time the frame's grab returned, ``latency_ms`` the time from then to
    this result (``done``, default now).
    """
    done = time.time() if done is None else done
    return {"query": number, "label": answer.label, "captured": round(captured, 4),
            "latency_ms": round((done - captured) * 1000.0, 2), "matches": [m.to_json() for m in answer.matches]}


def frame_line(record: dict) -> str:
    return json.dumps(record)
