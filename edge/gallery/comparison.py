"""How the device compares embeddings, fitted to the gallery the user actually enrolled.

The encoder's output is made of segments (the trained head and the generic branch; the manifest's
``output.segments``), each scaled to unit length times its weight, so cosine similarity is the
weighted sum of the segments' cosines. The best weights depend on what is enrolled: on the classes
the head was trained on the head is sharper, on things it never saw the generic branch generalises
better (README, "Fitting the comparison to the gallery"). So every gallery change refits, in
seconds and without retraining:

- the generic share (the squared weight of the last segment) from a small grid, and
- whether to centre each segment on the gallery's own mean before comparing,

choosing the candidate with the best leave-one-out retrieval over the enrolled images' own labels;
then, on the vectors so compared, how much each label's prototype votes in the ranking
(edge.gallery.prototypes). Galleries with too few labelled images keep the bundle's weights and
plain nearest-neighbour ranking (``Comparison.default``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from edge.gallery.prototypes import fit_prototype_weight
from edge.metrics import l2_normalize

GENERIC_SHARES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# A candidate must beat the bundle's own weights by this much leave-one-out precision to replace
# them: small galleries are noisy, and the bundle's weights were chosen on far more data.
MIN_GAIN = 0.005
MIN_LABELS = 2
MIN_ITEMS_PER_LABEL = 2
MIN_QUERIES = 6
LOO_K = 5
MAX_FIT_QUERIES = 2000
CHUNK = 256


@dataclass(frozen=True)
class Comparison:
    """Per-segment weights (squares sum to 1) and optional per-segment centres, applied to
    embeddings made with the manifest's ``base_weights``."""

    base_weights: tuple[float, ...]
    weights: tuple[float, ...]
    sizes: tuple[int, ...]
    centres: np.ndarray | None = None
    source: str = "bundle"
    """"bundle" (manifest weights, nothing fitted) or "gallery" (fitted leave-one-out)."""
    score: float | None = None
    """Leave-one-out precision of the chosen candidate (None when nothing was fitted)."""
    default_score: float | None = None
    prototype_weight: float = 0.0
    """How much an item's label prototype counts in its score (0: plain nearest neighbours)."""
    prototype_scores: tuple[tuple[float, float], ...] = ()
    """Leave-one-out precision of every prototype weight tried, as (weight, precision)."""

    @classmethod
    def default(cls, segments: Sequence[Mapping], embedding_size: int) -> "Comparison":
        """The bundle's own comparison: its segment weights, no centring."""
        weights, sizes = _segments(segments, embedding_size)
        return cls(weights, weights, sizes)

    @property
    def is_identity(self) -> bool:
        return self.centres is None and np.allclose(self.weights, self.base_weights)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Embeddings as the encoder makes them -> the vectors this comparison takes cosines of."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.is_identity:
            return l2_normalize(vectors)
        parts = _unit_segments(vectors, self.sizes, self.base_weights)
        if self.centres is not None:
            parts = [l2_normalize(p - c) for p, c in zip(parts, _split(self.centres, self.sizes))]
        return np.concatenate([w * p for w, p in zip(self.weights, parts)], axis=-1).astype(np.float32)

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "weights": [round(w, 6) for w in self.weights],
            "base_weights": [round(w, 6) for w in self.base_weights],
            "sizes": list(self.sizes),
            "centred": self.centres is not None,
            "loo_precision": None if self.score is None else round(self.score, 4),
            "loo_precision_bundle_weights": None if self.default_score is None else round(self.default_score, 4),
            "prototype_weight": self.prototype_weight,
            "loo_precision_by_prototype_weight": {str(w): round(p, 4) for w, p in self.prototype_scores},
        }

    @classmethod
    def from_json(cls, values: Mapping, centres: np.ndarray | None, source: str = "gallery.json") -> "Comparison":
        """Reads ``to_json``'s output back (centres come from their own .npy file)."""
        try:
            sizes = tuple(int(s) for s in values["sizes"])
            weights = tuple(float(w) for w in values["weights"])
            base = tuple(float(w) for w in values["base_weights"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source}: comparison needs sizes, weights, base_weights ({error})") from error
        _check_weights(weights, sizes, source)
        _check_weights(base, sizes, source)
        if bool(values.get("centred")) != (centres is not None):
            raise ValueError(f"{source}: comparison says centred={values.get('centred')}, centres file disagrees")
        if centres is not None and (centres.shape != (sum(sizes),) or not np.isfinite(centres).all()):
            raise ValueError(f"{source}: comparison centres have shape {centres.shape}, expected ({sum(sizes)},) finite")
        score = values.get("loo_precision")
        default = values.get("loo_precision_bundle_weights")
        prototype_weight = values.get("prototype_weight", 0.0)  # absent in versions before 0.3
        if isinstance(prototype_weight, bool) or not isinstance(prototype_weight, (int, float)) \
                or not 0.0 <= prototype_weight < 1.0:
            raise ValueError(f"{source}: comparison prototype_weight {prototype_weight!r} must be a number in [0, 1)")
        tried = values.get("loo_precision_by_prototype_weight") or {}
        try:
            prototype_scores = tuple((float(w), float(p)) for w, p in dict(tried).items())
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: comparison loo_precision_by_prototype_weight is malformed ({error})") from error
        return cls(base, weights, sizes, centres, str(values.get("source", "gallery")),
                   None if score is None else float(score), None if default is None else float(default),
                   float(prototype_weight), prototype_scores)


def fit_comparison(embeddings: np.ndarray, labels: Sequence[str], segments: Sequence[Mapping],
                   seed: int = 0) -> Comparison:
    """Chooses weights and centring by leave-one-out retrieval over the gallery's labels.

    Args:
      embeddings: (N, D) gallery embeddings as the encoder makes them (manifest weights).
      labels: (N,) their labels.
      segments: the manifest's ``output.segments`` (empty: one segment).
      seed: picks the leave-one-out queries when there are more than MAX_FIT_QUERIES.

    Returns:
      The best candidate, or the bundle's comparison when there is too little to tell or no
      candidate beats it by MIN_GAIN; either way with the prototype weight fitted on top.
    """
    queries = loo_queries(labels, seed)
    chosen = _fit_segments(embeddings, labels, segments, queries)
    if queries is None:
        return chosen
    weight, tried = fit_prototype_weight(chosen.apply(embeddings), labels, queries, LOO_K)
    return replace(chosen, prototype_weight=weight, prototype_scores=tuple(sorted(tried.items())))


def _fit_segments(embeddings: np.ndarray, labels: Sequence[str], segments: Sequence[Mapping],
                  queries: np.ndarray | None) -> Comparison:
    """fit_comparison's first half: segment weights and centring, on the leave-one-out ``queries``."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    default = Comparison.default(segments, embeddings.shape[1] if embeddings.ndim == 2 else 0)
    if queries is None:
        return default
    label_ids = np.unique(np.asarray(labels), return_inverse=True)[1]
    parts = _unit_segments(embeddings, default.sizes, default.base_weights)
    centres = np.concatenate([p.mean(axis=0) for p in parts]).astype(np.float32)
    variants = {False: parts, True: [l2_normalize(p - p.mean(axis=0)) for p in parts]}
    shares = GENERIC_SHARES if len(parts) == 2 else (None,)
    candidates = [(centred, share) for centred in (False, True) for share in shares]
    scores = _loo_precision(variants, candidates, label_ids, queries, default.base_weights)
    default_key = (False, None if len(parts) != 2 else _share_of(default.base_weights))
    default_score = scores.get(default_key)
    if default_score is None:  # the bundle's share is not on the grid: score it too
        default_score = _loo_precision(variants, [default_key], label_ids, queries, default.base_weights)[default_key]
    best = max(candidates, key=lambda c: (scores[c], c == default_key))
    if scores[best] < default_score + MIN_GAIN:
        return Comparison(default.base_weights, default.base_weights, default.sizes, None, "bundle",
                          default_score, default_score)
    centred, share = best
    weights = default.base_weights if share is None else _weights_of(share)
    return Comparison(default.base_weights, weights, default.sizes, centres if centred else None, "gallery",
                      scores[best], default_score)


def loo_queries(labels: Sequence[str], seed: int = 0) -> np.ndarray | None:
    """Indices of items usable as leave-one-out queries (their label has another item), or None
    when the gallery has too few labels or images to fit anything."""
    labels = np.asarray(list(labels))
    if labels.size == 0:
        return None
    names, ids, counts = np.unique(labels, return_inverse=True, return_counts=True)
    usable = counts[ids] >= MIN_ITEMS_PER_LABEL
    if int((counts >= MIN_ITEMS_PER_LABEL).sum()) < MIN_LABELS or int(usable.sum()) < MIN_QUERIES:
        return None
    chosen = np.flatnonzero(usable)
    if len(chosen) > MAX_FIT_QUERIES:
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, MAX_FIT_QUERIES, replace=False))
    return chosen


def _loo_precision(variants, candidates, label_ids, queries, base_weights) -> dict:
    """Mean leave-one-out precision at min(LOO_K, same-label items - 1) for every candidate."""
    counts = np.bincount(label_ids)
    depth = np.minimum(LOO_K, counts[label_ids[queries]] - 1)
    k = int(depth.max())
    totals = {c: 0.0 for c in candidates}
    for start in range(0, len(queries), CHUNK):
        rows = queries[start : start + CHUNK]
        cosines = {centred: [p[rows] @ p.T for p in parts] for centred, parts in variants.items()}
        for candidate in candidates:
            centred, share = candidate
            weights = base_weights if share is None else _weights_of(share)
            similarity = sum(w * w * c for w, c in zip(weights, cosines[centred]))
            similarity[np.arange(len(rows)), rows] = -np.inf  # leave the query out
            top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            order = np.take_along_axis(top, np.argsort(-np.take_along_axis(similarity, top, 1), 1, kind="stable"), 1)
            hits = label_ids[order] == label_ids[rows][:, None]
            mask = np.arange(k)[None, :] < depth[start : start + CHUNK][:, None]
            totals[candidate] += float(((hits & mask).sum(1) / depth[start : start + CHUNK]).sum())
    return {c: totals[c] / len(queries) for c in candidates}


def _segments(segments: Sequence[Mapping], embedding_size: int) -> tuple[tuple[float, ...], tuple[int, ...]]:
    if not segments:
        return (1.0,), (int(embedding_size),)
    return tuple(float(s["weight"]) for s in segments), tuple(int(s["size"]) for s in segments)


def _unit_segments(vectors: np.ndarray, sizes, base_weights) -> list[np.ndarray]:
    return [l2_normalize(p / w) for p, w in zip(_split(vectors, sizes), base_weights)]


def _split(vectors: np.ndarray, sizes) -> list[np.ndarray]:
    if vectors.shape[-1] != sum(sizes):
        raise ValueError(f"vectors have {vectors.shape[-1]} values, segments {list(sizes)} add up to {sum(sizes)}")
    return np.split(vectors, np.cumsum(sizes)[:-1], axis=-1)


def _weights_of(share: float) -> tuple[float, float]:
    return (math.sqrt(1.0 - share), math.sqrt(share))


def _share_of(weights: Sequence[float]) -> float | None:
    share = round(float(weights[-1]) ** 2, 6)
    return next((s for s in GENERIC_SHARES if abs(s - share) < 1e-4), share)


def _check_weights(weights, sizes, source) -> None:
    if len(weights) != len(sizes) or not all(math.isfinite(w) and w >= 0 for w in weights) \
            or abs(sum(w * w for w in weights) - 1.0) > 1e-3:
        raise ValueError(f"{source}: comparison weights {list(weights)} must be {len(sizes)} finite values "
                         "whose squares sum to 1")
