"""Frozen-feature caches on disk: a second run with the same inputs reuses them and trains to the
same numbers; a changed image, seed or view count never reads a stale cache."""

from __future__ import annotations

import json
import logging

import numpy as np

from conftest import CLASS_STYLES, TINY_TRAIN_ARGS, synthetic_image, write_rgb
from tiny_train_metrics import comparable
from train.__main__ import main as train_main
from train.cache import FeatureCache, files_digest
from train.shards import SHARD_ROWS, write_shard

CACHED = ("clean-train", "clean-test", "views")


def test_second_run_reuses_the_caches_and_gets_the_same_metrics(tmp_path, tiny_data, caplog):
    cache = tmp_path / "cache"
    results = []
    for name in ("first", "second"):
        caplog.clear()
        run = tmp_path / name
        with caplog.at_level(logging.INFO, logger="train.cache"):
            argv = ["--data-dir", str(tiny_data), "--run-dir", str(run), "--cache-dir", str(cache), *TINY_TRAIN_ARGS]
            assert train_main(argv) == 0
        results.append((caplog.text, comparable(json.loads((run / "metrics.json").read_text()))))
    (first_log, first), (second_log, second) = results
    for name in CACHED:
        assert f"cached {name} in" in first_log and f"reusing cached {name}" in second_log, name
    assert "cached views in" not in second_log
    assert second == first
    folders = sorted(p.name.rsplit("-", 1)[0] for p in cache.iterdir())
    assert folders == sorted(CACHED) and all((cache / p / "meta.json").is_file() for p in cache.iterdir())
    assert not list(cache.rglob(".*"))  # no temporary leftovers
    assert not (tmp_path / "first" / "shards").exists()  # the run-local shards are only for runs without a cache


def test_a_changed_input_is_a_different_cache(tmp_path):
    data = tmp_path / "data"
    paths = [write_rgb(data / "a" / f"{i}.jpg", synthetic_image(CLASS_STYLES["circles"], seed=i)).name
             for i in range(3)]
    relative = [f"a/{p}" for p in paths]
    cache = FeatureCache(tmp_path / "cache")
    made = []

    def make(folder):
        made.append(1)
        array = np.arange(6, dtype=np.float16).reshape(2, 3) + len(made)
        write_shard(folder, 0, 0, array)
        return 1, 2, (3,), np.float16

    key = {"lower_weights": "w", "input_size": 32, "views": 2, "seed": 0}
    first = cache.load_or_make("views", lambda: {**key, "images": files_digest(data, relative)}, make).read_group()
    again = cache.load_or_make("views", lambda: {**key, "images": files_digest(data, relative)}, make).read_group()
    assert len(made) == 1 and np.array_equal(first, again) and again.dtype == np.float16
    for changed in ({**key, "seed": 1}, {**key, "views": 3}, {**key, "lower_weights": "v"}):
        cache.load_or_make("views", lambda: {**changed, "images": files_digest(data, relative)}, make)
    assert len(made) == 4
    write_rgb(data / "a" / paths[1], synthetic_image(CLASS_STYLES["squares"], seed=1))  # same name, new bytes
    fresh = cache.load_or_make("views", lambda: {**key, "images": files_digest(data, relative)}, make).read_group()
    assert len(made) == 5 and not np.array_equal(fresh, first)


def test_an_unfinished_cache_is_made_again_and_scratch_is_deleted(tmp_path):
    """Shards without meta.json (a run killed while writing them) are never read as a cache."""
    made = []

    def make(folder):
        made.append(1)
        for shard in range(2):
            write_shard(folder, 0, shard, np.full((SHARD_ROWS if shard == 0 else 5, 2), len(made), np.float32))
        return 1, SHARD_ROWS + 5, (2,), np.float32

    cache = FeatureCache(None, tmp_path / "run" / "shards")
    array = cache.load_or_make("clean-train", lambda: {"k": 1}, make)
    (array.folder / "meta.json").unlink()  # as if killed before the meta file was written
    again = cache.load_or_make("clean-train", lambda: {"k": 1}, make)
    assert len(made) == 2 and again.shape == (1, SHARD_ROWS + 5, 2) and (again.read_group() == 2).all()
    cache.finish()
    assert not (tmp_path / "run" / "shards").exists()
