"""Loss conventions on hand-made pairs and triplets (same = 1 means similar)."""

import numpy as np
import pytest

from train.losses import contrastive_loss, triplet_semihard_loss


def _value(loss, y_true, y_pred) -> float:
    return float(np.asarray(loss(np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32))))


def test_contrastive_label_one_means_similar():
    loss = contrastive_loss(margin=1.0)
    # a similar pair (1) at distance 0 costs nothing; a different pair (0) at distance 0 costs margin^2
    assert _value(loss, [1], [0.0]) == pytest.approx(0.0)
    assert _value(loss, [0], [0.0]) == pytest.approx(1.0)
    # a similar pair far apart is pulled in: d^2
    assert _value(loss, [1], [0.5]) == pytest.approx(0.25)
    # a different pair beyond the margin costs nothing; inside the margin: (m - d)^2
    assert _value(loss, [0], [1.5]) == pytest.approx(0.0)
    assert _value(loss, [0], [0.4]) == pytest.approx(0.36)
    # the batch mean
    assert _value(loss, [1, 0], [0.5, 0.4]) == pytest.approx((0.25 + 0.36) / 2)


def test_triplet_semihard_zero_when_classes_are_apart():
    embeddings = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
    assert _value(triplet_semihard_loss(0.5), [0, 0, 1, 1], embeddings) == pytest.approx(0.0)


def test_triplet_semihard_exact_value():
    # 1-D embeddings: anchors 0 and 0.2 (class 0), negatives at 0.5 and 3 (class 1).
    points = np.array([[0.0], [0.2], [0.5], [3.0]], np.float32)
    labels = [0, 0, 1, 1]
    margin = 0.5
    # squared distances: d(0,0.2)=0.04, d(0,0.5)=0.25, d(0.2,0.5)=0.09, d(0,3)=9, d(0.2,3)=7.84, d(0.5,3)=6.25
    # (a=0, p=0.2): semi-hard negatives farther than 0.04: 0.25 (closest) -> max(0.04-0.25+0.5, 0) = 0.29
    # (a=0.2, p=0): negatives > 0.04: 0.09 -> 0.04-0.09+0.5 = 0.45
    # (a=0.5, p=3): d_ap=6.25; negatives 0.25, 0.09 none farther -> farthest 0.25 -> 6.25-0.25+0.5 = 6.5
    # (a=3, p=0.5): d_ap=6.25; negatives 9, 7.84 farther -> closest 7.84 -> 6.25-7.84+0.5 < 0 -> 0
    expected = (0.29 + 0.45 + 6.5 + 0.0) / 4
    assert _value(triplet_semihard_loss(margin), labels, points) == pytest.approx(expected, rel=1e-5)


def test_similarity_distillation_is_zero_for_matching_structure_and_exact_otherwise():
    from train.losses import similarity_distillation_loss

    loss = similarity_distillation_loss()
    teacher = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]], np.float32)
    student = teacher / np.linalg.norm(teacher, axis=1, keepdims=True)
    assert _value(loss, teacher, student) == pytest.approx(0.0, abs=1e-7)
    # student puts all three on one direction: cos = 1 everywhere; teacher cosines 0, 1/sqrt2, 1/sqrt2
    collapsed = np.array([[1.0, 0.0]] * 3, np.float32)
    expected = 2 * ((1 - 0) ** 2 + 2 * (1 - 1 / np.sqrt(2)) ** 2) / 6
    assert _value(loss, teacher, collapsed) == pytest.approx(expected, rel=1e-5)
