"""Training objectives: wrap an embedder (input -> unit embedding) for the chosen loss and make
each epoch's data from cached features.

- ``softmax``: cosine classifier on the embedding; class-balanced batches.
- ``triplet``: semi-hard triplet loss on the embedding; P classes x K images per batch.
- ``contrastive``: Siamese distance model on balanced pairs (same = 1 means similar).
- ``bce``: Siamese L1 pair head with a sigmoid "same?" score on balanced pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from train import losses
from train.features import Rows, gather
from train.model import FLOAT32, CosineClassifier, PairHead, build_pair_model, pair_distance_model
from train.sampling import balanced_pairs, class_balanced_batches

# features_of(indices, rng) -> the model inputs of those training images (one view each), read a
# batch at a time; it draws its random numbers when called, not when the rows are read.
FeatureFn = Callable[[np.ndarray, np.random.Generator], Rows]


@dataclass
class Heads:
    """Layers that outlive one stage, so stage 2 starts from what stage 1 learned."""

    classifier: CosineClassifier
    pair_head: PairHead


def make_heads(num_classes: int, cosine_scale: float) -> Heads:
    return Heads(CosineClassifier(num_classes, cosine_scale, name="cosine_classifier"), PairHead(name="pair_head"))


def training_model(
    embedder: keras.Model, loss: str, heads: Heads, margin: float, cosine_margin: float = 0.0,
    distill_weight: float = 0.0,
) -> tuple[keras.Model, object, list[float] | None]:
    """The Keras model to fit, its loss(es) and loss weights, for ``loss`` in train.config.LOSSES.

    With ``distill_weight > 0`` (softmax and triplet), the model also outputs the embedding for
    the similarity-distillation term; ``epoch_data`` then supplies the teacher features as its target.
    """
    model, main_loss = _single_model(embedder, loss, heads, margin, cosine_margin)
    if not uses_distillation(loss, distill_weight):
        return model, main_loss, None
    # float32 in every policy: under mixed precision a float16 layer would round the embedding.
    embedding = keras.layers.Identity(name="embedding_for_distillation", dtype=FLOAT32)(embedder.output)
    both = keras.Model(embedder.input, [model.output, embedding])
    return both, [main_loss, losses.similarity_distillation_loss()], [1.0, distill_weight]


def uses_distillation(loss: str, distill_weight: float) -> bool:
    return distill_weight > 0 and loss in ("softmax", "triplet")


def _single_model(embedder, loss, heads, margin, cosine_margin):
    if loss == "softmax":
        model = keras.Model(embedder.input, heads.classifier(embedder.output))
        return model, losses.cosine_softmax_loss(heads.classifier.scale, cosine_margin)
    if loss == "triplet":
        return embedder, losses.triplet_semihard_loss(margin)
    if loss == "contrastive":
        return pair_distance_model(embedder), losses.contrastive_loss(margin)
    if loss == "bce":
        return build_pair_model(embedder, heads.pair_head), keras.losses.BinaryCrossentropy()
    raise ValueError(f"unknown loss {loss!r}")


def epoch_data(
    loss: str,
    labels: np.ndarray,
    features_of: FeatureFn,
    batch_size: int,
    pairs_per_epoch: int,
    rng: np.random.Generator,
    teacher: np.ndarray | None = None,
) -> tuple[object, object]:
    """One epoch of ``(x, y)`` in batch order (train.distribute.fit_one_epoch); with ``teacher``,
    ``y`` is ``(labels, teacher features)`` for the distillation output. Inputs are
    :class:`train.features.Rows`, read a batch at a time; labels are arrays."""
    if loss in ("softmax", "triplet"):
        num_batches = max(1, len(labels) // batch_size)
        order = class_balanced_batches(labels, batch_size, num_batches, rng).reshape(-1)
        if teacher is not None:
            return features_of(order, rng), (labels[order], gather(teacher, order))
        return features_of(order, rng), labels[order]
    pairs = balanced_pairs(labels, pairs_per_epoch, rng)
    x = [features_of(pairs[:, 0], rng), features_of(pairs[:, 1], rng)]
    return x, pairs[:, 2].astype(np.float32)


def effective_batch_size(loss: str, labels: np.ndarray, batch_size: int) -> int:
    """The batch size that keeps class-balanced batches intact (P*K may be below batch_size)."""
    if loss not in ("softmax", "triplet"):
        return batch_size
    num_classes = len(np.unique(labels))
    per_batch = min(num_classes, max(2, batch_size // 2))
    return per_batch * max(2, batch_size // per_batch)
