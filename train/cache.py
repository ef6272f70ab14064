"""Frozen-block feature caches on disk, keyed by everything that produced them.

The lower blocks never train, so their features of the clean images and of the augmented views
depend only on the images' bytes, the lower blocks' weights, the image size, the split point, the
number of views, the seed and the augmentation code. The key is a sha256 over all of those; it is
part of the file name, so a changed input looks for another file and never reads a stale one,
and a second run with the same inputs (or a killed run started again) reads the cache instead of
recomputing it. Files are written atomically (temporary name, then rename).

    <cache>/<name>-<key[:20]>.npy    the array
    <cache>/<name>-<key[:20]>.json   the full key and what it was made from
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from edge.atomic import write_atomic, write_text_atomic

log = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Raise when train.augment or train.features change what a cached array holds."""


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
    """``load_or_make(name, key, make)``: the cached array for ``key()``, or ``make()`` stored."""

    def __init__(self, folder: Path | None):
        """``folder`` None keeps nothing on disk (every array is made)."""
        self.folder = Path(folder) if folder else None

    def load_or_make(self, name: str, key: Callable[[], dict], make: Callable[[], np.ndarray]) -> np.ndarray:
        """``key`` is called only when caching is on (hashing every image file takes a while)."""
        if self.folder is None:
            return make()
        text = json.dumps({"version": CACHE_VERSION, **key()}, sort_keys=True)
        full = hashlib.sha256(text.encode("utf-8")).hexdigest()
        array_path = self.folder / f"{name}-{full[:20]}.npy"
        meta_path = array_path.with_suffix(".json")
        if array_path.is_file() and meta_path.is_file() and json.loads(meta_path.read_text())["key"] == full:
            log.info("reusing cached %s (%s)", name, array_path.name)
            return np.load(array_path)
        array = make()
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(array_path, lambda out: np.save(out, array))
        write_text_atomic(meta_path, json.dumps({"key": full, "made_from": json.loads(text)}, indent=2) + "\n")
        log.info("cached %s in %s", name, array_path)
        return array
