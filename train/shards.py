"""Arrays too large for memory, on disk as fixed-size ``.npy`` shards, written once, read in chunks.

A :class:`ShardedArray` is a ``(groups, rows, *item)`` array (the clean images' lower-block maps are
one group; the augmented views are one group per view) stored as one ``.npy`` file per
``SHARD_ROWS`` rows of a group, plus ``meta.json``, which is written last and marks the array
complete. Every shard and the meta file are written atomically (``edge.atomic``), so a killed run
leaves complete shards or none, never a torn one.

Reading never maps a file: a memory map read end to end keeps every touched page in the process's
resident set (RssFile counts in VmHWM), so it would not bound peak memory. Sequential passes read
one shard at a time with plain reads (:meth:`ShardedArray.chunks`); batches of random rows are read
with ``os.pread`` row by row (:meth:`ShardedArray.take`), so memory is one shard or one batch
whatever the number of rows.

    <folder>/meta.json               shape, dtype, shard size (and the cache key, train.cache)
    <folder>/g<group>-<shard>.npy    rows [shard * SHARD_ROWS, (shard + 1) * SHARD_ROWS) of a group
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from edge.atomic import write_atomic, write_text_atomic

SHARD_ROWS = 512
"""Rows per shard; also train.features' prediction chunk, so a shard is exactly one chunk."""
META_FILE = "meta.json"
_OPEN_FILES = 32
"""Shard files kept open for random reads (a view cache has views x rows / SHARD_ROWS shards)."""


def shard_name(group: int, shard: int) -> str:
    return f"g{group:03d}-{shard:05d}.npy"


def write_shard(folder: Path, group: int, shard: int, array: np.ndarray) -> None:
    """Writes one shard atomically (shard ``shard`` of ``group`` holds rows from shard * SHARD_ROWS)."""
    write_atomic(Path(folder) / shard_name(group, shard), lambda out: np.save(out, np.ascontiguousarray(array)))


def write_meta(folder: Path, groups: int, rows: int, item_shape: tuple, dtype, extra: dict | None = None) -> None:
    """Marks the array in ``folder`` complete; call after every shard is written."""
    meta = {"groups": groups, "rows": rows, "item_shape": list(item_shape), "dtype": np.dtype(dtype).str,
            "shard_rows": SHARD_ROWS, **(extra or {})}
    write_text_atomic(Path(folder) / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(folder: Path) -> dict | None:
    """The meta of a complete array in ``folder``, None when it is missing or unreadable."""
    try:
        return json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass(eq=False)
class ShardedArray:
    """A complete sharded array, read in bounded pieces; ``open_sharded(folder)`` makes one."""

    folder: Path
    groups: int
    rows: int
    item_shape: tuple
    dtype: np.dtype
    shard_rows: int
    _files: OrderedDict = field(default_factory=OrderedDict, repr=False)

    @property
    def shape(self) -> tuple:
        return (self.groups, self.rows, *self.item_shape)

    def num_shards(self) -> int:
        return -(-self.rows // self.shard_rows)

    def chunks(self, group: int = 0) -> Iterator[np.ndarray]:
        """The rows of ``group`` in order, one shard (at most ``shard_rows`` rows) at a time."""
        for shard in range(self.num_shards()):
            yield np.load(self.folder / shard_name(group, shard))  # plain reads into a new array

    def read_group(self, group: int = 0) -> np.ndarray:
        """A whole group in memory (small arrays and tests only)."""
        return np.concatenate(list(self.chunks(group)))

    def take(self, groups: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``array[groups[j], rows[j]]`` for every j, read row by row with ``os.pread``."""
        groups, rows = np.asarray(groups, dtype=np.int64), np.asarray(rows, dtype=np.int64)
        if groups.shape != rows.shape or groups.ndim != 1:
            raise ValueError(f"take needs two equal 1-d index arrays, got {groups.shape} and {rows.shape}")
        if len(rows) and (rows.min() < 0 or rows.max() >= self.rows or groups.min() < 0 or groups.max() >= self.groups):
            raise IndexError(f"rows or groups out of range for a sharded array of shape {self.shape}")
        out = np.empty((len(rows), *self.item_shape), dtype=self.dtype)
        item_bytes = int(np.prod(self.item_shape, dtype=np.int64)) * self.dtype.itemsize
        flat = out.reshape(len(rows), item_bytes // self.dtype.itemsize).view(np.uint8)
        for j in np.lexsort((rows, groups)):  # file order: fewer seeks on a cold page cache
            shard, within = divmod(int(rows[j]), self.shard_rows)
            fd, offset = self._open(int(groups[j]), shard)
            got = os.preadv(fd, [flat[j]], offset + within * item_bytes)
            if got != item_bytes:
                raise OSError(f"short read in {self.folder / shard_name(int(groups[j]), shard)}: {got} of {item_bytes} bytes")
        return out

    def close(self) -> None:
        while self._files:
            os.close(self._files.popitem()[1][0])

    def _open(self, group: int, shard: int) -> tuple[int, int]:
        """(file descriptor, offset of the data) of a shard; a few stay open, least recently used closed."""
        key = (group, shard)
        if key in self._files:
            self._files.move_to_end(key)
            return self._files[key]
        path = self.folder / shard_name(group, shard)
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"{path}: .npy format {version} is not one np.save writes for plain arrays")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
            offset = handle.tell()
        expected = (min(self.shard_rows, self.rows - shard * self.shard_rows), *self.item_shape)
        if tuple(shape) != expected or fortran or dtype != self.dtype:
            raise ValueError(f"{path} holds {shape} {dtype}, expected {expected} {self.dtype}")
        self._files[key] = (os.open(path, os.O_RDONLY), offset)
        if len(self._files) > _OPEN_FILES:
            os.close(self._files.popitem(last=False)[1][0])
        return self._files[key]

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


def open_sharded(folder: Path) -> ShardedArray:
    """The complete array in ``folder``.

    Raises:
      FileNotFoundError: ``folder`` holds no complete array (no meta.json: never finished).
    """
    meta = read_meta(folder)
    if meta is None:
        raise FileNotFoundError(f"{folder} holds no complete sharded array (no {META_FILE})")
    return ShardedArray(Path(folder), int(meta["groups"]), int(meta["rows"]), tuple(meta["item_shape"]),
                        np.dtype(meta["dtype"]), int(meta["shard_rows"]))


def write_array(folder: Path, array: np.ndarray, extra: dict | None = None) -> ShardedArray:
    """Shards a ``(groups, rows, *item)`` array held in memory (tests, small arrays)."""
    for group in range(array.shape[0]):
        for shard in range(-(-array.shape[1] // SHARD_ROWS)):
            write_shard(folder, group, shard, array[group, shard * SHARD_ROWS : (shard + 1) * SHARD_ROWS])
    write_meta(folder, array.shape[0], array.shape[1], array.shape[2:], array.dtype, extra)
    return open_sharded(folder)
