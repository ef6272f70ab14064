"""Retrieval and verification metrics, numpy only (shared by the device and the workstation).

Conventions:
- Embeddings are compared by cosine similarity; *distance* is ``1 - cosine``.
- Retrieval: every query is ranked against a gallery; a retrieved item is relevant when its label
  equals the query's label.
- Verification: ``same`` is 1 for a pair of the same class, 0 otherwise; a pair is accepted as
  "same" when its distance is <= the threshold.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np


def l2_normalize(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Returns float32 rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, eps)


def segment_normalize(vectors: np.ndarray, segments: Sequence[Mapping]) -> np.ndarray:
    """Rows made of consecutive segments (mappings with ``size`` and ``weight``), each scaled to
    unit length and multiplied by its weight; no segments: plain ``l2_normalize``.

    With weights whose squares sum to 1 the result is a unit vector whose cosine similarity is
    the weighted sum of the segments' cosines (weight squared each).
    """
    if not segments:
        return l2_normalize(vectors)
    vectors = np.asarray(vectors, dtype=np.float32)
    sizes = [int(segment["size"]) for segment in segments]
    if vectors.shape[-1] != sum(sizes):
        raise ValueError(f"vectors have {vectors.shape[-1]} values, segments {sizes} add up to {sum(sizes)}")
    ends = np.cumsum(sizes)
    parts = np.split(vectors, ends[:-1], axis=-1)
    return np.concatenate(
        [float(segment["weight"]) * l2_normalize(part) for segment, part in zip(segments, parts)], axis=-1
    )


def cosine_similarity_matrix(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Returns the (num_queries, num_gallery) cosine similarities."""
    return l2_normalize(queries) @ l2_normalize(gallery).T


def ranked_gallery_labels(
    queries: np.ndarray,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    k: int,
    exclude_self: bool = False,
) -> np.ndarray:
    """Labels of the top-``k`` gallery items for every query, best first.

    Args:
      queries: (Q, D) embeddings.
      gallery: (G, D) embeddings.
      gallery_labels: (G,) labels.
      k: how many neighbours to keep (clipped to the gallery size).
      exclude_self: the queries are the gallery (leave-one-out); item i never retrieves itself.

    Returns:
      (Q, k) array of labels.
    """
    similarity = cosine_similarity_matrix(queries, gallery)
    if exclude_self:
        np.fill_diagonal(similarity, -np.inf)
    k = min(k, similarity.shape[1] - (1 if exclude_self else 0))
    # Stable sort on -similarity keeps gallery order for ties, so results are deterministic.
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return np.asarray(gallery_labels)[order]


def precision_at_k(retrieved_labels: np.ndarray, query_labels: np.ndarray, k: int) -> float:
    """Mean over queries of the fraction of the top-``k`` results that share the query's label."""
    relevant = _relevance(retrieved_labels, query_labels)[:, :k]
    return float(relevant.mean()) if relevant.size else 0.0


def recall_at_k(retrieved_labels: np.ndarray, query_labels: np.ndarray, k: int) -> float:
    """Fraction of queries with at least one correct item in the top ``k`` (metric-learning recall)."""
    relevant = _relevance(retrieved_labels, query_labels)[:, :k]
    return float(relevant.any(axis=1).mean()) if relevant.size else 0.0


def map_at_r(
    retrieved_labels: np.ndarray, query_labels: np.ndarray, relevant_counts: np.ndarray
) -> float:
    """Mean average precision at R (Musgrave et al., 2020).

    For a query with R relevant gallery items: ``AP@R = (1/R) * sum_{i<=R} P@i * rel_i``.

    Args:
      retrieved_labels: (Q, >= max R) ranked labels.
      query_labels: (Q,) labels.
      relevant_counts: (Q,) R for every query (items of its class in the gallery).
    """
    relevant = _relevance(retrieved_labels, query_labels).astype(np.float64)
    scores = []
    for row, r in zip(relevant, np.asarray(relevant_counts)):
        r = int(r)
        if r == 0:
            continue
        if row.shape[0] < r:
            raise ValueError(f"map_at_r needs {r} ranked items per query, got {row.shape[0]}")
        hits = row[:r]
        precision_at_i = np.cumsum(hits) / np.arange(1, r + 1)
        scores.append(float((precision_at_i * hits).sum() / r))
    return float(np.mean(scores)) if scores else 0.0


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC curve for ``scores`` (higher = more likely same), ties counted half.

    Computed as the Mann-Whitney U statistic, exactly.
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same).astype(bool)
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc needs both classes, got {n_pos} positive and {n_neg} negative")
    ranks = _average_ranks(scores)
    u_statistic = ranks[same].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))


class ErrorRates(NamedTuple):
    """Equal error rate and the distance threshold where it is reached."""

    eer: float
    threshold: float


def equal_error_rate(distances: np.ndarray, same: np.ndarray) -> ErrorRates:
    """Equal error rate of the rule "same if distance <= threshold".

    Every observed distance is a candidate threshold. At each one the false accept rate (different
    pairs accepted) and false reject rate (same pairs rejected) are computed; the threshold that
    minimises ``|FAR - FRR|`` is returned with ``(FAR + FRR) / 2`` as the EER.
    """
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same).astype(bool)
    if same.all() or not same.any():
        raise ValueError("equal_error_rate needs both same and different pairs")
    thresholds = np.unique(distances)
    far, frr = false_accept_reject(distances, same, thresholds)
    best = int(np.argmin(np.abs(far - frr)))
    return ErrorRates(eer=float((far[best] + frr[best]) / 2.0), threshold=float(thresholds[best]))


def false_accept_reject(
    distances: np.ndarray, same: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """False accept and false reject rates of "same if distance <= t" for every threshold t."""
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same).astype(bool)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    pos = np.sort(distances[same])
    neg = np.sort(distances[~same])
    accepted_pos = np.searchsorted(pos, thresholds, side="right")
    accepted_neg = np.searchsorted(neg, thresholds, side="right")
    far = accepted_neg / max(len(neg), 1)
    frr = 1.0 - accepted_pos / max(len(pos), 1)
    return far, frr


def threshold_at_far(distances: np.ndarray, same: np.ndarray, target_far: float) -> float:
    """Largest observed distance threshold whose false accept rate is <= ``target_far``."""
    if not 0.0 <= target_far <= 1.0:
        raise ValueError(f"target_far must be in [0, 1], got {target_far}")
    thresholds = np.unique(np.asarray(distances, dtype=np.float64))
    far, _ = false_accept_reject(distances, same, thresholds)
    allowed = thresholds[far <= target_far]
    # No observed threshold meets the target: accept nothing rather than pretend.
    return float(allowed.max()) if allowed.size else float(thresholds.min() - 1e-6)


def retrieval_report(
    query_embeddings: np.ndarray,
    query_labels: np.ndarray,
    gallery_embeddings: np.ndarray,
    gallery_labels: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10),
) -> dict[str, float]:
    """P@K, Recall@K and mAP@R of queries against a gallery, as a flat dict."""
    query_labels = np.asarray(query_labels)
    gallery_labels = np.asarray(gallery_labels)
    classes, counts = np.unique(gallery_labels, return_counts=True)
    count_of = dict(zip(classes.tolist(), counts.tolist()))
    relevant_counts = np.array([count_of.get(label, 0) for label in query_labels.tolist()])
    depth = max(max(ks), int(relevant_counts.max(initial=0)))
    ranked = ranked_gallery_labels(query_embeddings, gallery_embeddings, gallery_labels, depth)
    report: dict[str, float] = {}
    for k in ks:
        report[f"precision@{k}"] = precision_at_k(ranked, query_labels, k)
    for k in ks:
        report[f"recall@{k}"] = recall_at_k(ranked, query_labels, k)
    report["map@r"] = map_at_r(ranked, query_labels, relevant_counts)
    report["num_queries"] = int(len(query_labels))
    report["num_gallery"] = int(len(gallery_labels))
    return report


def verification_report(distances: np.ndarray, same: np.ndarray) -> dict[str, float]:
    """ROC AUC, EER and the EER threshold for pair distances (lower distance = more alike)."""
    distances = np.asarray(distances, dtype=np.float64)
    rates = equal_error_rate(distances, same)
    return {
        "roc_auc": roc_auc(-distances, same),
        "eer": rates.eer,
        "threshold_at_eer": rates.threshold,
        "num_pairs": int(len(distances)),
    }


def _relevance(retrieved_labels: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
    retrieved_labels = np.asarray(retrieved_labels)
    query_labels = np.asarray(query_labels)
    if retrieved_labels.ndim != 2 or retrieved_labels.shape[0] != query_labels.shape[0]:
        raise ValueError(
            f"expected (Q, K) retrieved labels for {query_labels.shape[0]} queries, "
            f"got shape {retrieved_labels.shape}"
        )
    return retrieved_labels == query_labels[:, None]


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks
