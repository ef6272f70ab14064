"""The comparison and the "unknown" threshold fitted to the enrolled gallery (issue 10): exact
numpy cases first, then a real int8 bundle enrolled through the CLI."""

import json

import numpy as np
import pytest

from conftest import make_class_folder
from edge.gallery.__main__ import main as gallery_main
from edge.gallery.comparison import (GENERIC_SHARES, MAX_FIT_ITEMS, MIN_GAIN, Comparison, fit_comparison, fit_sample,
                                     loo_queries)
from edge.gallery.openset import GENUINE_REFUSED, background_frames, bundle_calibration, calibrate
from edge.gallery.prototypes import PROTOTYPE_WEIGHTS
from edge.gallery.store import load_gallery
from edge.metrics import l2_normalize
from edge.search import main as search_main

SEGMENTS = ({"name": "head", "size": 4, "weight": 0.6 ** 0.5}, {"name": "generic", "size": 4, "weight": 0.4 ** 0.5})


def _two_segment_data(seed=0, informative="generic", per_label=12, labels=4):
    """Embeddings where only one segment carries the label; the other is noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(labels, 4))
    ids = np.repeat(np.arange(labels), per_label)
    signal = centres[ids] + 0.2 * rng.normal(size=(len(ids), 4))
    noise = rng.normal(size=(len(ids), 4))
    head, generic = (noise, signal) if informative == "generic" else (signal, noise)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    vectors = np.concatenate([SEGMENTS[0]["weight"] * unit(head), SEGMENTS[1]["weight"] * unit(generic)], axis=1)
    return vectors.astype(np.float32), [f"c{i}" for i in ids]


@pytest.mark.parametrize("informative, share", [("generic", 1.0), ("head", 0.0)])
def test_fit_follows_the_segment_that_separates_the_enrolled_labels(informative, share):
    vectors, labels = _two_segment_data(informative=informative)
    comparison = fit_comparison(vectors, labels, SEGMENTS)
    assert comparison.source == "gallery"
    assert comparison.weights[-1] ** 2 == pytest.approx(share, abs=1e-6)
    assert comparison.score > comparison.default_score
    applied = comparison.apply(vectors)
    assert np.allclose(np.linalg.norm(applied, axis=1), 1.0, atol=1e-5)


def _brute_force_loo(vectors, labels, k=5):
    """Leave-one-out precision of ranking by (1-w) cos(q, item) + w cos(q, mean of item's label
    without q), written out query by query: what the fit's per-segment shortcut must equal."""
    labels = np.asarray(labels)
    by_weight = {}
    for weight in PROTOTYPE_WEIGHTS:
        precisions = []
        for q in range(len(vectors)):
            others = np.arange(len(vectors)) != q
            means = {l: vectors[others & (labels == l)].mean(axis=0) for l in set(labels)}
            scores = np.array([(1 - weight) * vectors[q] @ vectors[j] + weight * vectors[q] @ means[labels[j]]
                               if j != q else -np.inf for j in range(len(vectors))])
            depth = min(k, int((labels == labels[q]).sum()) - 1)
            top = np.argsort(-scores, kind="stable")[:depth]
            precisions.append(np.mean(labels[top] == labels[q]))
        by_weight[weight] = float(np.mean(precisions))
    return by_weight


def test_fit_chooses_share_centring_and_vote_together_by_exact_leave_one_out():
    """Every (centring, share, vote) scored by brute force; the fit must pick by its rule."""
    vectors, labels = _two_segment_data(seed=3, informative="generic", per_label=10, labels=3)
    rng = np.random.default_rng(4)
    strays = rng.choice(len(labels), 5, replace=False)  # a few items carry another label's look
    vectors[strays] = vectors[np.roll(strays, 1)] + 0.05 * rng.normal(size=vectors[strays].shape)
    for (start, stop), segment in zip(((0, 4), (4, 8)), SEGMENTS):  # as the encoder makes them
        part = vectors[:, start:stop]
        vectors[:, start:stop] = segment["weight"] * part / np.linalg.norm(part, axis=1, keepdims=True)
    comparison = fit_comparison(vectors, labels, SEGMENTS)
    default = Comparison.default(SEGMENTS, vectors.shape[1])
    parts = [vectors[:, :4], vectors[:, 4:]]
    centres = np.concatenate([(p / np.linalg.norm(p, axis=1, keepdims=True)).mean(axis=0) for p in parts])
    table = {}
    for centred in (False, True):
        for share in GENERIC_SHARES:
            candidate = Comparison(default.base_weights, ((1 - share) ** 0.5, share ** 0.5), default.sizes,
                                   centres.astype(np.float32) if centred else None)
            for weight, precision in _brute_force_loo(candidate.apply(vectors), labels).items():
                table[(centred, share, weight)] = precision
    # The rule: the best centred candidate, unless the best uncentred one beats it by MIN_GAIN.
    best = {centred: max(v for k, v in table.items() if k[0] == centred) for centred in (True, False)}
    expected = best[False] if best[False] >= best[True] + MIN_GAIN else best[True]
    chosen = (comparison.centres is not None, round(comparison.weights[-1] ** 2, 6), comparison.prototype_weight)
    assert comparison.source == "gallery" and comparison.score == pytest.approx(expected, abs=1e-6)
    assert table[chosen] == pytest.approx(expected, abs=1e-6) and chosen[2] > 0  # this data wants a vote
    assert comparison.default_score == pytest.approx(table[(False, 0.4, 0.0)], abs=1e-6)
    assert dict(comparison.prototype_scores) == pytest.approx(
        {w: table[(chosen[0], chosen[1], w)] for w in PROTOTYPE_WEIGHTS}, abs=1e-6)


def test_too_little_to_tell_keeps_the_bundle_weights():
    vectors, labels = _two_segment_data(per_label=1)  # no label has a second image
    assert loo_queries(labels) is None
    comparison = fit_comparison(vectors, labels, SEGMENTS)
    assert comparison.source == "bundle" and comparison.is_identity
    assert comparison.weights == pytest.approx([s["weight"] for s in SEGMENTS])


def test_comparison_round_trips_through_json():
    vectors, labels = _two_segment_data(informative="generic")
    comparison = fit_comparison(vectors, labels, SEGMENTS)
    again = Comparison.from_json(comparison.to_json(), comparison.centres)
    assert np.allclose(again.apply(vectors), comparison.apply(vectors), atol=1e-6)


def test_calibration_meets_its_false_accept_target_on_its_own_impostors():
    vectors, labels = _two_segment_data(informative="generic", labels=6, per_label=20)
    comparison = fit_comparison(vectors, labels, SEGMENTS)
    queries = loo_queries(labels)
    fallback = bundle_calibration(0.4)
    for far in (0.01, 0.1, 0.3):
        calibration = calibrate(comparison.apply(vectors), labels, far, fallback, queries)
        assert calibration.source == "gallery" and calibration.estimated_far <= far
        assert calibration.impostors == len(queries) and 0.0 <= calibration.estimated_frr <= 1.0
        # ... and refuses at least GENUINE_REFUSED of its own genuine matches (the second bound).
        assert calibration.estimated_frr >= np.floor(GENUINE_REFUSED * calibration.genuine) / calibration.genuine

    # One label: no impostors to learn from, so the bundle's threshold is used and reported as such.
    single = calibrate(comparison.apply(vectors[:20]), labels[:20], 0.05, fallback, loo_queries(labels[:20]))
    assert single.source == "bundle" and single.threshold == pytest.approx(0.6) and single.far == 0.05


def test_well_separated_labels_still_refuse_what_is_not_like_them():
    """Two tight, distant labels: their impostors are far apart, so the false-accept bound alone
    would accept anything between them; the genuine bound refuses it."""
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:2] * 4.0
    ids = np.repeat([0, 1], 30)
    vectors = l2_normalize(centres[ids] + rng.normal(size=(60, 8)).astype(np.float32))
    labels = [f"c{i}" for i in ids]
    calibration = calibrate(vectors, labels, 0.1, bundle_calibration(0.4), loo_queries(labels))
    impostor_bound = np.sort((vectors[:30] @ vectors[30:].T).max(1))[-4]  # well below every genuine score
    assert calibration.threshold > impostor_bound
    between = l2_normalize(np.array([[2.0, 2.0] + [0.0] * 6], np.float32) + 0.3 * rng.normal(size=(1, 8)))
    assert float((between @ vectors.T).max()) < calibration.threshold


def test_fit_looks_at_a_bounded_seeded_sample_of_a_large_gallery():
    sample = fit_sample(MAX_FIT_ITEMS * 10)
    assert len(sample) == MAX_FIT_ITEMS and np.all(np.diff(sample) > 0)
    assert np.array_equal(sample, fit_sample(MAX_FIT_ITEMS * 10)) and np.array_equal(fit_sample(7), np.arange(7))


def test_background_frames_are_fixed():
    first, second = background_frames(), background_frames()
    assert len(first) >= 20 and all(np.array_equal(a, b) for a, b in zip(first, second))


def _lines(text):
    return [json.loads(line) for line in text.strip().splitlines()]


def test_cli_enrolment_calibrates_stores_and_answers_unknown(bundle_copy, tmp_path, capsys):
    """Real int8 bundle: build through the CLI, calibration stored and reloaded, null for blank."""
    data = make_class_folder(tmp_path / "mine", per_class=8, size=48)
    assert gallery_main(["build", "--bundle", str(bundle_copy), str(data), "--far", "0.05", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "built gallery from 24 images" in out and "target FAR 0.05" in out

    assert gallery_main(["list", "--bundle", str(bundle_copy), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    stored = listing["calibration"]
    assert stored["source"] == "gallery" and stored["far"] == 0.05 and stored["impostors"] == 24
    reloaded = load_gallery(bundle_copy / "gallery").calibration
    assert reloaded.threshold == pytest.approx(stored["threshold"], abs=1e-6)

    import cv2

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 117, np.uint8))
    known = data / "circles" / "circles_003.jpg"
    assert search_main(["--bundle", str(bundle_copy), "--image", str(blank), str(known), "--json"]) == 0
    blank_line, known_line = _lines(capsys.readouterr().out)
    assert set(blank_line) >= {"query", "label", "matches"} and blank_line["label"] is None
    assert blank_line["reason"] in ("nothing in view", "below threshold")
    assert known_line["label"] == "circles" and known_line["reason"] == "accepted"
    assert known_line["matches"][0]["distance"] < 1e-4

    assert search_main(["--bundle", str(bundle_copy), "--image", str(blank)]) == 0
    assert "unknown" in capsys.readouterr().out

    # Another rate: calibrate refits and the listing shows it.
    assert gallery_main(["calibrate", "--bundle", str(bundle_copy), "--far", "0.2"]) == 0
    assert "target FAR 0.2" in capsys.readouterr().out
    assert load_gallery(bundle_copy / "gallery").calibration.far == 0.2
