"""Cached frozen features: the lower backbone blocks run once per image view, never per epoch.

On 2 CPU cores the frozen lower blocks cost more than training the top blocks (measured: 17 ms
vs 10 ms per image at 224 px with blocks 10-16 trained), so stage 2 trains on a cache of lower-block
feature maps of several augmented views of every training image, and stage 1 on pooled features.
The maps are written as shards (train.shards) and read back a shard or a batch at a time, so
memory does not grow with the number of images.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from train.augment import augmented_view
from train.data import ImageList
from train.shards import SHARD_ROWS, ShardedArray, write_shard

log = logging.getLogger(__name__)


def embed_image_list(model, images: ImageList, batch_size: int = 32, chunk: int = 512) -> np.ndarray:
    """float32 ``model`` outputs of every clean image of ``images``, decoded ``chunk`` images at a
    time, so memory does not grow with the split. ``predict`` (not ``predict_on_batch``) so that
    tf.distribute strategies split and gather the batches correctly."""
    chunks = (images.clean(range(start, min(start + chunk, len(images)))) for start in range(0, len(images), chunk))
    return predict_chunks(model, chunks, batch_size)


def lower_features_to_shards(model, images: ImageList, rows: np.ndarray, folder: Path, batch_size: int = 32) -> tuple:
    """Writes ``model``'s float32 features of the clean images ``rows`` as shards of ``folder``,
    decoding one shard's images at a time. Same batches as :func:`embed_image_list` (shard = chunk).

    Returns:
      ``(groups, rows, item_shape, dtype)`` for train.cache.
    """
    if len(rows) == 0:
        raise ValueError("lower_features_to_shards got no images")
    shape = None
    for shard, start in enumerate(range(0, len(rows), SHARD_ROWS)):
        pixels = images.clean(rows[start : start + SHARD_ROWS]).astype(np.float32)
        features = np.asarray(model.predict(pixels, batch_size=batch_size, verbose=0)).astype(np.float32)
        write_shard(folder, 0, shard, features)
        shape = features.shape[1:]
    return 1, len(rows), shape, np.float32


def augmented_views_to_shards(
    lower_model,
    images: ImageList,
    rows: np.ndarray,
    views: int,
    seed: int,
    folder: Path,
    batch_size: int = 32,
    progress: bool = False,
) -> tuple:
    """Float16 lower-block features of ``views`` augmented views of the images ``rows``, as the
    shards of a ``(views, len(rows), h, w, c)`` array in ``folder``; one shard's source images are
    decoded at a time. View ``v`` of the ``i``-th image is drawn from
    ``np.random.default_rng([seed, v, i])``, so the cache is reproducible image by image and does
    not depend on the order it is made in.

    Returns:
      ``(groups, rows, item_shape, dtype)`` for train.cache.
    """
    starts = range(0, len(rows), SHARD_ROWS)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="augmented views", unit="shard", leave=False)
    shape = None
    for shard, start in enumerate(starts):
        sources = images.sources(rows[start : start + SHARD_ROWS])
        for view in range(views):
            pixels = np.stack([
                augmented_view(src, images.size, np.random.default_rng([seed, view, start + i]))
                for i, src in enumerate(sources)
            ]).astype(np.float32)
            features = np.asarray(lower_model.predict(pixels, batch_size=batch_size, verbose=0)).astype(np.float16)
            write_shard(folder, view, shard, features)
            shape = features.shape[1:]
    return views, len(rows), shape, np.float16


def predict_chunks(model, chunks: Iterable[np.ndarray], batch_size: int = 32, dtype=np.float32) -> np.ndarray:
    """``model.predict`` over a sharded array's chunks; the outputs (small: pooled features,
    embeddings) are concatenated."""
    outputs = [np.asarray(model.predict(np.asarray(c, dtype=np.float32), batch_size=batch_size, verbose=0)).astype(dtype)
               for c in chunks]
    if not outputs:
        raise ValueError("predict_chunks got no chunks")
    return np.concatenate(outputs)


class Rows:
    """An epoch's model inputs, read a batch at a time: ``rows.read(start, stop)``."""

    def __init__(self, length: int, read: Callable[[int, int], np.ndarray]):
        self.length, self.read = length, read

    def __len__(self) -> int:
        return self.length


def gather(array: np.ndarray, indices: np.ndarray) -> Rows:
    """``array[indices]`` (an array in memory), a batch at a time."""
    return Rows(len(indices), lambda start, stop: array[indices[start:stop]])


def pick_views(views: ShardedArray, indices: np.ndarray, rng: np.random.Generator) -> Rows:
    """One randomly chosen cached view for every index: ``views[v_i, i]``, read a batch at a time.
    The views are drawn now, all at once (the draws of the in-memory version, in the same order)."""
    chosen_views = rng.integers(0, views.groups, size=len(indices))
    return Rows(len(indices), lambda start, stop: views.take(chosen_views[start:stop], indices[start:stop]))
