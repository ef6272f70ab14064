"""The embedding tower (its own named Keras model), the Siamese pair model, and the split used
to train the top blocks on cached lower-block features.

Tower: uint8-range RGB (0..255) -> Rescaling to [-1, 1] -> MobileNetV2 -> global average pool ->
Dense projection -> L2 normalisation. The pixels -> [-1, 1] step lives inside the model so that the
exported encoder takes raw pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

ENCODER_NAME = "encoder"
PROJECTION_LAYER = "projection"
NORMALIZE_LAYER = "l2_normalize"
GENERIC_SOURCE_LAYER = "block_16_project_BN"
"""MobileNetV2's last linear bottleneck (320 channels at 7x7), the generic branch's input."""
GENERIC_PROJECTION_LAYER = "generic_projection"
HEAD_WEIGHT_LAYER = "head_weight"
GENERIC_WEIGHT_LAYER = "generic_weight"
FLOAT32 = "float32"
"""The dtype of the layers that end in a cosine or a loss, whatever the policy (train.precision)."""


@dataclass
class Tower:
    """The encoder and the pieces that let stage 2 train its top on cached features."""

    encoder: keras.Model
    backbone: keras.Model
    pool: layers.Layer
    projection: layers.Dense
    normalize: layers.Layer


def resolve_weights(weights: str) -> str | None:
    """Maps the --weights option to what Keras takes, checking that a local file exists."""
    if weights == "imagenet":
        return "imagenet"
    if weights.lower() == "none":
        return None
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {path} does not exist; pass 'imagenet' (needs a network), 'none', "
            "or the MobileNetV2 no-top .h5 file"
        )
    return str(path)


def build_tower(input_size: int, embedding_size: int, weights: str, alpha: float = 1.0) -> Tower:
    """Builds the MobileNetV2 embedding tower with every BatchNorm layer frozen.

    BatchNorm stays in inference mode for good: MobileNetV2's momentum of 0.999 collapses the
    embeddings after a short fine-tune otherwise (../shared/NOTES.md, "BatchNorm trap").
    """
    backbone = keras.applications.MobileNetV2(
        input_shape=(input_size, input_size, 3),
        alpha=alpha,
        include_top=False,
        weights=resolve_weights(weights),
    )
    backbone.trainable = False
    pool = layers.GlobalAveragePooling2D(name="pool")
    projection = layers.Dense(embedding_size, name=PROJECTION_LAYER)
    normalize = layers.UnitNormalization(name=NORMALIZE_LAYER, dtype=FLOAT32)
    pixels = keras.Input((input_size, input_size, 3), name="pixels")
    scaled = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_unit_range")(pixels)
    embedding = normalize(projection(pool(backbone(scaled))))
    encoder = keras.Model(pixels, embedding, name=ENCODER_NAME)
    return Tower(encoder, backbone, pool, projection, normalize)


def recalibrate_batchnorm(tower: Tower, images, batch_size: int = 128) -> None:
    """Sets every BatchNorm layer's moving mean and variance to the statistics of ``images``.

    Needed only for a backbone without pretrained weights: its BatchNorm layers start at mean 0,
    variance 1, so in inference mode the activations saturate ReLU6 and every image maps to the
    same embedding. A training-mode pass with momentum 0 copies the batch statistics in.
    """
    norms = [layer for layer in tower.backbone.layers if isinstance(layer, layers.BatchNormalization)]
    saved = [(layer.momentum, layer.trainable) for layer in norms]
    for layer in norms:
        layer.momentum, layer.trainable = 0.0, True
    scale = tower.encoder.get_layer("to_unit_range")
    batch = ops.convert_to_tensor(images[:batch_size], dtype="float32")
    # In training mode each BatchNorm normalises with its batch statistics, so every layer sees the
    # activations it will see at inference once those statistics are stored.
    tower.backbone(scale(batch), training=True)
    for layer, (momentum, trainable) in zip(norms, saved):
        layer.momentum, layer.trainable = momentum, trainable


def split_point(backbone: keras.Model, first_trainable_block: int):
    """The tensor entering ``block_<n>``: frozen below, trainable from there up."""
    return backbone.get_layer(f"block_{first_trainable_block}_expand").input


def lower_blocks(tower: Tower, first_trainable_block: int) -> keras.Model:
    """Frozen part of the backbone: pixels (0..255) to the feature map entering the split block."""
    backbone = tower.backbone
    scaled_input = tower.encoder.get_layer("to_unit_range")
    pixels = keras.Input(backbone.input.shape[1:], name="pixels")
    lower = keras.Model(backbone.input, split_point(backbone, first_trainable_block))
    return keras.Model(pixels, lower(scaled_input(pixels)), name="lower_blocks")


def upper_blocks(tower: Tower, first_trainable_block: int) -> keras.Model:
    """Top of the backbone from the split to the last feature map; shares the tower's weights."""
    backbone = tower.backbone
    return keras.Model(split_point(backbone, first_trainable_block), backbone.output, name="upper_blocks")


def set_fine_tuning(tower: Tower, first_trainable_block: int) -> None:
    """Makes blocks >= ``first_trainable_block`` and Conv_1 trainable, BatchNorm excepted."""
    prefixes = tuple(f"block_{i}_" for i in range(first_trainable_block, 17)) + ("Conv_1",)
    tower.backbone.trainable = True
    for layer in tower.backbone.layers:
        trainable = layer.name.startswith(prefixes) and not isinstance(layer, layers.BatchNormalization)
        layer.trainable = trainable


class CosineClassifier(layers.Layer):
    """Normalised-softmax head: logits = scale * cos(embedding, class weight); float32 by default."""

    def __init__(self, num_classes: int, scale: float = 16.0, **kwargs):
        kwargs.setdefault("dtype", FLOAT32)
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.scale = scale

    def build(self, input_shape):
        self.class_weights = self.add_weight(
            shape=(input_shape[-1], self.num_classes), initializer="glorot_uniform", name="class_weights"
        )

    def call(self, embeddings):
        weights = self.class_weights / ops.sqrt(ops.sum(ops.square(self.class_weights), axis=0, keepdims=True) + 1e-12)
        return self.scale * ops.matmul(embeddings, weights)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "scale": self.scale}


class PairHead(layers.Layer):
    """Siamese "same?" head: sigmoid(Dense(|a - b|)), the seed project's L1 pair score; float32 by default."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", FLOAT32)
        super().__init__(**kwargs)
        self.score = layers.Dense(1, activation="sigmoid", name="same_probability", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.score.build(input_shape[0])

    def call(self, inputs):
        first, second = inputs
        return self.score(ops.abs(first - second))


class EuclideanDistance(layers.Layer):
    """||a - b||, kept away from 0 so that its gradient stays finite; float32 by default."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", FLOAT32)
        super().__init__(**kwargs)

    def call(self, inputs):
        first, second = inputs
        return ops.sqrt(ops.maximum(ops.sum(ops.square(first - second), axis=-1, keepdims=True), 1e-12))


def build_pair_model(embedder: keras.Model, head: PairHead | None = None) -> keras.Model:
    """Two inputs through the *same* embedder (shared weights), then the L1 pair head.

    Returns:
      A model mapping ``[a, b]`` to the probability that they show the same class (label 1).
    """
    head = head or PairHead(name="pair_head")
    first = keras.Input(embedder.input.shape[1:], name="first")
    second = keras.Input(embedder.input.shape[1:], name="second")
    return keras.Model([first, second], head([embedder(first), embedder(second)]), name="siamese")


def pair_distance_model(embedder: keras.Model) -> keras.Model:
    """Two inputs through the same embedder -> Euclidean distance (for the contrastive loss)."""
    first = keras.Input(embedder.input.shape[1:], name="first")
    second = keras.Input(embedder.input.shape[1:], name="second")
    distance = EuclideanDistance(name="distance")([embedder(first), embedder(second)])
    return keras.Model([first, second], distance, name="siamese_distance")


def fit_generic_projection(
    bottleneck: np.ndarray, size: int, power: float, target_rms: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias of the fixed generic projection: centre, PCA to ``size`` dimensions, and
    divide component i by ``singular_value_i ** power`` (0 = plain PCA, 1 = full whitening).

    Fitted on the pooled bottleneck features of the training images only. The result is scaled
    so its outputs have root-mean-square norm ``target_rms`` (the head's), so that one int8
    output scale suits both branches of the exported model.
    """
    features = np.asarray(bottleneck, dtype=np.float64)
    mean = features.mean(axis=0)
    _, singular, components = np.linalg.svd(features - mean, full_matrices=False)
    size = min(size, int(np.sum(singular > singular[0] * 1e-6)))  # never divide by a zero direction
    weights = components[:size].T / np.maximum(singular[:size], 1e-12) ** power
    projected = (features - mean) @ weights
    weights *= target_rms / max(float(np.sqrt(np.mean(np.sum(projected**2, axis=1)))), 1e-12)
    return weights.astype(np.float32), (-mean @ weights).astype(np.float32)


def add_generic_branch(tower: Tower, generic_size: int, generic_share: float) -> keras.Model:
    """The encoder with a second, fixed branch beside the trained head.

    Embedding = [sqrt(1 - share) * unit(head), sqrt(share) * unit(generic)], a unit vector whose
    cosine is ``(1 - share) * cos_head + share * cos_generic``. The head is trained on the
    training classes and collapses what it was not trained on; the generic branch, a fixed
    (whitened-PCA) projection of the pooled last bottleneck, keeps the backbone's structure for
    classes never seen in training. Its weights are set with ``fit_generic_projection``.
    """
    if not 0.0 < generic_share < 1.0:
        raise ValueError(f"generic_share must be in (0, 1), got {generic_share}")
    backbone = tower.backbone
    features = keras.Model(
        backbone.input, [backbone.get_layer(GENERIC_SOURCE_LAYER).output, backbone.output], name="backbone_features"
    )
    pixels = keras.Input(backbone.input.shape[1:], name="pixels")
    bottleneck, last = features(tower.encoder.get_layer("to_unit_range")(pixels))
    head = layers.UnitNormalization(name="head_l2", dtype=FLOAT32)(tower.projection(tower.pool(last)))
    generic = layers.Dense(generic_size, name=GENERIC_PROJECTION_LAYER, trainable=False)(
        layers.GlobalAveragePooling2D(name="generic_pool")(bottleneck)
    )
    generic = layers.UnitNormalization(name="generic_l2", dtype=FLOAT32)(generic)
    embedding = layers.Concatenate(name="embedding", dtype=FLOAT32)([
        layers.Rescaling(math.sqrt(1.0 - generic_share), name=HEAD_WEIGHT_LAYER, dtype=FLOAT32)(head),
        layers.Rescaling(math.sqrt(generic_share), name=GENERIC_WEIGHT_LAYER, dtype=FLOAT32)(generic),
    ])
    return keras.Model(pixels, embedding, name=ENCODER_NAME)


def has_generic_branch(encoder: keras.Model) -> bool:
    return any(layer.name == GENERIC_PROJECTION_LAYER for layer in encoder.layers)


def embedding_segments(encoder: keras.Model) -> list[dict]:
    """How the device turns the exported raw output into the embedding: every segment is
    L2-normalised and multiplied by its weight. Empty for a single-branch encoder."""
    if not has_generic_branch(encoder):
        return []
    return [
        {"name": "head", "size": int(encoder.get_layer(PROJECTION_LAYER).units),
         "weight": float(encoder.get_layer(HEAD_WEIGHT_LAYER).scale)},
        {"name": "generic", "size": int(encoder.get_layer(GENERIC_PROJECTION_LAYER).units),
         "weight": float(encoder.get_layer(GENERIC_WEIGHT_LAYER).scale)},
    ]


def rebuild_encoder(trained: keras.Model, input_size: int, alpha: float = 1.0) -> keras.Model:
    """The same encoder (same weights) built for another input size."""
    embedding_size = int(trained.get_layer(PROJECTION_LAYER).units)
    tower = build_tower(input_size, embedding_size, "none", alpha)
    encoder = tower.encoder
    segments = embedding_segments(trained)
    if segments:
        encoder = add_generic_branch(tower, segments[1]["size"], segments[1]["weight"] ** 2)
    encoder.set_weights(trained.get_weights())
    return encoder


def export_encoder(encoder: keras.Model) -> keras.Model:
    """The encoder without its L2 normalisation (the device normalises in numpy).

    ``UnitNormalization`` does not quantise fully to int8 (../shared/NOTES.md); cosine similarity
    does not change when the unit scaling is done after the model. With a generic branch the
    output is ``[head, generic]`` before normalisation; the manifest's segments say how the device
    normalises and weights the two parts (``embedding_segments``).
    """
    if not has_generic_branch(encoder):
        return keras.Model(encoder.input, encoder.get_layer(PROJECTION_LAYER).output, name="encoder_unnormalized")
    # The inputs of the two normalisations (each used once, in this graph only): shared layers
    # such as the projection may also belong to the training graph.
    branches = [encoder.get_layer("head_l2").input, encoder.get_layer("generic_l2").input]
    both = layers.Concatenate(name="raw_embedding")(branches)
    return keras.Model(encoder.input, both, name="encoder_unnormalized")


CUSTOM_OBJECTS = {
    "CosineClassifier": CosineClassifier,
    "PairHead": PairHead,
    "EuclideanDistance": EuclideanDistance,
}
