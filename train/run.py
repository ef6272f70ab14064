"""One training run, start to finish: data -> frozen baseline -> stage 1 -> stage 2 -> evaluation
-> run folder.

Stage 1 trains the projection head (and the loss's own head) on cached pooled features of the
frozen backbone. Stage 2 fine-tunes MobileNetV2 blocks >= ``fine_tune_from_block`` on cached
lower-block feature maps of ``augmented_views`` augmented views per image; BatchNorm stays frozen.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import keras
import numpy as np

from train import objectives
from train.config import TrainConfig
from train.data import DatasetError, cap_per_class, list_images, load_images, split_records, write_split_lists
from train.evaluate import (
    evaluate_embeddings,
    nearest_neighbours,
    pair_cosine_distances,
    summary_line,
    unseen_against_baseline,
)
from train.features import augmented_view_features, pick_views, run_in_batches
from train.layout import (
    CLASSES_FILE, CONFIG_FILE, ENCODER_FILE, GRID_PLOT, HISTORY_FILE, LOSS_PLOT, METRICS_FILE, SIAMESE_FILE,
)
from train.model import (
    GENERIC_PROJECTION_LAYER,
    GENERIC_SOURCE_LAYER,
    PairHead,
    add_generic_branch,
    build_pair_model,
    build_tower,
    embedding_segments,
    fit_generic_projection,
    lower_blocks,
    recalibrate_batchnorm,
    set_fine_tuning,
    split_point,
    upper_blocks,
)
from train.plots import plot_history, retrieval_grid, save_rgb_png
from train.sampling import balanced_pairs
from edge.metrics import roc_auc, segment_normalize

log = logging.getLogger(__name__)
BASELINE_KEY = "baseline_frozen_imagenet"


def resolve_data_dir(config: TrainConfig) -> Path:
    """The class-folder root: the given folder, or tf_flowers unpacked by tensorflow-datasets."""
    if config.data_dir:
        return Path(config.data_dir)
    from train.tfds_source import materialize_tfds_folder

    return materialize_tfds_folder(Path(config.dataset_cache))


def make_strategy(name: str):
    """``default``: one device. ``mirrored``: all GPUs, or every logical CPU when there is none."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def train(config: TrainConfig) -> dict:
    """Runs training and evaluation; writes the run folder; returns metrics.json's content."""
    started = time.time()
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    timing: dict[str, float] = {}

    data_dir = resolve_data_dir(config)
    records, class_names = list_images(data_dir)
    unknown = sorted(set(config.holdout_classes) - set(class_names))
    if unknown:
        raise DatasetError(f"held-out classes {unknown} are not in {data_dir} (classes: {class_names})")
    if len(class_names) - len(config.holdout_classes) < 2:
        raise DatasetError("at least 2 classes must remain for training after --holdout-classes")
    records = cap_per_class(records, config.max_images_per_class)
    train_records, test_records = split_records(records, config.test_fraction, config.split_salt)
    size = config.input_size
    train_set, skipped = load_images(data_dir, train_records, class_names, size, config.progress)
    test_set, skipped_test = load_images(data_dir, test_records, class_names, size, config.progress)
    skipped += skipped_test
    if len(test_set.records) == 0:
        raise DatasetError("the test split is empty after skipping unreadable images")
    write_split_lists(run_dir, train_set.records, test_set.records)
    timing["load_seconds"] = time.time() - started

    holdout_ids = [class_names.index(c) for c in config.holdout_classes]
    fit_rows = np.flatnonzero(~np.isin(train_set.labels, holdout_ids))
    fit_class_ids = sorted(set(train_set.labels[fit_rows].tolist()))
    fit_labels = np.searchsorted(fit_class_ids, train_set.labels[fit_rows])

    strategy = make_strategy(config.strategy)
    with strategy.scope():
        tower = build_tower(size, config.embedding_size, config.weights, config.alpha)
        heads = objectives.make_heads(len(fit_class_ids), config.cosine_scale)
        lower = lower_blocks(tower, config.fine_tune_from_block)
        upper = upper_blocks(tower, config.fine_tune_from_block)
        pooled = keras.Model(upper.input, tower.pool(upper.output))

    if config.weights.lower() == "none":
        recalibrate_batchnorm(tower, train_set.clean[fit_rows])
    tick = time.time()
    clean_train = run_in_batches(lower, train_set.clean, dtype=np.float32)
    clean_test = run_in_batches(lower, test_set.clean, dtype=np.float32)
    baseline_train = run_in_batches(pooled, clean_train, dtype=np.float32)
    baseline_test = run_in_batches(pooled, clean_test, dtype=np.float32)
    timing["frozen_features_seconds"] = time.time() - tick
    evaluate = lambda gallery, queries: evaluate_embeddings(  # noqa: E731
        gallery, train_set.labels, queries, test_set.labels, class_names,
        config.holdout_classes, config.eval_pairs, config.seed,
    )
    baseline_report = evaluate(baseline_train, baseline_test)
    log.info(summary_line("baseline", baseline_report))

    history: dict[str, list[float]] = {"stage 1": [], "stage 2": []}
    tick = time.time()
    with strategy.scope():
        vectors = keras.Input(baseline_train.shape[1:], name="pooled_features")
        head_only = keras.Model(vectors, tower.normalize(tower.projection(vectors)))
        model, loss, weights = objectives.training_model(
            head_only, config.loss, heads, config.margin, config.cosine_margin, config.distill_weight
        )
        model.compile(optimizer=keras.optimizers.Adam(config.head_learning_rate), loss=loss, loss_weights=weights)
    fit_pooled = baseline_train[fit_rows]
    # Teacher for distillation: the frozen features, centred so that cosine reflects differences.
    teacher = (fit_pooled - fit_pooled.mean(axis=0)) if weights else None
    history["stage 1"] = _fit_epochs(
        model, config, fit_labels, lambda idx, _: fit_pooled[idx], config.head_epochs, rng, "stage 1", teacher
    )
    timing["stage1_seconds"] = time.time() - tick

    tick = time.time()
    with strategy.scope():
        maps = keras.Input(clean_train.shape[1:], name="lower_features")
        upper_embedder = keras.Model(maps, tower.normalize(tower.projection(tower.pool(upper(maps)))))
    if config.fine_tune_epochs > 0:
        views = augmented_view_features(
            lower, [train_set.sources[i] for i in fit_rows], size, config.augmented_views,
            config.seed, progress=config.progress,
        )
        timing["augmented_views_seconds"] = time.time() - tick
        set_fine_tuning(tower, config.fine_tune_from_block)
        with strategy.scope():
            model, loss, weights = objectives.training_model(
                upper_embedder, config.loss, heads, config.margin, config.cosine_margin, config.distill_weight
            )
            schedule = _cosine_schedule(config, _steps_per_epoch(config, fit_labels))
            model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, loss_weights=weights)
        history["stage 2"] = _fit_epochs(
            model, config, fit_labels, lambda idx, r: pick_views(views, idx, r),
            config.fine_tune_epochs, rng, "stage 2", teacher,
        )
        del views
    timing["stage2_seconds"] = time.time() - tick

    encoder, head_only_report = tower.encoder, None
    if config.generic_share > 0:
        tick = time.time()
        encoder, trained_train, trained_test = _generic_branch(tower, config, clean_train, clean_test, fit_rows)
        timing["generic_branch_seconds"] = time.time() - tick
        head_only_report = evaluate(trained_train[:, : config.embedding_size], trained_test[:, : config.embedding_size])
        log.info(summary_line("head only", head_only_report))
    else:
        trained_train = run_in_batches(upper_embedder, clean_train, dtype=np.float32)
        trained_test = run_in_batches(upper_embedder, clean_test, dtype=np.float32)
    trained_report = evaluate(trained_train, trained_test)
    log.info(summary_line("trained", trained_report))

    # The bce loss trained the pair head already, unless the generic branch changed the embedding.
    pair_head_trained = config.loss == "bce" and config.generic_share == 0
    pair_head = heads.pair_head if pair_head_trained else PairHead(name="pair_head")
    pair_report = _fit_pair_head(
        pair_head, not pair_head_trained, config, trained_train, trained_test, train_set.labels, test_set.labels, rng
    )
    encoder_check = _check_encoder(encoder, test_set.clean[:16], trained_test[:16])
    encoder.save(run_dir / ENCODER_FILE)
    build_pair_model(encoder, pair_head).save(run_dir / SIAMESE_FILE)
    timing["total_seconds"] = time.time() - started

    unseen_comparison = unseen_against_baseline(
        (trained_train, trained_test), (baseline_train, baseline_test), train_set.labels, test_set.labels,
        holdout_ids, seed=config.seed,
    ) if holdout_ids else None
    metrics = {
        "trained": trained_report,
        BASELINE_KEY: baseline_report,
        **({"trained_head_only": head_only_report} if head_only_report else {}),
        **({"unseen_vs_baseline": unseen_comparison} if unseen_comparison else {}),
        "embedding_segments": embedding_segments(encoder),
        "pair_head": pair_report,
        "encoder_check": encoder_check,
        "data": {
            "data_dir": str(data_dir),
            "classes": class_names,
            "holdout_classes": list(config.holdout_classes),
            "num_train": len(train_set.records),
            "num_test": len(test_set.records),
            "num_trained_on": int(len(fit_rows)),
            "skipped": [{"path": p, "reason": r} for p, r in skipped],
        },
        "timing": {k: round(v, 1) for k, v in timing.items()},
    }
    _write_json(run_dir / METRICS_FILE, metrics)
    _write_json(run_dir / HISTORY_FILE, history)
    _write_json(run_dir / CLASSES_FILE, {"classes": class_names})
    plot_history(history, run_dir / LOSS_PLOT)
    _save_grid(run_dir / GRID_PLOT, config, train_set, test_set, class_names, trained_train, trained_test)
    return metrics


def _fit_epochs(model, config: TrainConfig, labels, features_of, epochs: int, rng, stage: str,
                teacher: np.ndarray | None = None) -> list[float]:
    losses = []
    batch_size = objectives.effective_batch_size(config.loss, labels, config.batch_size)
    for epoch in range(epochs):
        tick = time.time()
        x, y = objectives.epoch_data(config.loss, labels, features_of, batch_size, config.pairs_per_epoch, rng, teacher)
        result = model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=1 if config.progress else 0)
        losses.append(float(result.history["loss"][-1]))
        log.info("%s epoch %d/%d: loss %.4f (%.0f s)", stage, epoch + 1, epochs, losses[-1], time.time() - tick)
    return losses


def _steps_per_epoch(config: TrainConfig, labels: np.ndarray) -> int:
    batch_size = objectives.effective_batch_size(config.loss, labels, config.batch_size)
    items = len(labels) if config.loss in ("softmax", "triplet") else config.pairs_per_epoch
    return max(1, items // batch_size)


def _cosine_schedule(config: TrainConfig, steps_per_epoch: int):
    total = max(2, steps_per_epoch * config.fine_tune_epochs)
    warmup = min(steps_per_epoch, total // 2)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.fine_tune_learning_rate / 10,
        decay_steps=total - warmup,
        warmup_target=config.fine_tune_learning_rate,
        warmup_steps=warmup,
        alpha=0.01,
    )


def _generic_branch(tower, config: TrainConfig, clean_train, clean_test, fit_rows):
    """Fits the fixed generic branch on the training classes' images and assembles the two-branch
    encoder. Returns it with the train and test embeddings it gives (head first, as exported)."""
    backbone = tower.backbone
    maps = split_point(backbone, config.fine_tune_from_block)
    bottleneck = keras.layers.GlobalAveragePooling2D()(backbone.get_layer(GENERIC_SOURCE_LAYER).output)
    head = tower.projection(tower.pool(backbone.output))
    branches = keras.Model(maps, keras.layers.Concatenate()([head, bottleneck]))
    raw_train = run_in_batches(branches, clean_train, dtype=np.float32)
    raw_test = run_in_batches(branches, clean_test, dtype=np.float32)
    size = config.embedding_size
    head_rms = float(np.sqrt(np.mean(np.sum(raw_train[fit_rows, :size] ** 2, axis=1))))
    weights, bias = fit_generic_projection(raw_train[fit_rows, size:], config.generic_size, config.generic_power, head_rms)
    encoder = add_generic_branch(tower, weights.shape[1], config.generic_share)
    encoder.get_layer(GENERIC_PROJECTION_LAYER).set_weights([weights, bias])
    segments = embedding_segments(encoder)
    embed = lambda raw: segment_normalize(np.hstack([raw[:, :size], raw[:, size:] @ weights + bias]), segments)  # noqa: E731
    return encoder, embed(raw_train), embed(raw_test)


def _fit_pair_head(pair_head, fit: bool, config, train_emb, test_emb, train_labels, test_labels, rng) -> dict:
    """Stage 3: the Siamese L1 pair head on the final embeddings (``fit``), then its test AUC."""
    vectors = keras.Input((train_emb.shape[1],), name="embedding")
    identity = keras.Model(vectors, vectors)
    pair_model = build_pair_model(identity, pair_head)
    if fit:
        pair_model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
        pairs = balanced_pairs(train_labels, 20000, rng)
        pair_model.fit([train_emb[pairs[:, 0]], train_emb[pairs[:, 1]]], pairs[:, 2], batch_size=256, epochs=5, verbose=0)
    test_pairs = balanced_pairs(test_labels, config.eval_pairs, np.random.default_rng(config.seed))
    scores = pair_model.predict([test_emb[test_pairs[:, 0]], test_emb[test_pairs[:, 1]]], verbose=0)[:, 0]
    return {
        "roc_auc": roc_auc(scores, test_pairs[:, 2]),
        "cosine_roc_auc": roc_auc(-pair_cosine_distances(test_emb, test_pairs), test_pairs[:, 2]),
        "note": "sigmoid(Dense(|a-b|)) head of siamese.keras on test pairs; same = 1 means similar",
    }


def _check_encoder(encoder, images: np.ndarray, cached_embeddings: np.ndarray) -> dict:
    """The assembled pixels->embedding encoder must match the cached-feature path it was trained by."""
    direct = np.asarray(encoder.predict(images.astype(np.float32), verbose=0))
    return {"images": int(len(images)), "max_abs_diff": float(np.abs(direct - cached_embeddings).max())}


def _save_grid(path, config, train_set, test_set, class_names, train_emb, test_emb) -> None:
    rng = np.random.default_rng(config.seed)
    count = min(config.grid_queries, len(test_set.records))
    queries = np.sort(rng.choice(len(test_set.records), size=count, replace=False))
    order, similarity = nearest_neighbours(test_emb[queries], train_emb, 5)
    grid = retrieval_grid(
        [test_set.clean[q] for q in queries],
        [class_names[test_set.labels[q]] for q in queries],
        [[train_set.clean[j] for j in row] for row in order],
        [[class_names[train_set.labels[j]] for j in row] for row in order],
        similarity.tolist(),
    )
    save_rgb_png(grid, path)


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
