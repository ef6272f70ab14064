"""One training run, start to finish, in the order ``train()`` reads: data -> frozen baseline ->
stage 1 -> stage 2 -> generic branch -> evaluation -> run folder.

Stage 1 trains the projection head (and the loss's own head) on cached pooled features of the
frozen backbone. Stage 2 fine-tunes MobileNetV2 blocks >= ``fine_tune_from_block`` on cached
lower-block feature maps of ``augmented_views`` augmented views per image; BatchNorm stays frozen.
The stages themselves are in train.stages.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from edge.metrics import roc_auc
from train import stages
from train.cache import FeatureCache, weights_digest
from train.checkpoint import EpochBackup, fingerprint
from train.config import TrainConfig
from train.distribute import discard_worker_output, is_chief, make_strategy, output_dir, worker_values_gatherer
from train.data import (
    DatasetError, ImageList, cap_per_class, list_images, scan_images, split_records, write_split_lists,
)
from train.evaluate import (
    evaluate_embeddings,
    nearest_neighbours,
    pair_cosine_distances,
    summary_line,
    unseen_against_baseline,
)
from train.features import predict_chunks
from train.layout import (
    BACKUP_DIR, CLASSES_FILE, CONFIG_FILE, ENCODER_FILE, GRID_PLOT, HISTORY_FILE, LOSS_PLOT, METRICS_FILE,
    SHARDS_DIR, SIAMESE_FILE, TEST_LIST, TRAIN_LIST,
)
from train.model import PairHead, build_pair_model, embedding_segments
from train.precision import compute_policy, float32_encoder, gpu_visible, precision_key, resolve_precision
from train.plots import plot_history, retrieval_grid, save_rgb_png
from train.sampling import balanced_pairs

log = logging.getLogger(__name__)
BASELINE_KEY = "baseline_frozen_imagenet"


def resolve_data_dir(config: TrainConfig) -> Path:
    """The class-folder root: the given folder, or tf_flowers unpacked by tensorflow-datasets."""
    if config.data_dir:
        return Path(config.data_dir)
    from train.tfds_source import materialize_tfds_folder

    return materialize_tfds_folder(Path(config.dataset_cache))


@dataclass
class Data:
    """The data stage's result: both splits checked (decoded later, a chunk at a time), and which
    training rows the model fits on."""

    data_dir: Path
    class_names: list[str]
    train_set: ImageList
    test_set: ImageList
    skipped: list[tuple[str, str]]
    holdout_ids: list[int]
    fit_rows: np.ndarray
    """Rows of the train split whose class is trained on (not held out)."""
    fit_labels: np.ndarray
    """Their labels renumbered 0..k-1 over the trained classes."""


def train(config: TrainConfig) -> dict:
    """Runs training and evaluation; writes the run folder; returns metrics.json's content."""
    started = time.time()
    strategy = make_strategy(config.strategy)  # first: a multi-worker strategy must precede every TF op
    config = dataclasses.replace(config, precision=_agreed_precision(config.precision, strategy))  # config.json: what ran
    run_dir = output_dir(Path(config.run_dir), strategy)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    timing: dict[str, float] = {}

    data = load_data(config, run_dir)
    timing["load_seconds"] = time.time() - started

    with compute_policy(config.precision):  # the training models: float16 arithmetic in "mixed"
        parts = stages.build_parts(config, strategy, int(data.fit_labels.max()) + 1)
        tick = time.time()
        cache = FeatureCache(Path(config.cache_dir) if config.cache_dir else None, run_dir / SHARDS_DIR)
        features = stages.frozen_features(config, parts, data.data_dir, data.train_set, data.test_set, data.fit_rows, cache)
        timing["frozen_features_seconds"] = time.time() - tick
        evaluate = _evaluator(config, data)
        baseline_report = evaluate(features.baseline_train, features.baseline_test)
        log.info(summary_line("baseline", baseline_report))

        history: dict[str, list[float]] = {}
        backup = EpochBackup(_backup_dir(config, run_dir, strategy), _run_fingerprint(config, run_dir),
                             worker_values_gatherer(strategy))
        teacher = stages.distillation_teacher(config, features, data.fit_rows)
        tick = time.time()
        stages.stage_1(config, strategy, parts, features, data.fit_rows, data.fit_labels, rng, teacher, backup, history)
        timing["stage1_seconds"] = time.time() - tick

        tick = time.time()
        embedder = stages.upper_embedder(strategy, parts, features)
        stages.stage_2(
            config, strategy, parts, embedder, data.data_dir, data.train_set, features, cache, data.fit_rows,
            data.fit_labels, rng, teacher, backup, history, timing,
        )
        timing["stage2_seconds"] = time.time() - tick

        encoder, head_only_report = parts.tower.encoder, None
        if config.generic_share > 0:
            tick = time.time()
            encoder, trained_train, trained_test = stages.generic_branch(config, parts.tower, features, data.fit_rows)
            timing["generic_branch_seconds"] = time.time() - tick
            size = config.embedding_size
            head_only_report = evaluate(trained_train[:, :size], trained_test[:, :size])
            log.info(summary_line("head only", head_only_report))
        else:
            trained_train = predict_chunks(embedder, features.clean_train.chunks())
            trained_test = predict_chunks(embedder, features.clean_test.chunks())
    encoder = float32_encoder(encoder, config.precision, config.input_size, config.alpha)

    trained_report = evaluate(trained_train, trained_test)
    log.info(summary_line("trained", trained_report))
    pair_head, pair_report = _pair_head(config, parts.heads, data, trained_train, trained_test, rng)
    checked = np.arange(min(16, len(data.test_set)))
    encoder_check = _check_encoder(encoder, data.test_set.clean(checked), trained_test[checked])
    unseen_comparison = unseen_against_baseline(
        (trained_train, trained_test), (features.baseline_train, features.baseline_test), data.train_set.labels,
        data.test_set.labels, data.holdout_ids, seed=config.seed,
    ) if data.holdout_ids else None

    encoder.save(run_dir / ENCODER_FILE)
    build_pair_model(encoder, pair_head).save(run_dir / SIAMESE_FILE)
    timing["total_seconds"] = time.time() - started
    metrics = {
        "trained": trained_report,
        BASELINE_KEY: baseline_report,
        **({"trained_head_only": head_only_report} if head_only_report else {}),
        **({"unseen_vs_baseline": unseen_comparison} if unseen_comparison else {}),
        "embedding_segments": embedding_segments(encoder),
        "pair_head": pair_report,
        "encoder_check": encoder_check,
        "data": _data_summary(config, data),
        "timing": {k: round(v, 1) for k, v in timing.items()},
    }
    write_run(run_dir, config, data, metrics, history, trained_train, trained_test)
    log.info("encoder weights sha256 %s", weights_digest(encoder))
    backup.finish()
    cache.finish()
    discard_worker_output(run_dir, strategy)
    return metrics


def load_data(config: TrainConfig, run_dir: Path) -> Data:
    """Lists, splits and checks the data set (bad files skipped); writes the split lists into the run folder."""
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
    train_set, skipped = scan_images(data_dir, train_records, class_names, size, config.progress)
    test_set, skipped_test = scan_images(data_dir, test_records, class_names, size, config.progress)
    skipped += skipped_test
    if len(test_set.records) == 0:
        raise DatasetError("the test split is empty after skipping unreadable images")
    write_split_lists(run_dir, train_set.records, test_set.records)
    holdout_ids = [class_names.index(c) for c in config.holdout_classes]
    fit_rows = np.flatnonzero(~np.isin(train_set.labels, holdout_ids))
    fit_class_ids = sorted(set(train_set.labels[fit_rows].tolist()))
    fit_labels = np.searchsorted(fit_class_ids, train_set.labels[fit_rows])
    return Data(data_dir, class_names, train_set, test_set, skipped, holdout_ids, fit_rows, fit_labels)


def write_run(run_dir: Path, config: TrainConfig, data: Data, metrics: dict, history: dict,
              trained_train: np.ndarray, trained_test: np.ndarray) -> None:
    """metrics.json, history.json, classes.json and the two pictures (the models are saved already)."""
    _write_json(run_dir / METRICS_FILE, metrics)
    _write_json(run_dir / HISTORY_FILE, history)
    _write_json(run_dir / CLASSES_FILE, {"classes": data.class_names})
    plot_history(history, run_dir / LOSS_PLOT)
    _save_grid(run_dir / GRID_PLOT, config, data.train_set, data.test_set, data.class_names, trained_train,
               trained_test)


def _backup_dir(config: TrainConfig, run_dir: Path, strategy) -> Path | None:
    """<run>/backup (each worker's run folder is its own), or --backup-dir: the chief's, with
    ``-worker<i>`` added for worker i so that workers sharing a disk do not share a backup."""
    if config.backup_dir == "none":
        return None
    if not config.backup_dir:
        return run_dir / BACKUP_DIR
    folder = Path(config.backup_dir).resolve()
    if is_chief(strategy):
        return folder
    return folder.parent / f"{folder.name or 'backup'}-worker{strategy.cluster_resolver.task_id}"


def _agreed_precision(precision: str, strategy) -> str:
    """``precision`` resolved (train.precision); ``auto`` over several workers is ``mixed`` only
    when every worker sees a GPU, so that all of them train the same way."""
    gather = worker_values_gatherer(strategy)
    if precision != "auto" or gather is None:
        return resolve_precision(precision)
    everywhere = all(row == [1] for row in gather([int(gpu_visible())]))
    return resolve_precision(precision, has_gpu=everywhere)


def _run_fingerprint(config: TrainConfig, run_dir: Path) -> str:
    """What a backup must have been made by to be resumed: the configuration (bar the switches
    that do not change the result) and the split lists just written."""
    ignored = ("progress", "backup_dir", "cache_dir", "precision")
    settings = {k: v for k, v in json.loads(config.to_json()).items() if k not in ignored}
    settings |= precision_key(config.precision)
    lists = [(run_dir / name).read_text(encoding="utf-8") for name in (TRAIN_LIST, TEST_LIST)]
    return fingerprint(json.dumps(settings, sort_keys=True), *lists)


def _evaluator(config: TrainConfig, data: Data):
    """evaluate(gallery, queries) -> report, with the split's labels and the run's settings."""
    def evaluate(gallery: np.ndarray, queries: np.ndarray) -> dict:
        return evaluate_embeddings(
            gallery, data.train_set.labels, queries, data.test_set.labels, data.class_names,
            config.holdout_classes, config.eval_pairs, config.seed,
        )
    return evaluate


def _data_summary(config: TrainConfig, data: Data) -> dict:
    return {
        "data_dir": str(data.data_dir),
        "classes": data.class_names,
        "holdout_classes": list(config.holdout_classes),
        "num_train": len(data.train_set.records),
        "num_test": len(data.test_set.records),
        "num_trained_on": int(len(data.fit_rows)),
        "skipped": [{"path": p, "reason": r} for p, r in data.skipped],
    }


def _pair_head(config: TrainConfig, heads, data: Data, trained_train, trained_test, rng):
    """The pair head of siamese.keras and its report. The bce loss trained it already, unless the
    generic branch changed the embedding; otherwise a new one is fitted on the final embeddings."""
    trained = config.loss == "bce" and config.generic_share == 0
    pair_head = heads.pair_head if trained else PairHead(name="pair_head")
    report = _fit_pair_head(
        pair_head, not trained, config, trained_train, trained_test, data.train_set.labels, data.test_set.labels, rng
    )
    return pair_head, report


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
        list(test_set.clean(queries)),
        [class_names[test_set.labels[q]] for q in queries],
        [list(train_set.clean(row)) for row in order],
        [[class_names[train_set.labels[j]] for j in row] for row in order],
        similarity.tolist(),
    )
    save_rgb_png(grid, path)


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
