"""How the device compares embeddings, fitted to the gallery the user actually enrolled.

The encoder's output is made of segments (the trained head and the generic branch; the manifest's
``output.segments``), each scaled to unit length times its weight, so cosine similarity is the
weighted sum of the segments' cosines. The best weights depend on what is enrolled: on the classes
the head was trained on the head is sharper, on things it never saw the generic branch generalises
better (README, "Fitting the comparison to the gallery"). So every gallery change refits, in
seconds and without retraining:

- the generic share (the squared weight of the last segment) from a small grid, with every
  segment centred on the gallery's own mean unless that clearly hurts retrieval, and
- how much each label's prototype votes in the ranking (edge.gallery.prototypes),

both together, choosing the combination with the best leave-one-out retrieval over the
enrolled images' own labels; then

- a within-label whitening of the compared vectors (edge.gallery.whitening), kept only when
  k-fold cross-validation over the enrolled images says it retrieves better.

Galleries with too few labelled images keep the bundle's weights and plain nearest-neighbour
ranking (``Comparison.default``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from edge.gallery.prototypes import (PROTOTYPE_WEIGHTS, label_sums, leave_one_out_hits,
                                     leave_one_out_prototype_similarity)
from edge.gallery.whitening import (STRENGTHS, Whitening, can_whiten, cross_validated_precision, fit_whitening,
                                    required_gain)
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
MAX_FIT_ITEMS = 6000
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
    whitening: Whitening | None = None
    """Applied last, to the centred and weighted unit vectors (edge.gallery.whitening)."""
    whitening_scores: tuple[tuple[float | None, float], ...] = ()
    """Cross-validated precision of every whitening strength tried (None: without), at its best vote."""

    @classmethod
    def default(cls, segments: Sequence[Mapping], embedding_size: int) -> "Comparison":
        """The bundle's own comparison: its segment weights, no centring."""
        weights, sizes = _segments(segments, embedding_size)
        return cls(weights, weights, sizes)

    @property
    def is_identity(self) -> bool:
        return self.centres is None and self.whitening is None and np.allclose(self.weights, self.base_weights)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Embeddings as the encoder makes them -> the vectors this comparison takes cosines of."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.centres is None and np.allclose(self.weights, self.base_weights):
            compared = l2_normalize(vectors)
        else:
            parts = _unit_segments(vectors, self.sizes, self.base_weights)
            if self.centres is not None:
                parts = [l2_normalize(p - c) for p, c in zip(parts, _split(self.centres, self.sizes))]
            compared = np.concatenate([w * p for w, p in zip(self.weights, parts)], axis=-1).astype(np.float32)
        return compared if self.whitening is None else self.whitening.apply(compared)

    def without_whitening(self) -> "Comparison":
        return replace(self, whitening=None)

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
            "whitening": None if self.whitening is None else self.whitening.strength,
            "cv_precision_by_whitening": {str(s): round(p, 4) for s, p in self.whitening_scores},
        }

    @classmethod
    def from_json(cls, values: Mapping, centres: np.ndarray | None, source: str = "gallery.json",
                  whitening: tuple[np.ndarray, np.ndarray] | None = None) -> "Comparison":
        """Reads ``to_json``'s output back (centres and the whitening's mean and matrix come from
        their own .npy files)."""
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
        strength = values.get("whitening")  # absent before 0.4
        if (strength is None) != (whitening is None):
            raise ValueError(f"{source}: comparison says whitening={strength!r}, whitening files disagree")
        fitted = None
        if whitening is not None:
            if isinstance(strength, bool) or not isinstance(strength, (int, float)):
                raise ValueError(f"{source}: comparison whitening {strength!r} must be a number")
            fitted = Whitening(whitening[0].astype(np.float32), whitening[1].astype(np.float32), float(strength))
            fitted.check(sum(sizes), source)
        try:
            whitening_scores = tuple((None if s == "None" else float(s), float(p))
                                     for s, p in dict(values.get("cv_precision_by_whitening") or {}).items())
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: comparison cv_precision_by_whitening is malformed ({error})") from error
        return cls(base, weights, sizes, centres, str(values.get("source", "gallery")),
                   None if score is None else float(score), None if default is None else float(default),
                   float(prototype_weight), prototype_scores, fitted, whitening_scores)


def fit_comparison(embeddings: np.ndarray, labels: Sequence[str], segments: Sequence[Mapping],
                   seed: int = 0) -> Comparison:
    """The whole fit (module doc): segment weights, centring and label vote (:func:`fit_segments`),
    then whitening when cross-validation keeps it (:func:`fit_whitening_step`)."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    return fit_whitening_step(fit_segments(embeddings, labels, segments, seed), embeddings, labels, seed)


def fit_whitening_step(comparison: Comparison, embeddings: np.ndarray, labels: Sequence[str],
                       seed: int = 0) -> Comparison:
    """``comparison`` with a within-label whitening on top (and the label vote that suits it) when
    5-fold cross-validation over the gallery's labels says it beats ``comparison`` without it by
    whitening.required_gain; else ``comparison`` unchanged but for the scores tried. Not tried
    below whitening.MIN_ITEMS images or with a median label of fewer than 5 (can_whiten).

    Both sides are scored the same way (held-out folds, each at its best vote), so a metric fitted
    on the gallery cannot win by having seen its own queries. Fitted on the same sample as the rest.
    """
    labels = np.asarray([str(label) for label in labels])
    sample = fit_sample(len(labels), seed)
    if not can_whiten(labels[sample]) or loo_queries(labels[sample], seed) is None:
        return replace(comparison, whitening=None, whitening_scores=())
    label_ids = np.unique(labels[sample], return_inverse=True)[1].reshape(-1)
    vectors = comparison.without_whitening().apply(np.asarray(embeddings, np.float32)[sample])
    scores, queried = cross_validated_precision(vectors, label_ids, (None, *STRENGTHS), MAX_FIT_QUERIES, seed)
    best = {s: max(by_vote.items(), key=lambda vote_precision: (vote_precision[1], -vote_precision[0]))
            for s, by_vote in scores.items()}  # strength -> (its best vote, precision)
    tried = tuple((s, best[s][1]) for s in scores)
    strength = max(STRENGTHS, key=lambda s: (best[s][1], s))  # on a tie, the milder whitening
    if best[strength][1] < best[None][1] + required_gain(queried):
        return replace(comparison, whitening=None, whitening_scores=tried)
    return replace(comparison, whitening=fit_whitening(vectors, label_ids, strength), prototype_weight=best[strength][0],
                   source="gallery", whitening_scores=tried)


def fit_segments(embeddings: np.ndarray, labels: Sequence[str], segments: Sequence[Mapping],
                 seed: int = 0) -> Comparison:
    """Chooses segment weights and the label vote together, by leave-one-out retrieval over the
    gallery's labels; centred on the gallery's mean unless that clearly hurts retrieval.

    Jointly, not one after the other: the share that is best for plain nearest-neighbour search is
    often not the one that is best once labels vote (on held-out daisy+roses plain search wanted
    the bundle's 0.4 generic share, the vote wanted 1.0; README, "Fitting the comparison").
    Centred, because centring removes what everything enrolled has in common, and so what things
    of the same kind that were *not* enrolled share with it: uncentred, the roses+tulips gallery
    accepted 49 % of its own queries at the default FAR, centred 77 % (both rejecting 84 % or more
    of the flowers not enrolled), at 0.0-0.9 points of P@5. So the best centred candidate is taken
    unless the best uncentred one beats it by MIN_GAIN.

    Args:
      embeddings: (N, D) gallery embeddings as the encoder makes them (manifest weights).
      labels: (N,) their labels.
      segments: the manifest's ``output.segments`` (empty: one segment).
      seed: picks the items the fit looks at when there are more than MAX_FIT_ITEMS, and the
        leave-one-out queries among them when there are more than MAX_FIT_QUERIES.

    Returns:
      The chosen (centring, share, vote), or the bundle's comparison when there is too little to tell
      or no candidate beats it (bundle weights, no centring, no vote) by MIN_GAIN.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    default = Comparison.default(segments, embeddings.shape[1] if embeddings.ndim == 2 else 0)
    labels = np.asarray([str(label) for label in labels])
    sample = fit_sample(len(labels), seed)
    queries = loo_queries(labels[sample], seed)
    if queries is None:
        return default
    label_ids = np.unique(labels[sample], return_inverse=True)[1].reshape(-1)
    parts = _unit_segments(embeddings, default.sizes, default.base_weights)
    centres = [p.mean(axis=0) for p in parts]  # of the whole gallery, as apply() will use them
    variants = {False: [p[sample] for p in parts], True: [l2_normalize(p[sample] - c) for p, c in zip(parts, centres)]}
    shares = GENERIC_SHARES if len(parts) == 2 else (None,)
    default_key = (False, None if len(parts) != 2 else _share_of(default.base_weights))
    candidates = [(centred, share) for centred in (True, False) for share in shares]
    if default_key not in candidates:  # the bundle's share is not on the grid: score it too
        candidates.append(default_key)
    scores = _loo_precision(variants, candidates, label_ids, queries, default.base_weights)
    default_score = scores[default_key][0.0]

    def best_of(centred: bool) -> tuple[tuple, float]:
        return max(((c, w) for c in candidates if c[0] == centred for w in PROTOTYPE_WEIGHTS),
                   key=lambda cw: (scores[cw[0]][cw[1]], -cw[1]))

    best, vote = best_of(True)
    uncentred, uncentred_vote = best_of(False)
    if scores[uncentred][uncentred_vote] >= scores[best][vote] + MIN_GAIN:
        best, vote = uncentred, uncentred_vote  # centring clearly hurts this gallery's retrieval
    if scores[best][vote] < default_score + MIN_GAIN:
        return Comparison(default.base_weights, default.base_weights, default.sizes, None, "bundle",
                          default_score, default_score)
    centred, share = best
    weights = default.base_weights if share is None else _weights_of(share)
    return Comparison(default.base_weights, weights, default.sizes,
                      np.concatenate(centres).astype(np.float32) if centred else None,
                      "gallery", scores[best][vote], default_score, vote, tuple(sorted(scores[best].items())))


def fit_sample(count: int, seed: int = 0) -> np.ndarray:
    """Indices of the gallery items a fit looks at: all of them, or MAX_FIT_ITEMS drawn at random
    (seeded) from a larger gallery, so that a refit costs the same at 5,000 items and at 100,000."""
    if count <= MAX_FIT_ITEMS:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, MAX_FIT_ITEMS, replace=False))


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
    """Mean leave-one-out precision at min(LOO_K, same-label items - 1) of every candidate
    (centred, share) at every prototype weight: {candidate: {weight: precision}}.

    Cosines and prototype cosines are computed once per segment and variant; a candidate's are
    their weighted sums (both are linear in the segments' squared weights).
    """
    counts = np.bincount(label_ids)
    depth = np.minimum(LOO_K, counts[label_ids[queries]] - 1)
    sums = {centred: [label_sums(p, label_ids, len(counts))[0] for p in parts] for centred, parts in variants.items()}
    totals = {c: dict.fromkeys(PROTOTYPE_WEIGHTS, 0.0) for c in candidates}
    for start in range(0, len(queries), CHUNK):
        rows = queries[start : start + CHUNK]
        cosines = {centred: [p[rows] @ p.T for p in parts] for centred, parts in variants.items()}
        to_prototypes = {centred: [leave_one_out_prototype_similarity(p, rows, label_ids, s, counts)
                                   for p, s in zip(parts, sums[centred])] for centred, parts in variants.items()}
        for candidate in candidates:
            centred, share = candidate
            weights = base_weights if share is None else _weights_of(share)
            similarity = sum(w * w * c for w, c in zip(weights, cosines[centred]))
            to_prototype = sum(w * w * c for w, c in zip(weights, to_prototypes[centred]))
            hits = leave_one_out_hits(similarity, to_prototype, rows, label_ids, depth[start : start + CHUNK])
            for weight, total in hits.items():
                totals[candidate][weight] += total
    return {c: {w: t / len(queries) for w, t in by_weight.items()} for c, by_weight in totals.items()}


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
