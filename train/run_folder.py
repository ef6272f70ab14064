"""Reading a finished training run folder (used by re-evaluation and by export); its file names are
in train.layout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.config import TrainConfig
from train.data import ImageRecord, read_split_list
from train.layout import CLASSES_FILE, CONFIG_FILE, ENCODER_FILE, METRICS_FILE, REQUIRED_FILES, TEST_LIST, TRAIN_LIST

__all__ = ["REQUIRED_FILES", "RunFolder", "RunFolderError", "data_dir_of", "open_run"]


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
        return self.path / ENCODER_FILE

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
        config = TrainConfig.from_json((path / CONFIG_FILE).read_text(encoding="utf-8"))
        class_names = json.loads((path / CLASSES_FILE).read_text(encoding="utf-8"))["classes"]
        metrics = json.loads((path / METRICS_FILE).read_text(encoding="utf-8"))
        train_records = read_split_list(path / TRAIN_LIST)
        test_records = read_split_list(path / TEST_LIST)
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
