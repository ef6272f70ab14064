"""A linear metric fitted to what the user enrolled: within-label whitening, cross-validated.

The encoder was trained on other things than the user's. What tells the user's labels apart is
spread over many directions of the embedding, while other directions vary a lot *within* a label
(pose, light, background). Whitening by the enrolled labels' own spread rescales every direction
by how much it varies inside a label::

    S = covariance of (v - mean of v's label) over the gallery           (within-label scatter)
    W = (S + strength * mean eigenvalue of S * I) ^ -1/2
    compared(q) = unit((q - gallery mean) @ W)

``strength`` shrinks W toward plain cosine (large: almost no change; small: full whitening). A
metric fitted on the gallery looks better on the gallery than it is, so whether to whiten, how
strongly, and with which label vote is decided by **k-fold cross-validation**: fit on four fifths
of every label's images, retrieve the held-out fifth against them. Whitening is tried only with
enough images per label (:func:`can_whiten`) and kept only when it beats the gallery's comparison
without it by :func:`required_gain`. For the same reason the "unknown" threshold
of a whitened gallery is calibrated on held-out scores (:func:`held_out_scores`), never on
scores of items the metric was fitted to (those made the threshold refuse almost everything).

Where it pays (README, "Fitting the comparison"): frozen ImageNet features, 40 images of each
tf_flowers class enrolled, the test split queried: P@5 0.70 with plain cosine, 0.82 with the
whole gallery fit, whitened (about 0.77 with the fit but no whitening, in design experiments). With
two or three labels of the fine-tuned encoder it rarely helps, and cross-validation leaves it off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edge.gallery.openset import Scores, sample_pairs
from edge.gallery.prototypes import PROTOTYPE_WEIGHTS, blended, label_sums, prototypes, ranked_hits
from edge.metrics import l2_normalize

STRENGTHS = (4.0, 1.0, 0.25)
FOLDS = 5
MIN_ITEMS = 40
"""Fewer enrolled images than this: cross-validation is too noisy to trust, no whitening."""
MIN_MEDIAN_LABEL_SIZE = FOLDS
"""Labels of fewer images than this (the median label): too little spread per label to fit, and
whitening chosen there hurt new queries in a review's synthetic trials (3-4 images per label)."""
MIN_GAIN = 0.01
"""Cross-validated precision whitening must add over the comparison without it, and at least
MIN_GAIN_QUERIES queries' worth: the whitened side is the best of 3 strengths x 4 votes, the
plain side of 4 votes, so a small win can be luck."""
MIN_GAIN_QUERIES = 2
LOO_K = 5


@dataclass(frozen=True)
class Whitening:
    """``unit((v - mean) @ matrix)``, fitted on the gallery's compared vectors."""

    mean: np.ndarray
    matrix: np.ndarray
    strength: float

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        return l2_normalize(((np.asarray(vectors, np.float32) - self.mean) @ self.matrix).astype(np.float32))

    def check(self, size: int, source: str) -> None:
        """Raises ValueError unless mean is (size,) and matrix (size, size), all finite."""
        if self.mean.shape != (size,) or self.matrix.shape != (size, size) \
                or not (np.isfinite(self.mean).all() and np.isfinite(self.matrix).all()):
            raise ValueError(f"{source}: whitening has shapes {self.mean.shape} / {self.matrix.shape}, expected "
                             f"({size},) / ({size}, {size}), finite")
        if not (np.isfinite(self.strength) and self.strength > 0):
            raise ValueError(f"{source}: whitening strength {self.strength!r} must be a positive number")


def fit_whitening(vectors: np.ndarray, label_ids: np.ndarray, strength: float) -> Whitening:
    """Whitening of ``vectors`` (N, D) by their labels' within-label scatter (module doc)."""
    mean, eigenvalues, eigenvectors = _scatter(vectors, label_ids)
    return _whitening(mean, eigenvalues, eigenvectors, strength)


def stratified_folds(label_ids: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Fold number of every item: the labels' items dealt round-robin in a seeded order, label
    after label, each label starting where the last one stopped. (Starting every label at fold 0
    put the only two images of small labels in folds 0 and 1, so the other folds trained on one
    image per label: no within-label spread to whiten at all.)"""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(label_ids), np.int64)
    dealt = 0
    for label in np.unique(label_ids):
        members = rng.permutation(np.flatnonzero(label_ids == label))
        fold[members] = (dealt + np.arange(len(members))) % folds
        dealt += len(members)
    return fold


def can_whiten(label_ids: np.ndarray) -> bool:
    """Whether a gallery has enough images, and enough per label, for whitening to be tried."""
    counts = np.unique(np.asarray(label_ids), return_counts=True)[1]
    return len(label_ids) >= MIN_ITEMS and len(counts) >= 2 and float(np.median(counts)) >= MIN_MEDIAN_LABEL_SIZE


def required_gain(queries: int) -> float:
    """Precision whitening must add when ``queries`` held-out queries were scored."""
    return max(MIN_GAIN, MIN_GAIN_QUERIES / max(queries, 1))


def cross_validated_precision(vectors: np.ndarray, label_ids: np.ndarray, strengths: Sequence[float | None],
                              max_queries: int, seed: int = 0) -> tuple[dict, int]:
    """Held-out precision at min(LOO_K, the label's images in the other folds) of every
    (strength, prototype weight); strength None is the comparison without whitening.

    Returns ``({strength: {prototype weight: precision}}, number of queries scored)``.
    """
    label_ids = np.asarray(label_ids)
    fold = stratified_folds(label_ids, FOLDS, seed)
    rng = np.random.default_rng(seed)
    totals = {s: dict.fromkeys(PROTOTYPE_WEIGHTS, 0.0) for s in strengths}
    queried = 0
    for f in range(FOLDS):
        train, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        depth = np.minimum(LOO_K, np.bincount(label_ids[train], minlength=label_ids.max() + 1)[label_ids[held]])
        held, depth = held[depth > 0], depth[depth > 0]
        if len(held) > max_queries // FOLDS:
            keep = np.sort(rng.choice(len(held), max_queries // FOLDS, replace=False))
            held, depth = held[keep], depth[keep]
        if len(held) == 0:
            continue
        queried += len(held)
        scatter = _scatter(vectors[train], label_ids[train])
        for strength in strengths:
            transform = None if strength is None else _whitening(*scatter, strength)
            gallery, queries = _transformed(transform, vectors[train]), _transformed(transform, vectors[held])
            similarity, to_prototype = _scores(gallery, label_ids[train], queries, label_ids.max() + 1)
            hits = ranked_hits(similarity, to_prototype, label_ids[train], label_ids[held], depth)
            for weight, total in hits.items():
                totals[strength][weight] += total
    return {s: {w: t / max(queried, 1) for w, t in by_weight.items()} for s, by_weight in totals.items()}, queried


def held_out_scores(vectors: np.ndarray, label_ids: np.ndarray, strength: float, prototype_weight: float,
                    max_queries: int, seed: int = 0) -> Scores:
    """Genuine, impostor and pair scores of every item against the other folds, whitened by a fit
    on those folds only: what a new image of an enrolled label (or of none) would score."""
    label_ids = np.asarray(label_ids)
    fold = stratified_folds(label_ids, FOLDS, seed)
    rng = np.random.default_rng(seed)
    genuine, impostor, pair_same, pair_diff = [], [], [], []
    for f in range(FOLDS):
        train, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        if len(held) > max_queries // FOLDS:
            held = np.sort(rng.choice(held, max_queries // FOLDS, replace=False))
        if len(held) == 0 or len(train) == 0:
            continue
        transform = fit_whitening(vectors[train], label_ids[train], strength)
        gallery, queries = transform.apply(vectors[train]), transform.apply(vectors[held])
        similarity, to_prototype = _scores(gallery, label_ids[train], queries, label_ids.max() + 1)
        scores = blended(similarity, to_prototype, label_ids[train], prototype_weight)
        same = label_ids[train][None, :] == label_ids[held][:, None]
        has_own = same.any(1)
        genuine.append(np.where(same, scores, -np.inf).max(1)[has_own])
        impostor.append(np.where(same, -np.inf, scores).max(1))
        pair_same.append(sample_pairs(similarity[same], rng))
        pair_diff.append(sample_pairs(similarity[~same], rng))
    return Scores(*(np.concatenate(v) if v else np.zeros(0, np.float32)
                    for v in (genuine, impostor, pair_same, pair_diff)))


def _scatter(vectors: np.ndarray, label_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gallery mean and the eigen-decomposition of the within-label scatter."""
    vectors = np.asarray(vectors, np.float64)
    mean = vectors.mean(axis=0)
    _, ids = np.unique(label_ids, return_inverse=True)
    sums, counts = label_sums(vectors, ids.reshape(-1), int(ids.max()) + 1)
    residual = vectors - (sums / counts[:, None])[ids.reshape(-1)]
    eigenvalues, eigenvectors = np.linalg.eigh(residual.T @ residual / len(vectors))
    return mean, np.maximum(eigenvalues, 0.0), eigenvectors


def _whitening(mean, eigenvalues, eigenvectors, strength: float) -> Whitening:
    floor = strength * max(float(eigenvalues.mean()), 1e-12)
    matrix = (eigenvectors * (eigenvalues + floor) ** -0.5) @ eigenvectors.T
    return Whitening(mean.astype(np.float32), matrix.astype(np.float32), float(strength))


def _transformed(transform: Whitening | None, vectors: np.ndarray) -> np.ndarray:
    return vectors if transform is None else transform.apply(vectors)


def _scores(gallery: np.ndarray, gallery_ids: np.ndarray, queries: np.ndarray, count: int):
    """(Q, N) cosines and (Q, labels) cosines to the gallery labels' mean vectors."""
    return queries @ gallery.T, queries @ prototypes(gallery, gallery_ids, count).T
