"""Class-folder data sets: listing, the deterministic split, and decoding (a chunk at a time for
training: :class:`ImageList`; all into memory for small jobs: :func:`load_images`).

A data set is a folder of ``<class>/<image>`` sub-folders (tf_flowers' own layout). Images are
decoded with the device's decoder (``edge.images``), so training and the device agree on colour
order, grayscale/RGBA handling and EXIF orientation. Bad files are reported and skipped before
training starts, never halfway through an epoch.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from edge.images import ImageError, is_image_file, read_image
from edge.preprocess import resize_image, shrink_to_short_side
from train.layout import SPLIT_DIR, TEST_LIST, TRAIN_LIST

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """The data folder cannot be used; the message says why."""


@dataclass(frozen=True)
class ImageRecord:
    """One image of the data set: its path relative to the data folder and its class."""

    path: str
    class_name: str


@dataclass
class LoadedImages:
    """Decoded images kept in memory for a run."""

    records: list[ImageRecord]
    labels: np.ndarray
    """(N,) int class index into the data set's class names."""
    clean: np.ndarray
    """(N, S, S, 3) uint8: the image exactly as the device feeds it (squashed to S)."""
    sources: list[np.ndarray]
    """Downscaled originals (short side <= 1.15 S) from which augmented views are cropped."""


@dataclass
class ImageList:
    """The images of one split, checked once and decoded again on demand, a chunk at a time, so
    training never holds every decoded image (decoding is cheap next to the frozen blocks and
    deterministic, so every pass sees the same pixels)."""

    data_dir: Path
    records: list[ImageRecord]
    """Only images that decoded when the split was scanned."""
    labels: np.ndarray
    """(N,) int class index into the data set's class names."""
    size: int
    """Side S of the clean images."""

    def __len__(self) -> int:
        return len(self.records)

    def clean(self, rows: Iterable[int]) -> np.ndarray:
        """(len(rows), S, S, 3) uint8: the images exactly as the device feeds them (squashed to S)."""
        images = [resize_image(self._read(row), self.size, self.size) for row in rows]
        return np.stack(images) if images else np.zeros((0, self.size, self.size, 3), np.uint8)

    def sources(self, rows: Iterable[int]) -> list[np.ndarray]:
        """Downscaled originals (short side <= 1.15 S) from which augmented views are cropped."""
        return [shrink_to_short_side(self._read(row), int(round(self.size * 1.15))) for row in rows]

    def _read(self, row: int) -> np.ndarray:
        path = self.data_dir / self.records[row].path
        try:
            return read_image(path)
        except ImageError as error:  # it decoded when scanned: the file changed during the run
            raise DatasetError(f"{path} no longer decodes ({error}); it did when training started") from error


def list_images(data_dir: Path) -> tuple[list[ImageRecord], list[str]]:
    """Lists ``data_dir/<class>/<image>`` files, sorted, independent of file-system order.

    Returns:
      The records and the sorted class names that have at least one image.

    Raises:
      DatasetError: the folder is missing or holds fewer than two classes with images.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"data folder {data_dir} does not exist; expected <class>/<image> sub-folders")
    records: list[ImageRecord] = []
    class_names: list[str] = []
    for class_dir in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in class_dir.rglob("*") if is_image_file(p))
        if not files:
            log.warning("class folder %s has no images; skipped", class_dir)
            continue
        class_names.append(class_dir.name)
        records.extend(ImageRecord(p.relative_to(data_dir).as_posix(), class_dir.name) for p in files)
    if len(class_names) < 2:
        raise DatasetError(
            f"{data_dir} has {len(class_names)} class folder(s) with images ({class_names}); "
            "similarity training needs at least 2 classes as <class>/<image> sub-folders"
        )
    return records, class_names


def split_fraction(path: str, salt: str) -> float:
    """A number in [0, 1) fixed by the relative path and salt alone (sha256)."""
    digest = hashlib.sha256(f"{salt}:{path}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_records(
    records: Sequence[ImageRecord], test_fraction: float, salt: str
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Stratified, deterministic train/test split.

    Within every class the images are ordered by the hash of their relative path and the first
    ``round(n * test_fraction)`` (at least one, when the class has two or more) go to test. The
    result depends on the names only: not on listing order, machine or Python's hash seed.
    """
    by_class: dict[str, list[ImageRecord]] = {}
    for record in records:
        by_class.setdefault(record.class_name, []).append(record)
    train, test = [], []
    for class_name in sorted(by_class):
        members = sorted(by_class[class_name], key=lambda r: (split_fraction(r.path, salt), r.path))
        n_test = int(round(len(members) * test_fraction))
        if len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        else:
            n_test = 0
        test.extend(members[:n_test])
        train.extend(members[n_test:])
    return sorted(train, key=lambda r: r.path), sorted(test, key=lambda r: r.path)


def cap_per_class(records: Sequence[ImageRecord], limit: int | None) -> list[ImageRecord]:
    """Keeps at most ``limit`` records of every class (the first by path); None keeps all."""
    if limit is None:
        return list(records)
    kept: list[ImageRecord] = []
    counts: dict[str, int] = {}
    for record in records:
        if counts.get(record.class_name, 0) < limit:
            kept.append(record)
            counts[record.class_name] = counts.get(record.class_name, 0) + 1
    return kept


def load_images(
    data_dir: Path,
    records: Iterable[ImageRecord],
    class_names: Sequence[str],
    size: int,
    progress: bool = False,
) -> tuple[LoadedImages, list[tuple[str, str]]]:
    """Decodes records into memory; bad files are skipped with a warning.

    Returns:
      The loaded images and a list of ``(path, reason)`` for every skipped file.
    """
    index_of = {name: i for i, name in enumerate(class_names)}
    kept, labels, clean, sources, skipped = [], [], [], [], []
    for record, rgb in _readable(data_dir, records, progress, "decode", skipped):
        kept.append(record)
        labels.append(index_of[record.class_name])
        clean.append(resize_image(rgb, size, size))
        sources.append(shrink_to_short_side(rgb, int(round(size * 1.15))))
    clean_array = np.stack(clean) if clean else np.zeros((0, size, size, 3), np.uint8)
    loaded = LoadedImages(kept, np.asarray(labels, dtype=np.int64), clean_array, sources)
    return loaded, skipped


def scan_images(
    data_dir: Path,
    records: Iterable[ImageRecord],
    class_names: Sequence[str],
    size: int,
    progress: bool = False,
) -> tuple[ImageList, list[tuple[str, str]]]:
    """Decodes every record once to find the bad files (skipped with a warning), keeping nothing.

    Returns:
      The images that decode, and a list of ``(path, reason)`` for every skipped file.
    """
    index_of = {name: i for i, name in enumerate(class_names)}
    kept, skipped = [], []
    for record, _ in _readable(data_dir, records, progress, "check", skipped):
        kept.append(record)
    labels = np.asarray([index_of[r.class_name] for r in kept], dtype=np.int64)
    return ImageList(Path(data_dir), kept, labels, size), skipped


def _readable(data_dir: Path, records: Iterable[ImageRecord], progress: bool, description: str,
              skipped: list[tuple[str, str]]) -> Iterator[tuple[ImageRecord, np.ndarray]]:
    """``(record, decoded RGB)`` of every record that decodes; the others are logged and added to
    ``skipped`` as ``(path, reason)``."""
    for record in _progress(list(records), progress, description):
        try:
            rgb = read_image(Path(data_dir) / record.path)
        except ImageError as error:
            log.warning("skipping %s: %s", record.path, error)
            skipped.append((record.path, str(error)))
            continue
        yield record, rgb


def write_split_lists(run_dir: Path, train: Sequence[ImageRecord], test: Sequence[ImageRecord]) -> None:
    """Writes ``split/train.txt`` and ``split/test.txt``: ``<relative path>\\t<class>`` per line."""
    (Path(run_dir) / SPLIT_DIR).mkdir(parents=True, exist_ok=True)
    for name, records in ((TRAIN_LIST, train), (TEST_LIST, test)):
        lines = "".join(f"{r.path}\t{r.class_name}\n" for r in records)
        (Path(run_dir) / name).write_text(lines, encoding="utf-8")


def read_split_list(path: Path) -> list[ImageRecord]:
    """Reads a split list written by :func:`write_split_lists`."""
    records = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise DatasetError(f"{path}:{number}: expected '<path>\\t<class>', got {line!r}")
        records.append(ImageRecord(parts[0], parts[1]))
    return records


def _progress(items: list, enabled: bool, description: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="img", leave=False)
