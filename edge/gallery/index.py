"""A loaded gallery version: nearest neighbours of a query, and the open-set decision.

Search compares vectors the way the gallery's fitted :class:`Comparison` says (segment weights,
centring, and how much each label's prototype votes: edge.gallery.prototypes); galleries of up to
EXACT_SEARCH_MAX_ITEMS are searched exactly with numpy, larger ones through Annoy when it is
installed (exact otherwise; with a prototype vote, Annoy's nearest RERANK_CANDIDATES are re-scored).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.gallery.comparison import Comparison
from edge.gallery.openset import Calibration
from edge.gallery.prototypes import blended, label_ids_of, prototypes
from edge.layout import THUMBS, confined

log = logging.getLogger(__name__)

# Nodes Annoy inspects per query unless told otherwise. Fixed (not Annoy's trees * k) so that the
# top 5 is always the prefix of the top 10, and high enough for recall >= 0.99 on galleries of
# tens of thousands (benchmarks/RESULTS.md measures it against exact search).
DEFAULT_SEARCH_K = 4000
# Below this many items exact numpy search is both faster and exact (benchmarks/RESULTS.md:
# 10,000 x 128-d exact 0.15 ms vs Annoy at search_k 4000 0.29 ms), so "auto" uses it.
EXACT_SEARCH_MAX_ITEMS = 10_000
# Annoy candidates re-scored with the prototype vote (approximate search with w > 0).
RERANK_CANDIDATES = 200


class GalleryError(ValueError):
    """A gallery is missing, corrupt, or does not belong to the model."""


@dataclass(frozen=True)
class Match:
    """One search result; distance is cosine distance (1 - cos), similarity is cos, and score is
    what the gallery ranks by (the similarity blended with the label's prototype vote; equal to
    the similarity when the gallery fitted no vote)."""

    label: str
    path: str
    distance: float
    similarity: float
    thumbnail: str | None = None
    score: float = float("nan")

    def __post_init__(self):
        if self.score != self.score:  # NaN: not given
            object.__setattr__(self, "score", self.similarity)

    def to_json(self) -> dict:
        return {"label": self.label, "path": self.path, "distance": round(self.distance, 6),
                "similarity": round(self.similarity, 6), "score": round(self.score, 6)}


@dataclass(frozen=True)
class Identification:
    """The open-set answer for one query: the accepted label, or None for unknown, and why."""

    label: str | None
    matches: list[Match]
    reason: str
    """"accepted", "below threshold", "nothing in view" or "empty gallery"."""
    score: float = float("nan")
    threshold: float = float("nan")

    def to_json(self) -> dict:
        return {"label": self.label, "reason": self.reason, "score": _rounded(self.score),
                "threshold": _rounded(self.threshold), "matches": [m.to_json() for m in self.matches]}


@dataclass(frozen=True)
class GalleryItems:
    """What a gallery holds, in index order. ``hashes`` are sha256 digests of the enrolled files'
    bytes (None for items enrolled from arrays or by older versions)."""

    embeddings: np.ndarray
    labels: list[str]
    paths: list[str]
    thumbnails: list[str | None]
    hashes: list[str | None] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.hashes is None:
            object.__setattr__(self, "hashes", [None] * len(self.labels))
        n = len(self.embeddings)
        if not (len(self.labels) == len(self.paths) == len(self.thumbnails) == len(self.hashes) == n):
            raise GalleryError(
                f"gallery items disagree: {n} embeddings, {len(self.labels)} labels, "
                f"{len(self.paths)} paths, {len(self.thumbnails)} thumbnails, {len(self.hashes)} hashes"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def concat(self, other: "GalleryItems") -> "GalleryItems":
        return GalleryItems(
            np.concatenate([self.embeddings, other.embeddings]).astype(np.float32),
            self.labels + other.labels, self.paths + other.paths, self.thumbnails + other.thumbnails,
            self.hashes + other.hashes,
        )

    def select(self, keep: list[int]) -> "GalleryItems":
        return GalleryItems(self.embeddings[keep], [self.labels[i] for i in keep], [self.paths[i] for i in keep],
                            [self.thumbnails[i] for i in keep], [self.hashes[i] for i in keep])

    def without_label(self, label: str) -> "GalleryItems":
        return self.select([i for i, item_label in enumerate(self.labels) if item_label != label])

    @classmethod
    def empty(cls, dim: int) -> "GalleryItems":
        return cls(np.zeros((0, dim), np.float32), [], [], [], [])


class Gallery:
    """A loaded gallery version: search by vector, identify with the open-set rule."""

    def __init__(self, root: Path, info: dict, items: GalleryItems, index, comparison: Comparison,
                 calibration: Calibration | None, background: np.ndarray | None, version: str = ""):
        self.root = Path(root)
        self.info = info
        self.items = items
        self.index = index
        self.comparison = comparison
        self.calibration = calibration
        self.version = version
        self.vectors = comparison.apply(items.embeddings) if len(items) else items.embeddings
        self.label_names, self.label_ids = label_ids_of(items.labels)
        self.prototypes = prototypes(self.vectors, self.label_ids, len(self.label_names)) \
            if comparison.prototype_weight > 0 and len(items) else None
        self.stored_background = background  # as the encoder made them: what the next version keeps
        self.background = comparison.apply(background) if background is not None and len(background) else None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def embedding_size(self) -> int:
        return int(self.info["embedding_size"])

    def compare(self, vector: np.ndarray) -> np.ndarray:
        """An encoder embedding -> the unit vector this gallery compares."""
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.embedding_size:
            raise GalleryError(f"query has {vector.shape[0]} dimensions, the gallery {self.embedding_size}")
        if not np.isfinite(vector).all():
            raise GalleryError("query embedding holds NaN or infinite values")
        return self.comparison.apply(vector[None, :])[0]

    def search(self, vector: np.ndarray, k: int = 5, search_k: int | None = None,
               exact: bool | None = None) -> list[Match]:
        """The ``k`` nearest items to an encoder embedding, best first.

        Args:
          vector: (D,) query embedding as the encoder makes it.
          k: results wanted.
          search_k: Annoy nodes to inspect; None uses the gallery's ``search_k`` (gallery.json),
            -1 Annoy's own default (trees * k). More is slower and closer to exact.
          exact: True brute-force numpy search, False Annoy, None (auto) exact for galleries of at
            most EXACT_SEARCH_MAX_ITEMS items and Annoy above. Without Annoy, always exact.
        """
        return self._search(self.compare(vector), k, search_k, exact)

    def identify(self, vector: np.ndarray, k: int = 5, search_k: int | None = None,
                 exact: bool | None = None) -> Identification:
        """Top-k matches plus the decision: the top label when it is close enough and nearer
        than every "nothing" frame (edge.gallery.openset), else None."""
        query = self.compare(vector)
        matches, nearest = self._ranked(query, k, search_k, exact)
        if not matches:
            return Identification(None, [], "empty gallery")
        score = matches[0].score
        threshold = self.calibration.threshold if self.calibration else float("nan")
        # the nearest enrolled item by plain cosine (as the background is compared), whatever k
        if self.background is not None and float((self.background @ query).max()) >= nearest:
            return Identification(None, matches, "nothing in view", score, threshold)
        if self.calibration is not None and score < threshold:
            return Identification(None, matches, "below threshold", score, threshold)
        return Identification(matches[0].label, matches, "accepted", score, threshold)

    def is_background(self, vector: np.ndarray, than: float) -> bool:
        """Whether an embedding is at least as close to a "nothing" frame as the similarity ``than``."""
        if self.background is None:
            return False
        return float((self.background @ self.compare(vector)).max()) >= than

    def _search(self, query: np.ndarray, k: int, search_k: int | None, exact: bool | None) -> list[Match]:
        return self._ranked(query, k, search_k, exact)[0]

    def _ranked(self, query: np.ndarray, k: int, search_k: int | None,
                exact: bool | None) -> tuple[list[Match], float]:
        """The top ``k`` by score, and the highest plain cosine of any item searched."""
        if len(self) == 0:
            return [], float("-inf")
        k = min(k, len(self))
        if exact is None:
            exact = len(self) <= EXACT_SEARCH_MAX_ITEMS
        if not exact and self.index is None:
            exact = True
        if exact:
            similarity = self.vectors @ query
            candidates = np.arange(len(self))
        else:
            if search_k is None:
                search_k = int(self.info.get("search_k", DEFAULT_SEARCH_K))
            wanted = k if self.prototypes is None else max(k, min(RERANK_CANDIDATES, len(self)))
            ids, distances = self.index.get_nns_by_vector(query.tolist(), wanted, search_k=search_k,
                                                          include_distances=True)
            candidates = np.asarray(ids, dtype=np.int64)
            # Annoy's angular distance is sqrt(2 - 2 cos) for unit vectors.
            similarity = 1.0 - np.asarray(distances, dtype=np.float64) ** 2 / 2.0
        scores = similarity
        if self.prototypes is not None:
            vote = (self.prototypes @ query)[None, :]
            scores = blended(similarity[None, :], vote, self.label_ids[candidates], self.comparison.prototype_weight)[0]
        order = np.argsort(-scores, kind="stable")[:k]
        matches = [self._match(int(candidates[i]), float(similarity[i]), float(scores[i])) for i in order]
        return matches, float(np.max(similarity))

    def _match(self, i: int, similarity: float, score: float) -> Match:
        items = self.items
        return Match(items.labels[i], items.paths[i], 1.0 - similarity, similarity, items.thumbnails[i], score)

    def thumbnail_path(self, match: Match) -> Path | None:
        if not match.thumbnail:
            return None
        return confined(self.root, f"{THUMBS}/{match.thumbnail}", "thumbnail")

    def label_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for label in self.items.labels:
            counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))


def _rounded(value: float) -> float | None:
    return round(float(value), 6) if np.isfinite(value) else None
