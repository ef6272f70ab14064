"""Reading a finished training run folder (used by re-evaluation and by export)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.config import TrainConfig
from train.data import ImageRecord, read_split_list

REQUIRED_FILES = ("config.json", "encoder.keras", "classes.json", "metrics.json", "split/train.txt", "split/test.txt")


class RunFolderError(ValueError):
    """A run folder is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class RunFolder:
    """The parts of a training run that later steps use."""

    path: Path
    config: TrainConfig
    class_names: list[str]
    train_records: list[ImageRecord]
    test_records: list[ImageRecord]
    metrics: dict

    @property
    def encoder_path(self) -> Path:
        return self.path / "encoder.keras"

    def labels_of(self, records: list[ImageRecord]) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.array([index[r.class_name] for r in records], dtype=np.int64)


def open_run(path: Path) -> RunFolder:
    """Checks that every file a finished run writes is present and readable.

    Raises:
      RunFolderError: naming the missing or broken file and how to make it.
    """
    path = Path(path)
    if not path.is_dir():
        raise RunFolderError(f"run folder {path} does not exist; train first: make train RUN={path}")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise RunFolderError(
            f"run folder {path} is incomplete (missing {', '.join(missing)}); the training run did not "
            f"finish. Train again: make train RUN={path}"
        )
    try:
        config = TrainConfig.from_json((path / "config.json").read_text(encoding="utf-8"))
        class_names = json.loads((path / "classes.json").read_text(encoding="utf-8"))["classes"]
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        train_records = read_split_list(path / "split" / "train.txt")
        test_records = read_split_list(path / "split" / "test.txt")
    except (ValueError, KeyError, TypeError) as error:
        raise RunFolderError(f"run folder {path} has a broken file: {error}") from error
    unknown = {r.class_name for r in train_records + test_records} - set(class_names)
    if unknown:
        raise RunFolderError(f"{path}: split lists name classes {sorted(unknown)} missing from classes.json")
    return RunFolder(path, config, class_names, train_records, test_records, metrics)


def data_dir_of(run: RunFolder, override: Path | None) -> Path:
    """The data folder to read the run's images from."""
    data_dir = Path(override) if override else Path(run.metrics.get("data", {}).get("data_dir", ""))
    if not data_dir.is_dir():
        raise RunFolderError(f"data folder {data_dir} of run {run.path} is not there; pass --data-dir")
    return data_dir


def evaluate_saved_run(path: Path, data_dir: Path | None, batch_size: int = 32) -> dict:
    """Embeds the run's split with its saved Keras encoder and recomputes the metrics."""
    import keras

    from train.data import load_images
    from train.evaluate import evaluate_embeddings
    from train.features import run_in_batches

    run = open_run(path)
    root = data_dir_of(run, data_dir)
    size = run.config.input_size
    train_set, _ = load_images(root, run.train_records, run.class_names, size)
    test_set, _ = load_images(root, run.test_records, run.class_names, size)
    encoder = keras.models.load_model(run.encoder_path)
    gallery = run_in_batches(encoder, train_set.clean, batch_size, np.float32)
    queries = run_in_batches(encoder, test_set.clean, batch_size, np.float32)
    return evaluate_embeddings(
        gallery, train_set.labels, queries, test_set.labels, run.class_names,
        run.config.holdout_classes, run.config.eval_pairs, run.config.seed,
    )
