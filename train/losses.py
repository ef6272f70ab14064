"""Metric-learning losses (Keras 3 ops, so they run under any tf.distribute strategy).

Label convention for pair losses: ``same = 1`` means similar (same class), ``same = 0`` different.
"""

from __future__ import annotations

import keras
from keras import ops


def contrastive_loss(margin: float = 0.5):
    """Hadsell et al. (2006): ``same * d^2 + (1 - same) * max(0, margin - d)^2``.

    ``y_true`` is ``same`` (1 similar, 0 different); ``y_pred`` is the pair's Euclidean distance.
    Similar pairs are pulled together; different pairs are pushed to at least ``margin`` apart.
    """

    def loss(y_true, y_pred):
        same = ops.cast(ops.reshape(y_true, (-1,)), "float32")
        distance = ops.reshape(y_pred, (-1,))
        pulled = same * ops.square(distance)
        pushed = (1.0 - same) * ops.square(ops.maximum(margin - distance, 0.0))
        return ops.mean(pulled + pushed)

    loss.__name__ = "contrastive"
    return loss


def pairwise_squared_distances(embeddings):
    """(B, B) squared Euclidean distances between the rows of ``embeddings``."""
    squared = ops.sum(ops.square(embeddings), axis=1)
    dot = ops.matmul(embeddings, ops.transpose(embeddings))
    return ops.maximum(squared[:, None] - 2.0 * dot + squared[None, :], 0.0)


def triplet_semihard_loss(margin: float = 0.5):
    """Triplet loss with semi-hard negative mining inside the batch (FaceNet, Schroff et al. 2015).

    For every anchor-positive pair, the negative is the closest one that is still farther than
    the positive (semi-hard); where none exists, the farthest negative is used, as in
    TensorFlow Addons' ``TripletSemiHardLoss``. ``y_true`` holds class labels; ``y_pred`` the
    L2-normalised embeddings. Distances are squared Euclidean.
    """

    def loss(y_true, y_pred):
        labels = ops.reshape(y_true, (-1,))
        distances = pairwise_squared_distances(y_pred)
        same = ops.equal(labels[:, None], labels[None, :])
        size = ops.shape(labels)[0]
        not_self = ops.logical_not(ops.eye(size, dtype="bool"))
        positive_mask = ops.logical_and(same, not_self)
        negative_mask = ops.logical_not(same)
        # [anchor, positive, negative] semi-hard condition: d(a, n) > d(a, p).
        d_ap = distances[:, :, None]
        d_an = distances[:, None, :]
        semihard = ops.logical_and(negative_mask[:, None, :], d_an > d_ap)
        big = ops.max(distances) + 1.0
        closest_semihard = ops.min(ops.where(semihard, d_an, big), axis=2)
        farthest_negative = ops.max(ops.where(negative_mask, distances, 0.0), axis=1)[:, None]
        has_semihard = ops.any(semihard, axis=2)
        chosen = ops.where(has_semihard, closest_semihard, ops.broadcast_to(farthest_negative, ops.shape(closest_semihard)))
        per_pair = ops.maximum(distances - chosen + margin, 0.0)
        weights = ops.cast(positive_mask, "float32")
        return ops.sum(per_pair * weights) / ops.maximum(ops.sum(weights), 1.0)

    loss.__name__ = "triplet_semihard"
    return loss


def cosine_softmax_loss(scale: float, margin: float = 0.0):
    """Cross-entropy on cosine-classifier logits ``scale * cos``, with an additive margin.

    With ``margin > 0`` (CosFace, Wang et al. 2018) the true class's logit becomes
    ``scale * (cos - margin)``: an image must beat the other classes by the margin, which pulls
    classes tighter than plain normalised softmax.
    """
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss(y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        target = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return cross_entropy(labels, y_pred - scale * margin * target)

    loss.__name__ = "cosine_softmax"
    return loss


def similarity_distillation_loss():
    """Keeps the embedding's similarity structure close to a frozen teacher's.

    ``y_true`` holds the teacher's features of the batch (centred by their training mean);
    ``y_pred`` the unit embeddings. Loss = mean over off-diagonal pairs of
    ``(cos_student(i, j) - cos_teacher(i, j))^2`` (relational distillation, Park et al. 2019).
    Fine-tuning on a few classes otherwise discards what ImageNet features know about other
    classes; this term is what keeps unseen classes retrievable.
    """

    def loss(y_true, y_pred):
        teacher = y_true / ops.sqrt(ops.sum(ops.square(y_true), axis=1, keepdims=True) + 1e-12)
        student = y_pred / ops.sqrt(ops.sum(ops.square(y_pred), axis=1, keepdims=True) + 1e-12)
        difference = ops.matmul(student, ops.transpose(student)) - ops.matmul(teacher, ops.transpose(teacher))
        size = ops.cast(ops.shape(y_pred)[0], "float32")
        off_diagonal = ops.sum(ops.square(difference)) - ops.sum(ops.square(ops.diagonal(difference)))
        return off_diagonal / ops.maximum(size * (size - 1.0), 1.0)

    loss.__name__ = "similarity_distillation"
    return loss
