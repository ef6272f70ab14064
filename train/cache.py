"""Frozen-block feature caches on disk, keyed by everything that produced them.

The lower blocks never train, so their features of the clean images and of the augmented views
depend only on the images' bytes, the lower blocks' weights, the image size, the split point, the
number of views, the seed and the augmentation code. The key is a sha256 over all of those; it is
part of the folder name, so a changed input looks for another folder and never reads a stale one,
and a second run with the same inputs (or a killed run started again) reads the cache instead of
recomputing it. The arrays are sharded (train.shards): written a shard at a time, atomically,
``meta.json`` last; read back a shard or a batch at a time.

    <cache>/<name>-<key[:20]>/meta.json     shape, dtype, the full key and what it was made from
    <cache>/<name>-<key[:20]>/g*-*.npy      the shards

Without ``--cache-dir`` the same folders live in the run folder (``shards/``) and are deleted when
the run ends; a killed run started again finds them there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from train.shards import ShardedArray, open_sharded, read_meta, write_meta

log = logging.getLogger(__name__)

CACHE_VERSION = 2
"""Raise when train.augment, train.features or train.shards change what a cached array holds
(2: sharded folders instead of whole .npy files)."""


def files_digest(root: Path, relative_paths: Iterable[str]) -> str:
    """sha256 over every file's relative path and bytes, in the given order."""
    digest = hashlib.sha256()
    for relative in relative_paths:
        digest.update(relative.encode("utf-8") + b"\0")
        digest.update(hashlib.sha256((Path(root) / relative).read_bytes()).digest())
    return digest.hexdigest()


def weights_digest(model) -> str:
    """sha256 of every weight's bytes (a model's identity for caching and for comparing workers)."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


class FeatureCache:
    """``load_or_make(name, key, make)``: the sharded array for ``key()``, made by ``make`` if absent."""

    def __init__(self, folder: Path | None, scratch: Path | None = None):
        """Arrays go to ``folder``; with ``folder`` None, to ``scratch`` (deleted by :meth:`finish`)."""
        if folder is None and scratch is None:
            raise ValueError("FeatureCache needs a cache folder or a scratch folder")
        self.folder = Path(folder) if folder else None
        self.root = self.folder or Path(scratch)

    def load_or_make(self, name: str, key: Callable[[], dict], make: Callable[[Path], tuple]) -> ShardedArray:
        """``make(folder)`` writes every shard (train.shards.write_shard) into ``folder`` and returns
        ``(groups, rows, item_shape, dtype)``; the meta file is written after it returns."""
        text = json.dumps({"version": CACHE_VERSION, **key()}, sort_keys=True)
        full = hashlib.sha256(text.encode("utf-8")).hexdigest()
        folder = self.root / f"{name}-{full[:20]}"
        meta = read_meta(folder)
        if meta is not None and meta.get("key") == full:
            log.info("reusing cached %s (%s)", name, folder.name)
            return open_sharded(folder)
        folder.mkdir(parents=True, exist_ok=True)
        groups, rows, item_shape, dtype = make(folder)
        write_meta(folder, groups, rows, item_shape, dtype, {"key": full, "made_from": json.loads(text)})
        log.info("cached %s in %s", name, folder)
        return open_sharded(folder)

    def finish(self) -> None:
        """Deletes the scratch folder (nothing when the arrays live in a cache folder)."""
        if self.folder is None:
            shutil.rmtree(self.root, ignore_errors=True)
