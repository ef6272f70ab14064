"""Sharded arrays on disk (train.shards): rows come back in order and by random index, a shard is
written whole or not at all, and an unfinished array is never opened."""

from __future__ import annotations

import numpy as np
import pytest

from train.shards import SHARD_ROWS, open_sharded, shard_name, write_array, write_meta, write_shard


def _array(rows: int, groups: int = 3) -> np.ndarray:
    return np.arange(groups * rows * 2 * 3, dtype=np.float32).reshape(groups, rows, 2, 3).astype(np.float16)


def test_chunks_are_the_rows_in_order_one_shard_at_a_time(tmp_path):
    array = _array(2 * SHARD_ROWS + 7)
    sharded = write_array(tmp_path / "a", array)
    assert sharded.shape == array.shape and sharded.num_shards() == 3
    for group in range(3):
        chunks = list(sharded.chunks(group))
        assert [len(c) for c in chunks] == [SHARD_ROWS, SHARD_ROWS, 7]
        assert np.array_equal(np.concatenate(chunks), array[group]) and chunks[0].dtype == np.float16


def test_take_is_fancy_indexing_across_shards_and_groups(tmp_path):
    array = _array(SHARD_ROWS + 40)
    sharded = write_array(tmp_path / "a", array)
    rng = np.random.default_rng(0)
    groups, rows = rng.integers(0, 3, 300), rng.integers(0, SHARD_ROWS + 40, 300)
    assert np.array_equal(sharded.take(groups, rows), array[groups, rows])  # order of the request kept
    assert sharded.take(groups[:0], rows[:0]).shape == (0, 2, 3)
    with pytest.raises(IndexError):
        sharded.take(np.array([0]), np.array([SHARD_ROWS + 40]))
    with pytest.raises(IndexError):
        sharded.take(np.array([3]), np.array([0]))
    sharded.close()


def test_a_failed_shard_write_leaves_nothing_and_the_previous_shard_intact(tmp_path):
    folder = tmp_path / "a"
    write_shard(folder, 0, 0, np.ones((4, 2), np.float32))

    class Unsaveable(np.ndarray):
        def __reduce__(self):  # np.save of an object array pickles; make that fail midway
            raise RuntimeError("disk full")

    with pytest.raises(Exception):
        write_shard(folder, 0, 0, np.array([object(), Unsaveable((1,))], dtype=object))
    assert sorted(p.name for p in folder.iterdir()) == [shard_name(0, 0)]  # no temporary file left
    assert np.array_equal(np.load(folder / shard_name(0, 0)), np.ones((4, 2), np.float32))


def test_an_array_without_meta_is_not_opened_and_a_wrong_shard_is_refused(tmp_path):
    folder = tmp_path / "a"
    write_shard(folder, 0, 0, np.zeros((3, 2), np.float32))
    with pytest.raises(FileNotFoundError, match="no complete sharded array"):
        open_sharded(folder)
    write_meta(folder, 1, 3, (2,), np.float16)  # says float16; the shard is float32
    with pytest.raises(ValueError, match="expected"):
        open_sharded(folder).take(np.array([0]), np.array([1]))
