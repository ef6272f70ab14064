"""Metrics on hand-made cases with exact expected values."""

import numpy as np
import pytest

from edge import metrics


def test_precision_recall_at_k_exact():
    retrieved = np.array([[0, 1, 0, 0], [1, 1, 0, 1]])
    queries = np.array([0, 0])
    assert metrics.precision_at_k(retrieved, queries, 1) == pytest.approx(0.5)  # (1 + 0) / 2
    assert metrics.precision_at_k(retrieved, queries, 4) == pytest.approx((3 / 4 + 1 / 4) / 2)
    assert metrics.recall_at_k(retrieved, queries, 1) == pytest.approx(0.5)
    assert metrics.recall_at_k(retrieved, queries, 3) == pytest.approx(1.0)


def test_map_at_r_exact():
    # R = 3; relevant at ranks 1 and 3: AP@R = (1/1 + 2/3) / 3
    retrieved = np.array([[5, 2, 5, 5, 2]])
    value = metrics.map_at_r(retrieved, np.array([5]), np.array([3]))
    assert value == pytest.approx((1 + 2 / 3) / 3)


def test_map_at_r_perfect_and_worst():
    retrieved = np.array([[1, 1, 0, 0], [0, 0, 1, 1]])
    assert metrics.map_at_r(retrieved, np.array([1, 1]), np.array([2, 2])) == pytest.approx(0.5)


def test_ranked_gallery_labels_known_order():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    labels = np.array(["x", "y", "z"])
    ranked = metrics.ranked_gallery_labels(np.array([[1.0, 0.1]]), gallery, labels, k=3)
    assert ranked.tolist() == [["x", "z", "y"]]


def test_leave_one_out_excludes_self():
    points = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    ranked = metrics.ranked_gallery_labels(points, points, np.array([0, 1, 2]), k=1, exclude_self=True)
    assert ranked[:, 0].tolist() == [1, 0, 1]


def test_roc_auc_exact_with_ties():
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    same = np.array([1, 1, 0, 0])
    # pairs (pos, neg): (0.9>0.5)=1, (0.9>0.1)=1, (0.5=0.5)=0.5, (0.5>0.1)=1 -> 3.5 / 4
    assert metrics.roc_auc(scores, same) == pytest.approx(0.875)


def test_roc_auc_perfect_and_inverted():
    assert metrics.roc_auc(np.array([3, 2, 1, 0]), np.array([1, 1, 0, 0])) == 1.0
    assert metrics.roc_auc(np.array([0, 1, 2, 3]), np.array([1, 1, 0, 0])) == 0.0


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        metrics.roc_auc(np.array([1.0, 2.0]), np.array([1, 1]))


def test_equal_error_rate_exact():
    # same pairs at 0.1, 0.2, 0.6; different at 0.3, 0.5, 0.9.
    distances = np.array([0.1, 0.2, 0.6, 0.3, 0.5, 0.9])
    same = np.array([1, 1, 1, 0, 0, 0])
    rates = metrics.equal_error_rate(distances, same)
    # t = 0.2: FAR 0, FRR 1/3; t = 0.3: FAR 1/3, FRR 1/3 -> EER 1/3 at 0.3
    assert rates.threshold == pytest.approx(0.3)
    assert rates.eer == pytest.approx(1 / 3)


def test_equal_error_rate_separable_is_zero():
    rates = metrics.equal_error_rate(np.array([0.1, 0.2, 0.8, 0.9]), np.array([1, 1, 0, 0]))
    assert rates.eer == 0.0 and rates.threshold == pytest.approx(0.2)


def test_threshold_at_far():
    distances = np.array([0.1, 0.2, 0.6, 0.3, 0.5, 0.9])
    same = np.array([1, 1, 1, 0, 0, 0])
    assert metrics.threshold_at_far(distances, same, 0.0) == pytest.approx(0.2)
    assert metrics.threshold_at_far(distances, same, 1 / 3) == pytest.approx(0.3)


def test_retrieval_report_perfect_clusters():
    gallery = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    report = metrics.retrieval_report(gallery, labels, gallery, labels, ks=(1, 2))
    assert report["precision@1"] == 1.0 and report["precision@2"] == 1.0 and report["map@r"] == 1.0


def test_verification_report_keys():
    report = metrics.verification_report(np.array([0.1, 0.9]), np.array([1, 0]))
    assert report["roc_auc"] == 1.0 and report["eer"] == 0.0 and report["num_pairs"] == 2


def test_l2_normalize_rows_and_zero():
    out = metrics.l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_segment_normalize_exact():
    rows = np.array([[3.0, 4.0, 0.0, 2.0], [0.0, 1.0, 5.0, 0.0]])
    segments = [{"size": 2, "weight": 0.6}, {"size": 2, "weight": 0.8}]
    out = metrics.segment_normalize(rows, segments)
    assert np.allclose(out, [[0.36, 0.48, 0.0, 0.8], [0.0, 0.6, 0.8, 0.0]])
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
    # cosine of the whole = weighted sum of the segments' cosines (0.36 * 1 + 0.64 * 0 here)
    assert out[0] @ metrics.segment_normalize(np.array([[6.0, 8.0, 1.0, 0.0]]), segments)[0] == pytest.approx(0.36)
    assert np.allclose(metrics.segment_normalize(rows, []), metrics.l2_normalize(rows))
    with pytest.raises(ValueError, match="add up to 5"):
        metrics.segment_normalize(rows, [{"size": 2, "weight": 0.6}, {"size": 3, "weight": 0.8}])


def test_per_query_precision_and_paired_bootstrap():
    from train.evaluate import paired_bootstrap, per_query_precision

    rng = np.random.default_rng(0)
    gallery, queries = rng.normal(size=(40, 6)), rng.normal(size=(15, 6))
    gallery_labels, query_labels = rng.integers(0, 3, 40), rng.integers(0, 3, 15)
    per_query = per_query_precision(queries, query_labels, gallery, gallery_labels, 5)
    report = metrics.retrieval_report(queries, query_labels, gallery, gallery_labels)
    assert per_query.shape == (15,) and per_query.mean() == pytest.approx(report["precision@5"])

    same = paired_bootstrap(per_query, per_query, rounds=200)
    assert same["difference"] == 0.0 and same["ci95"] == [0.0, 0.0]
    shifted = paired_bootstrap(per_query + 0.2, per_query, rounds=200)
    assert shifted["difference"] == pytest.approx(0.2) and shifted["ci95"] == pytest.approx([0.2, 0.2])
    noisy = paired_bootstrap(np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.0, 0.0, 0.0, 0.0]), rounds=2000)
    assert noisy["ci95"][0] < 0.5 < noisy["ci95"][1] and noisy["difference"] == 0.5
