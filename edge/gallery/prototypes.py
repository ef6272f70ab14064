"""Ranking that also asks "which enrolled *label* is this nearest to?", fitted per gallery.

A gallery item's score for a query blends the query's cosine to the item with its cosine to the
mean of the item's label (the label's *prototype*)::

    score(q, item) = (1 - w) * cos(q, item) + w * cos(q, prototype[label(item)])

With ``w = 0`` this is plain nearest-neighbour search. A larger ``w`` lets the label as a whole
vote, so one stray look-alike of another label no longer pushes the right label out of the top
K. Which ``w`` helps depends on the gallery: on the user's own things, enrolled on a backbone that
never saw them, labels are loose clouds and the vote helps (README, "Fitting the comparison to what
is enrolled"); on the training classes a tight trained cluster outvotes the right item and
``w > 0`` hurts. So ``w`` is chosen by leave-one-out over the enrolled images' labels each time the
gallery changes, together with the rest of the comparison (edge.gallery.comparison).

Prototypes here are plain means of the compared (unit) vectors, not re-normalised: the blend is
then one dot product with ``(1 - w) * item + w * prototype``, and a label with a spread-out
cloud (short mean) pulls less than a tight one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Chosen on the roses+tulips and dandelion+sunflowers held-out splits (leave-one-out picked 0.75
# and 0.25 there; 0.9 never beat 0.75).
PROTOTYPE_WEIGHTS = (0.0, 0.25, 0.5, 0.75)


def label_ids_of(labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Sorted distinct labels and each item's index into them."""
    names, ids = np.unique(np.asarray([str(label) for label in labels]), return_inverse=True)
    return [str(n) for n in names], ids.reshape(-1).astype(np.int64)


def label_sums(vectors: np.ndarray, label_ids: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-label sums of the vectors and per-label item counts."""
    sums = np.zeros((count, vectors.shape[1]), np.float64)
    np.add.at(sums, label_ids, vectors)
    return sums, np.bincount(label_ids, minlength=count)


def prototypes(vectors: np.ndarray, label_ids: np.ndarray, count: int) -> np.ndarray:
    """(labels, D) mean compared vector of each label."""
    sums, counts = label_sums(vectors, label_ids, count)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def blended(similarity: np.ndarray, prototype_similarity: np.ndarray, label_ids: np.ndarray,
            weight: float) -> np.ndarray:
    """(Q, N) item scores from (Q, N) item cosines and (Q, labels) prototype cosines."""
    if weight == 0.0:
        return similarity
    return (1.0 - weight) * similarity + weight * prototype_similarity[:, label_ids]


def leave_one_out_prototype_similarity(vectors: np.ndarray, rows: np.ndarray, label_ids: np.ndarray,
                                       sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(len(rows), labels) cosines of gallery items ``rows`` to every prototype, each item's own
    label's prototype computed without the item (as if it were a query, not enrolled)."""
    queries = vectors[rows].astype(np.float64)
    similarity = queries @ (sums / np.maximum(counts, 1)[:, None]).T
    own = label_ids[rows]
    without = np.einsum("ij,ij->i", queries, sums[own] - queries) / np.maximum(counts[own] - 1, 1)
    similarity[np.arange(len(rows)), own] = without
    return similarity.astype(np.float32)


def leave_one_out_hits(similarity: np.ndarray, prototype_similarity: np.ndarray, rows: np.ndarray,
                       label_ids: np.ndarray, depth: np.ndarray) -> dict[float, float]:
    """For every weight in PROTOTYPE_WEIGHTS, the summed leave-one-out precision of gallery items
    ``rows`` used as queries.

    Args:
      similarity: (len(rows), N) cosines of the rows to every gallery item.
      prototype_similarity: (len(rows), labels) from leave_one_out_prototype_similarity.
      rows: the query items' indices into the gallery (left out of their own ranking).
      label_ids: (N,) every item's label index.
      depth: (len(rows),) precision depth of each query, at least 1 (K capped at its label's
        other items).
    """
    similarity = similarity.copy()
    similarity[np.arange(len(rows)), rows] = -np.inf  # leave the query out
    return ranked_hits(similarity, prototype_similarity, label_ids, label_ids[rows], depth)


def ranked_hits(similarity: np.ndarray, prototype_similarity: np.ndarray, label_ids: np.ndarray,
                query_label_ids: np.ndarray, depth: np.ndarray) -> dict[float, float]:
    """For every weight in PROTOTYPE_WEIGHTS, the summed precision at ``depth`` of queries whose
    (Q, N) cosines to the gallery items and (Q, labels) cosines to the prototypes are given.

    Args:
      label_ids: (N,) every gallery item's label index.
      query_label_ids: (Q,) each query's true label index.
      depth: (Q,) precision depth of each query, at least 1.
    """
    top_k = int(depth.max())
    mask = np.arange(top_k)[None, :] < depth[:, None]
    totals = {}
    for weight in PROTOTYPE_WEIGHTS:
        scores = blended(similarity, prototype_similarity, label_ids, weight)
        top = np.argpartition(-scores, top_k - 1, axis=1)[:, :top_k]
        order = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1, kind="stable"), 1)
        hits = (label_ids[order] == query_label_ids[:, None]) & mask
        totals[weight] = float((hits.sum(1) / depth).sum())
    return totals
