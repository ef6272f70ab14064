"""Deterministic stratified split; pair/triplet sampler balance."""

import numpy as np
import pytest

from train.data import ImageRecord, split_fraction, split_records
from train.sampling import balanced_pairs, class_balanced_batches


def _records(counts):
    return [ImageRecord(f"{c}/img_{i:04d}.jpg", c) for c, n in counts.items() for i in range(n)]


def test_split_is_deterministic_and_order_independent():
    records = _records({"a": 50, "b": 31, "c": 7})
    train1, test1 = split_records(records, 0.2, "salt")
    shuffled = [records[i] for i in np.random.default_rng(3).permutation(len(records))]
    train2, test2 = split_records(shuffled, 0.2, "salt")
    assert train1 == train2 and test1 == test2
    assert not set(train1) & set(test1) and len(train1) + len(test1) == len(records)


def test_split_is_stratified():
    counts = {"a": 50, "b": 31, "c": 7}
    _, test = split_records(_records(counts), 0.2, "salt")
    per_class = {c: sum(r.class_name == c for r in test) for c in counts}
    assert per_class == {"a": 10, "b": 6, "c": 1}


def test_split_changes_with_salt_and_is_stable_per_file():
    records = _records({"a": 40, "b": 40})
    _, test_a = split_records(records, 0.25, "one")
    _, test_b = split_records(records, 0.25, "two")
    assert test_a != test_b
    assert split_fraction("a/x.jpg", "s") == split_fraction("a/x.jpg", "s")
    assert 0.0 <= split_fraction("a/x.jpg", "s") < 1.0


def test_split_keeps_a_training_image_for_tiny_classes():
    train, test = split_records(_records({"a": 2, "b": 1, "c": 30}), 0.5, "salt")
    assert sum(r.class_name == "a" for r in train) == 1 and sum(r.class_name == "a" for r in test) == 1
    assert sum(r.class_name == "b" for r in train) == 1  # a lone image can only be a gallery item


def test_balanced_pairs_are_half_positive_and_labelled_right():
    labels = np.array([0] * 50 + [1] * 5 + [2] * 20)
    pairs = balanced_pairs(labels, 1000, np.random.default_rng(0))
    same = pairs[:, 2]
    assert same.sum() == 500
    assert np.array_equal(labels[pairs[:, 0]] == labels[pairs[:, 1]], same.astype(bool))
    assert np.all(pairs[:, 0] != pairs[:, 1])
    # positives are spread over classes, not drawn in proportion to class size
    positive_classes = labels[pairs[same == 1, 0]]
    assert np.bincount(positive_classes).min() > 120


def test_balanced_pairs_need_two_classes():
    with pytest.raises(ValueError, match=">= 2 classes"):
        balanced_pairs(np.zeros(10, dtype=int), 10, np.random.default_rng(0))


def test_class_balanced_batches_have_p_classes_of_k():
    labels = np.repeat(np.arange(6), [30, 3, 12, 40, 9, 15])
    # 6 classes, batch 16: P = min(6, 16 // 2) = 6 classes, K = 16 // 6 = 2 images each
    batches = class_balanced_batches(labels, 16, 50, np.random.default_rng(1))
    assert batches.shape == (50, 12)
    for batch in batches:
        assert np.bincount(labels[batch], minlength=6).tolist() == [2] * 6
    # 6 classes, batch 8: P = 4 classes of K = 2
    batches = class_balanced_batches(labels, 8, 50, np.random.default_rng(2))
    for batch in batches:
        counts = np.bincount(labels[batch], minlength=6)
        assert sorted(counts[counts > 0].tolist()) == [2, 2, 2, 2]
    # the small class (3 images) appears, drawn without replacement when it has enough
    assert (labels[batches.reshape(-1)] == 1).any()
