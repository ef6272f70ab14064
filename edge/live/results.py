"""One frame's answer: the decision, the top-K, and the JSON line that reports it.

``identify`` is the one place the live loop turns a query vector into a decision: the gallery's
open-set answer (edge.gallery.index.Gallery.identify: a label, or None for unknown).
"""

from __future__ import annotations

import json
import time

import numpy as np

from edge.gallery.store import Gallery, Identification


Answer = Identification  # the decision (a label, or None for "unknown") and the matches behind it


def identify(gallery: Gallery, vector: np.ndarray, k: int, search_k: int | None = None,
             exact: bool | None = None) -> Answer:
    """The gallery's open-set answer for one query vector."""
    return gallery.identify(vector, k, search_k, exact)


def frame_record(number: int, captured: float, answer: Answer, done: float | None = None) -> dict:
    """The JSON object for one processed frame.

    ``captured`` is the unix time the frame's grab returned, ``latency_ms`` the time from then to
    this result (``done``, default now).
    """
    done = time.time() if done is None else done
    return {"query": number, **answer.to_json(), "captured": round(captured, 4),
            "latency_ms": round((done - captured) * 1000.0, 2)}


def frame_line(record: dict) -> str:
    return json.dumps(record)
