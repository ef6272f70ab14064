"""The training stages between the data and the finished encoder, in the order train.run calls them.

- ``build_parts``: the tower and the models cut from it (lower blocks, upper blocks, pooled).
- ``frozen_features``: lower-block maps of the clean images (cached) and the frozen baseline.
- ``stage_1``: the projection head (and the loss's head) on cached pooled features.
- ``stage_2``: blocks >= ``fine_tune_from_block`` on cached lower-block maps of augmented views.
- ``generic_branch``: the fixed generic branch fitted after training, and the final embeddings.

The order of everything that draws random numbers (Keras initialisers, the shared numpy ``rng``) is
part of the result: training is deterministic, so keep that order when changing this file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import keras
import numpy as np

from edge.metrics import segment_normalize
from train import objectives
from train.cache import FeatureCache, files_digest, weights_digest
from train.checkpoint import EpochBackup
from train.config import TrainConfig
from train.data import ImageList
from train.distribute import fit_one_epoch
from train.features import augmented_views_to_shards, gather, lower_features_to_shards, pick_views, predict_chunks
from train.precision import precision_key
from train.shards import ShardedArray
from train.model import (
    GENERIC_PROJECTION_LAYER,
    GENERIC_SOURCE_LAYER,
    Tower,
    add_generic_branch,
    build_tower,
    embedding_segments,
    fit_generic_projection,
    lower_blocks,
    recalibrate_batchnorm,
    set_fine_tuning,
    split_point,
    upper_blocks,
)

log = logging.getLogger(__name__)
RECALIBRATION_IMAGES = 128
"""Images whose statistics a randomly initialised backbone's BatchNorm layers take (train.model)."""


@dataclass
class Parts:
    """The tower and the models that share its weights."""

    tower: Tower
    heads: objectives.Heads
    lower: keras.Model
    """Frozen blocks: pixels -> the feature map entering the first trained block."""
    upper: keras.Model
    """Trained blocks: that feature map -> the last feature map."""
    pooled: keras.Model
    """Upper blocks + average pool (the frozen baseline's features)."""


@dataclass
class Features:
    """Frozen features of the clean (un-augmented) images: lower-block maps on disk, pooled in memory."""

    clean_train: ShardedArray
    clean_test: ShardedArray
    baseline_train: np.ndarray
    baseline_test: np.ndarray
    lower_digest: str
    """sha256 of the frozen lower blocks' weights (part of every feature cache's key)."""


def build_parts(config: TrainConfig, strategy, num_fit_classes: int) -> Parts:
    with strategy.scope():
        tower = build_tower(config.input_size, config.embedding_size, config.weights, config.alpha)
        heads = objectives.make_heads(num_fit_classes, config.cosine_scale)
        lower = lower_blocks(tower, config.fine_tune_from_block)
        upper = upper_blocks(tower, config.fine_tune_from_block)
        pooled = keras.Model(upper.input, tower.pool(upper.output))
    return Parts(tower, heads, lower, upper, pooled)


def frozen_features(config: TrainConfig, parts: Parts, data_dir, train_set: ImageList, test_set: ImageList,
                    fit_rows: np.ndarray, cache: FeatureCache) -> Features:
    """Lower-block maps (sharded on disk by ``cache``) and pooled frozen features of the clean
    train and test images."""
    if config.weights.lower() == "none":
        recalibrate_batchnorm(parts.tower, train_set.clean(fit_rows[:RECALIBRATION_IMAGES]))
    lower_digest = weights_digest(parts.lower)
    key = {"lower_weights": lower_digest, "input_size": config.input_size, "block": config.fine_tune_from_block,
           **precision_key(config.precision)}
    maps = {}
    for name, images in (("clean-train", train_set), ("clean-test", test_set)):
        maps[name] = cache.load_or_make(
            name, lambda: {**key, "images": files_digest(data_dir, [r.path for r in images.records])},
            lambda folder: lower_features_to_shards(parts.lower, images, np.arange(len(images)), folder),
        )
    baseline_train = predict_chunks(parts.pooled, maps["clean-train"].chunks())
    baseline_test = predict_chunks(parts.pooled, maps["clean-test"].chunks())
    return Features(maps["clean-train"], maps["clean-test"], baseline_train, baseline_test, lower_digest)


def distillation_teacher(config: TrainConfig, features: Features, fit_rows: np.ndarray) -> np.ndarray | None:
    """The frozen features, centred so that cosine reflects differences; None without distillation."""
    if not objectives.uses_distillation(config.loss, config.distill_weight):
        return None
    fit_pooled = features.baseline_train[fit_rows]
    return fit_pooled - fit_pooled.mean(axis=0)


def stage_1(config: TrainConfig, strategy, parts: Parts, features: Features, fit_rows: np.ndarray,
            fit_labels: np.ndarray, rng: np.random.Generator, teacher: np.ndarray | None, backup: EpochBackup,
            history: dict[str, list[float]]) -> None:
    """Trains the projection head on cached pooled frozen features; losses into ``history``."""
    tower = parts.tower
    with strategy.scope():
        vectors = keras.Input(features.baseline_train.shape[1:], name="pooled_features")
        head_only = keras.Model(vectors, tower.normalize(tower.projection(vectors)))
        model = _compiled(head_only, config, parts.heads, config.head_learning_rate)
    fit_pooled = features.baseline_train[fit_rows]
    fit_epochs(model, strategy, config, fit_labels, lambda idx, _: gather(fit_pooled, idx), config.head_epochs, rng, "stage 1",
               teacher, backup, history)


def upper_embedder(strategy, parts: Parts, features: Features) -> keras.Model:
    """Cached lower-block maps -> embedding of the head-only encoder (shares the tower's weights)."""
    tower = parts.tower
    with strategy.scope():
        maps = keras.Input(features.clean_train.item_shape, name="lower_features")
        return keras.Model(maps, tower.normalize(tower.projection(tower.pool(parts.upper(maps)))))


def stage_2(config: TrainConfig, strategy, parts: Parts, embedder: keras.Model, data_dir, train_set: ImageList,
            features: Features, cache: FeatureCache, fit_rows: np.ndarray, fit_labels: np.ndarray,
            rng: np.random.Generator, teacher: np.ndarray | None, backup: EpochBackup, history: dict[str, list[float]], timing: dict[str, float]) -> None:
    """Fine-tunes the top blocks on cached lower-block maps of augmented views; losses into ``history``."""
    history["stage 2"] = []
    if config.fine_tune_epochs <= 0:
        return
    tick = time.time()
    key = lambda: {  # noqa: E731
        "lower_weights": features.lower_digest, "input_size": config.input_size, "block": config.fine_tune_from_block,
        "views": config.augmented_views, "seed": config.seed, **precision_key(config.precision),
        "images": files_digest(data_dir, [train_set.records[i].path for i in fit_rows]),
    }
    views = cache.load_or_make("views", key, lambda folder: augmented_views_to_shards(
        parts.lower, train_set, fit_rows, config.augmented_views, config.seed, folder, progress=config.progress,
    ))
    timing["augmented_views_seconds"] = time.time() - tick
    set_fine_tuning(parts.tower, config.fine_tune_from_block)
    schedule = cosine_schedule(config, steps_per_epoch(config, fit_labels))
    with strategy.scope():
        model = _compiled(embedder, config, parts.heads, schedule)
    fit_epochs(model, strategy, config, fit_labels, lambda idx, r: pick_views(views, idx, r), config.fine_tune_epochs,
               rng, "stage 2", teacher, backup, history)


def generic_branch(config: TrainConfig, tower: Tower, features: Features, fit_rows: np.ndarray):
    """Fits the fixed generic branch on the training classes' images and assembles the two-branch
    encoder. Returns it with the train and test embeddings it gives (head first, as exported)."""
    backbone = tower.backbone
    maps = split_point(backbone, config.fine_tune_from_block)
    bottleneck = keras.layers.GlobalAveragePooling2D()(backbone.get_layer(GENERIC_SOURCE_LAYER).output)
    head = tower.projection(tower.pool(backbone.output))
    branches = keras.Model(maps, keras.layers.Concatenate()([head, bottleneck]))
    raw_train = predict_chunks(branches, features.clean_train.chunks())
    raw_test = predict_chunks(branches, features.clean_test.chunks())
    size = config.embedding_size
    head_rms = float(np.sqrt(np.mean(np.sum(raw_train[fit_rows, :size] ** 2, axis=1))))
    weights, bias = fit_generic_projection(raw_train[fit_rows, size:], config.generic_size, config.generic_power, head_rms)
    encoder = add_generic_branch(tower, weights.shape[1], config.generic_share)
    encoder.get_layer(GENERIC_PROJECTION_LAYER).set_weights([weights, bias])
    segments = embedding_segments(encoder)
    embed = lambda raw: segment_normalize(np.hstack([raw[:, :size], raw[:, size:] @ weights + bias]), segments)  # noqa: E731
    return encoder, embed(raw_train), embed(raw_test)


def fit_epochs(model, strategy, config: TrainConfig, labels, features_of, epochs: int, rng, stage: str,
               teacher: np.ndarray | None, backup: EpochBackup, history: dict[str, list[float]]) -> None:
    """``epochs`` epochs, each on freshly drawn batches (one ``model.fit`` call per epoch), their
    losses appended to ``history[stage]``; backed up after every epoch, resumed from the backup."""
    with strategy.scope():  # a resumed optimizer creates its variables to load into: the strategy's
        history[stage] = backup.resume(stage, model, rng)
    batch_size = objectives.effective_batch_size(config.loss, labels, config.batch_size)
    for epoch in range(len(history[stage]), epochs):
        tick = time.time()
        x, y = objectives.epoch_data(config.loss, labels, features_of, batch_size, config.pairs_per_epoch, rng, teacher)
        history[stage].append(fit_one_epoch(model, strategy, x, y, batch_size, 1 if config.progress else 0))
        backup.save(stage, model, rng, history)
        log.info("%s epoch %d/%d: loss %.4f (%.0f s)", stage, epoch + 1, epochs, history[stage][-1], time.time() - tick)


def steps_per_epoch(config: TrainConfig, labels: np.ndarray) -> int:
    batch_size = objectives.effective_batch_size(config.loss, labels, config.batch_size)
    items = len(labels) if config.loss in ("softmax", "triplet") else config.pairs_per_epoch
    return max(1, items // batch_size)


def cosine_schedule(config: TrainConfig, steps: int):
    """Stage 2's learning rate: linear warm-up over the first epoch, then cosine decay."""
    total = max(2, steps * config.fine_tune_epochs)
    warmup = min(steps, total // 2)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.fine_tune_learning_rate / 10,
        decay_steps=total - warmup,
        warmup_target=config.fine_tune_learning_rate,
        warmup_steps=warmup,
        alpha=0.01,
    )


def _compiled(embedder: keras.Model, config: TrainConfig, heads: objectives.Heads, learning_rate) -> keras.Model:
    model, loss, weights = objectives.training_model(
        embedder, config.loss, heads, config.margin, config.cosine_margin, config.distill_weight
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, loss_weights=weights)
    return model
