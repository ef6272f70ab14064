"""Within-label whitening fitted to the enrolled gallery (issue 10): chosen by cross-validation,
calibrated on held-out folds, stored and reloaded with the gallery version."""

import json

import numpy as np
import pytest

from conftest import make_class_folder
from edge.gallery.__main__ import main as gallery_main
from edge.gallery.comparison import Comparison, fit_comparison, loo_queries
from edge.gallery.enrol import GallerySettings, calibrate_comparison
from edge.gallery.index import GalleryItems
from edge.gallery.openset import calibrate, bundle_calibration
from edge.gallery.prototypes import PROTOTYPE_WEIGHTS, blended
from edge.gallery.store import WHITENED_GALLERY_SCHEMA, WHITENING_FILE, GalleryError, load_gallery, save_gallery
from edge.gallery.whitening import (FOLDS, MIN_GAIN, MIN_ITEMS, STRENGTHS, cross_validated_precision, fit_whitening,
                                    stratified_folds)
from edge.layout import CURRENT, GALLERY_INFO
from edge.metrics import l2_normalize
from edge.search import main as search_main

DIM = 16


def _nuisance_data(labels, per_label, seed, nuisance=4.0, spread=0.35):
    """Labels that differ in a few directions while every image also varies a lot along three
    directions shared by all labels (light, pose): plain cosine is dominated by the nuisance."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(40, DIM)) * 0.8  # fixed: the same labels every draw
    ids = np.repeat(np.arange(labels), per_label)
    vectors = centres[ids] + spread * rng.normal(size=(len(ids), DIM))
    vectors[:, :3] += nuisance * rng.normal(size=(len(ids), 3))
    return l2_normalize(vectors.astype(np.float32)), ids


def _precision_at_5(gallery, gallery_ids, queries, query_ids):
    order = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")[:, :5]
    return float((gallery_ids[order] == query_ids[:, None]).mean())


def test_whitening_is_chosen_where_a_shared_spread_hides_the_labels_and_helps_new_queries():
    vectors, ids = _nuisance_data(labels=8, per_label=30, seed=1)
    comparison = fit_comparison(vectors, [f"c{i}" for i in ids], ())
    assert comparison.whitening is not None and comparison.source == "gallery"
    scores = dict(comparison.whitening_scores)
    assert set(scores) == {None, *STRENGTHS}
    assert scores[comparison.whitening.strength] >= scores[None] + MIN_GAIN

    # Fresh images of the same labels (never seen by the fit): whitened retrieval is better.
    queries, query_ids = _nuisance_data(labels=8, per_label=20, seed=2)
    plain = comparison.without_whitening()
    before = _precision_at_5(plain.apply(vectors), ids, plain.apply(queries), query_ids)
    after = _precision_at_5(comparison.apply(vectors), ids, comparison.apply(queries), query_ids)
    assert after >= before + 0.1, (before, after)


def test_no_whitening_where_plain_cosine_already_separates_the_labels():
    vectors, ids = _nuisance_data(labels=6, per_label=20, seed=3, nuisance=0.0, spread=0.05)
    comparison = fit_comparison(vectors, [f"c{i}" for i in ids], ())
    assert comparison.whitening is None
    assert dict(comparison.whitening_scores)[None] == pytest.approx(1.0)  # tried, and nothing to gain


def test_galleries_below_the_minimum_are_not_cross_validated():
    vectors, ids = _nuisance_data(labels=4, per_label=(MIN_ITEMS - 1) // 4, seed=4)
    comparison = fit_comparison(vectors, [f"c{i}" for i in ids], ())
    assert comparison.whitening is None and comparison.whitening_scores == ()


def test_cross_validated_precision_equals_a_fold_by_fold_computation():
    vectors, ids = _nuisance_data(labels=5, per_label=9, seed=5)
    ids[:3] = 7  # a label with three images: some folds hold none of it, so those queries are skipped
    _, ids = np.unique(ids, return_inverse=True)
    got, queried = cross_validated_precision(vectors, ids, (None, 1.0), max_queries=10_000)
    fold = stratified_folds(ids)
    for strength in (None, 1.0):
        for weight in PROTOTYPE_WEIGHTS:
            precisions = []
            for f in range(FOLDS):
                train = np.flatnonzero(fold != f)
                transform = (lambda v: v) if strength is None else fit_whitening(vectors[train], ids[train], strength).apply
                gallery = transform(vectors[train])
                means = {label: gallery[ids[train] == label].mean(axis=0) for label in set(ids[train])}
                for q in np.flatnonzero(fold == f):
                    depth = min(5, int((ids[train] == ids[q]).sum()))
                    if depth == 0:
                        continue
                    query = transform(vectors[q : q + 1])[0]
                    scores = [(1 - weight) * query @ g + weight * query @ means[ids[train][j]]
                              for j, g in enumerate(gallery)]
                    top = np.argsort(-np.array(scores), kind="stable")[:depth]
                    precisions.append(np.mean(ids[train][top] == ids[q]))
            assert got[strength][weight] == pytest.approx(np.mean(precisions), abs=1e-6), (strength, weight)
            assert queried == len(precisions)


def test_folds_give_every_training_set_a_spread_even_for_labels_of_two_images():
    """Dealt label after label, not each label from fold 0: with two images per label, a fold
    whose training part had one image per label would have no within-label spread to whiten."""
    ids = np.repeat(np.arange(20), 2)
    fold = stratified_folds(ids)
    assert sorted(np.bincount(fold)) == [8, 8, 8, 8, 8]
    for f in range(FOLDS):
        train = ids[fold != f]
        assert (np.bincount(train) == 2).sum() >= 10  # labels with both images, so a spread to fit


@pytest.mark.parametrize("per_label", [2, 3, 4])
def test_labels_of_few_images_are_not_whitened(per_label):
    """Round clusters (nothing to whiten) with many small labels: cross-validation over 2-4
    images per label is luck, and whitening chosen there hurt new queries (review, 3-4 per label)."""
    for seed in range(6):
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(14, 64))
        ids = np.repeat(np.arange(14), per_label)
        vectors = l2_normalize((centres[ids] + 1.1 * rng.normal(size=(len(ids), 64))).astype(np.float32))
        comparison = fit_comparison(vectors, [f"c{i}" for i in ids], ())
        assert comparison.whitening is None and comparison.whitening_scores == ()


def test_whitening_strength_shrinks_toward_plain_cosine():
    vectors, ids = _nuisance_data(labels=5, per_label=20, seed=6)
    mild, strong = fit_whitening(vectors, ids, 1e6), fit_whitening(vectors, ids, 0.01)
    centred = l2_normalize(vectors - vectors.mean(axis=0))
    assert np.allclose(mild.apply(vectors), centred, atol=1e-3)
    assert not np.allclose(strong.apply(vectors), centred, atol=0.1)


def _items(vectors, ids):
    labels = [f"c{i}" for i in ids]
    return GalleryItems(vectors, labels, [f"{i}.jpg" for i in range(len(ids))], [None] * len(ids))


def _accepted(comparison, calibration, gallery_vectors, gallery_ids, queries):
    compared, asked = comparison.apply(gallery_vectors), comparison.apply(queries)
    count = gallery_ids.max() + 1
    prototypes = np.stack([compared[gallery_ids == i].mean(axis=0) for i in range(count)])
    scores = blended(asked @ compared.T, asked @ prototypes.T, gallery_ids, comparison.prototype_weight)
    return (scores.max(axis=1) >= calibration.threshold).mean()


def test_a_whitened_gallery_is_calibrated_on_held_out_folds_not_on_the_items_it_was_fitted_to():
    """The metric is fitted to the gallery, so leave-one-out scores of its own items are too good:
    a threshold set on them refuses new images of enrolled labels. Held-out folds do not."""
    vectors, ids = _nuisance_data(labels=6, per_label=25, seed=7)
    items = _items(vectors, ids)
    comparison = fit_comparison(vectors, items.labels, ())
    assert comparison.whitening is not None
    settings = GallerySettings("sha", (), 0.5, 0.1)
    held_out = calibrate_comparison(comparison, items, settings)
    in_sample = calibrate(comparison.apply(vectors), items.labels, 0.1, bundle_calibration(0.5),
                          loo_queries(items.labels), comparison.prototype_weight)
    assert held_out.source == "gallery" and held_out.threshold < in_sample.threshold

    new_images, _ = _nuisance_data(labels=6, per_label=40, seed=8)
    accepted = _accepted(comparison, held_out, vectors, ids, new_images)
    # What the held-out estimate promised is what new images of the enrolled labels get.
    assert abs(accepted - (1.0 - held_out.estimated_frr)) <= 0.1, (accepted, held_out.estimated_frr)
    assert accepted > _accepted(comparison, in_sample, vectors, ids, new_images)
    others = l2_normalize(np.random.default_rng(9).normal(size=(300, DIM)).astype(np.float32))
    assert _accepted(comparison, held_out, vectors, ids, others) <= 0.2  # things never enrolled


def test_whitening_is_stored_with_the_version_and_refused_when_damaged(tmp_path):
    vectors, ids = _nuisance_data(labels=6, per_label=15, seed=10)
    items = _items(vectors, ids)
    comparison = fit_comparison(vectors, items.labels, ())
    assert comparison.whitening is not None
    calibration = calibrate_comparison(comparison, items, GallerySettings("sha", (), 0.5, 0.1))
    version = save_gallery(tmp_path / "g", items, "sha", comparison=comparison, calibration=calibration)
    info = json.loads((version / GALLERY_INFO).read_text())
    assert info["schema_version"] == WHITENED_GALLERY_SCHEMA
    assert info["comparison"]["whitening"] == comparison.whitening.strength
    loaded = load_gallery(tmp_path / "g")
    assert np.allclose(loaded.vectors, comparison.apply(vectors), atol=1e-6)
    stored, fitted = dict(loaded.comparison.whitening_scores), dict(comparison.whitening_scores)
    assert stored.keys() == fitted.keys() and all(stored[s] == pytest.approx(fitted[s], abs=1e-4) for s in stored)

    # A matrix of the wrong shape, with its checksum updated (a buggy writer, not a torn file).
    from edge.manifest import file_sha256

    np.save(version / WHITENING_FILE, np.eye(DIM + 1, dtype=np.float32))
    info["files"][WHITENING_FILE] = file_sha256(version / WHITENING_FILE)
    (version / GALLERY_INFO).write_text(json.dumps(info))
    with pytest.raises(GalleryError, match=r"whitening\.npy holds float32 \(17, 17\), expected .* \(16, 16\)"):
        load_gallery(tmp_path / "g")
    # Garbage bytes (checksum updated): refused naming the file and what to do.
    (version / WHITENING_FILE).write_bytes(b"not an array")
    info["files"][WHITENING_FILE] = file_sha256(version / WHITENING_FILE)
    (version / GALLERY_INFO).write_text(json.dumps(info))
    with pytest.raises(GalleryError, match=r"whitening\.npy is unreadable .*rebuild the gallery"):
        load_gallery(tmp_path / "g")
    # Schema 4 whose comparison names no whitening: refused, not compared unwhitened against a
    # threshold fitted to whitened scores.
    edited = json.loads(json.dumps(info))
    edited["comparison"]["whitening"] = None
    (version / GALLERY_INFO).write_text(json.dumps(edited))
    with pytest.raises(GalleryError, match="names no whitening"):
        load_gallery(tmp_path / "g")
    # gallery.json says whitening, the files are gone: refused, not silently compared without it.
    (version / WHITENING_FILE).unlink()
    del info["files"][WHITENING_FILE]
    (version / GALLERY_INFO).write_text(json.dumps(info))
    with pytest.raises(GalleryError):
        load_gallery(tmp_path / "g")
    assert (tmp_path / "g" / CURRENT).read_text().strip() == version.name


def test_comparison_with_whitening_round_trips_through_json():
    vectors, ids = _nuisance_data(labels=6, per_label=15, seed=11)
    comparison = fit_comparison(vectors, [f"c{i}" for i in ids], ())
    w = comparison.whitening
    again = Comparison.from_json(comparison.to_json(), comparison.centres, whitening=(w.mean, w.matrix))
    assert np.allclose(again.apply(vectors), comparison.apply(vectors), atol=1e-6)
    with pytest.raises(ValueError, match="whitening files disagree"):
        Comparison.from_json(comparison.to_json(), comparison.centres)


def test_cli_gallery_of_enough_images_is_cross_validated_on_the_real_int8_bundle(bundle_copy, tmp_path, capsys):
    """Real int8 bundle through the CLI: a gallery above MIN_ITEMS reports the whitening it tried,
    and search answers with whatever was chosen (stored, reloaded, applied to queries)."""
    data = make_class_folder(tmp_path / "mine", per_class=(MIN_ITEMS + 2) // 3 + 1, size=48)
    assert gallery_main(["build", "--bundle", str(bundle_copy), str(data), "--quiet"]) == 0
    capsys.readouterr()
    assert gallery_main(["list", "--bundle", str(bundle_copy), "--json"]) == 0
    comparison = json.loads(capsys.readouterr().out)["comparison"]
    tried = comparison["cv_precision_by_whitening"]
    assert set(tried) == {"None", *map(str, STRENGTHS)} and all(0.0 <= p <= 1.0 for p in tried.values())
    gallery = load_gallery(bundle_copy / "gallery")
    assert (gallery.comparison.whitening is None) == (comparison["whitening"] is None)
    known = data / "circles" / "circles_003.jpg"
    assert search_main(["--bundle", str(bundle_copy), "--image", str(known), "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["matches"][0]["path"].endswith("circles_003.jpg") and line["matches"][0]["distance"] < 1e-4
