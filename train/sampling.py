"""Pair and batch samplers over integer labels (numpy, seeded).

Pair label convention used everywhere in this project: ``same = 1`` means the two images show the
same class ("similar"), ``same = 0`` means different classes.
"""

from __future__ import annotations

import numpy as np


def balanced_pairs(labels: np.ndarray, num_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Draws pairs, half same-class and half different-class.

    Positives pick a class uniformly (among classes with two or more images), then two distinct
    images of it; negatives pick two distinct classes uniformly, then one image of each.

    Returns:
      (num_pairs, 3) int array of ``[index_a, index_b, same]``.
    """
    labels = np.asarray(labels)
    members = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    positive_classes = [c for c, idx in members.items() if len(idx) >= 2]
    classes = list(members)
    if len(classes) < 2 or not positive_classes:
        raise ValueError(
            f"balanced pairs need >= 2 classes and a class with >= 2 images, got {len(classes)} classes"
        )
    num_pos = num_pairs // 2
    rows = []
    for _ in range(num_pos):
        idx = members[positive_classes[rng.integers(len(positive_classes))]]
        a, b = rng.choice(idx, size=2, replace=False)
        rows.append((a, b, 1))
    for _ in range(num_pairs - num_pos):
        ca, cb = rng.choice(len(classes), size=2, replace=False)
        rows.append((rng.choice(members[classes[ca]]), rng.choice(members[classes[cb]]), 0))
    pairs = np.asarray(rows, dtype=np.int64)
    return pairs[rng.permutation(len(pairs))]


def class_balanced_batches(
    labels: np.ndarray, batch_size: int, num_batches: int, rng: np.random.Generator
) -> np.ndarray:
    """Batches of P classes x K images (P*K = batch_size) for triplet mining.

    Every batch draws ``P = min(num_classes, batch_size // 2)`` classes, then ``K`` images of each
    (with replacement only for classes that have fewer than K images), so every anchor has a
    positive and negatives in its batch.

    Returns:
      (num_batches, P*K) int array of indices.
    """
    labels = np.asarray(labels)
    members = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    classes = np.array(list(members))
    if len(classes) < 2:
        raise ValueError(f"class-balanced batches need >= 2 classes, got {len(classes)}")
    per_batch = min(len(classes), max(2, batch_size // 2))
    per_class = max(2, batch_size // per_batch)
    batches = np.empty((num_batches, per_batch * per_class), dtype=np.int64)
    for b in range(num_batches):
        chosen = rng.choice(classes, size=per_batch, replace=False)
        picks = [
            rng.choice(members[c], size=per_class, replace=len(members[c]) < per_class) for c in chosen
        ]
        batches[b] = np.concatenate(picks)
    return batches
