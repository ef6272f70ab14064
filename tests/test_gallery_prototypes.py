"""The label-prototype vote (edge.gallery.prototypes): fitted by leave-one-out only where it
helps, ranked by exactly the documented formula, calibrated on the same scores, stored and
reloaded, Annoy and exact search agreeing."""

import json

import numpy as np
import pytest

from edge.gallery import enrol
from edge.gallery.comparison import Comparison, _loo_precision, fit_comparison, loo_queries
from edge.gallery.openset import bundle_calibration, calibrate
from edge.gallery.prototypes import PROTOTYPE_WEIGHTS, label_ids_of
from edge.gallery.store import GalleryItems, load_gallery
from edge.layout import CURRENT, GALLERY_INFO
from edge.metrics import l2_normalize

DIM = 8


def _loose_labels_with_strays(seed=0, per_label=30, labels=3, strays=4):
    """Broad label clouds, each with a few items sitting in another label's cloud: a label's
    majority should outvote its strays (the vote helps)."""
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.normal(size=(labels, DIM))
    ids = np.repeat(np.arange(labels), per_label)
    where = ids.copy()
    for label in range(labels):  # the first `strays` items of each label lie in the next label's cloud
        where[label * per_label : label * per_label + strays] = (label + 1) % labels
    vectors = centres[where] + 1.2 * rng.normal(size=(len(ids), DIM))
    return l2_normalize(vectors.astype(np.float32)), [f"c{i}" for i in ids]


def _loose_label_beside_a_tight_one(seed=0, per_label=30):
    """A broad label "a" near a tight label "b" (like an enrolled new thing beside a class the
    head was trained on): the tight label's mean outscores a's own loose mean, so a vote would
    pull a's queries to b and plain nearest neighbours must be kept."""
    rng = np.random.default_rng(seed)
    a_centre, b_centre = np.zeros(DIM), np.zeros(DIM)
    a_centre[0] = 1.0
    b_centre[:2] = np.cos(0.8), np.sin(0.8)
    a = a_centre + 0.8 * rng.normal(size=(per_label, DIM)) / np.sqrt(DIM)
    b = b_centre + 0.05 * rng.normal(size=(per_label, DIM))
    return l2_normalize(np.concatenate([a, b]).astype(np.float32)), ["a"] * per_label + ["b"] * per_label


def test_vote_is_fitted_where_labels_outvote_their_strays():
    vectors, labels = _loose_labels_with_strays()
    comparison = fit_comparison(vectors, labels, ())
    tried = dict(comparison.prototype_scores)
    assert set(tried) == set(PROTOTYPE_WEIGHTS)
    assert comparison.prototype_weight > 0 and tried[comparison.prototype_weight] >= tried[0.0] + 0.005
    assert comparison.score == pytest.approx(tried[comparison.prototype_weight])


def test_vote_is_refused_where_a_tight_label_would_outvote_a_loose_one():
    vectors, labels = _loose_label_beside_a_tight_one()
    assert fit_comparison(vectors, labels, ()).prototype_weight == 0.0
    ids = label_ids_of(labels)[1]
    tried = _loo_precision({False: [vectors]}, [(False, None)], ids, loo_queries(labels), (1.0,))[(False, None)]
    assert tried[0.0] > max(tried[w] for w in PROTOTYPE_WEIGHTS if w > 0)


def test_too_few_images_fit_no_vote():
    vectors, labels = _loose_labels_with_strays(per_label=1, strays=0)
    comparison = fit_comparison(vectors, labels, ())
    assert comparison.prototype_weight == 0.0 and comparison.prototype_scores == () and comparison.source == "bundle"


def _committed(tmp_path, vectors, labels, name="g"):
    root = tmp_path / name
    items = GalleryItems(vectors, list(labels), [f"img{i}.jpg" for i in range(len(labels))], [None] * len(labels))
    enrol.commit(root, items, enrol.GallerySettings("sha", (), 0.5, 0.1), None)
    return root, load_gallery(root)


def test_search_ranks_by_the_documented_blend_and_reports_plain_cosines(tmp_path):
    vectors, labels = _loose_labels_with_strays()
    root, gallery = _committed(tmp_path, vectors, labels)
    weight = gallery.comparison.prototype_weight
    assert weight > 0
    stored = json.loads((root / (root / CURRENT).read_text().strip() / GALLERY_INFO).read_text())
    assert stored["comparison"]["prototype_weight"] == weight
    assert stored["schema_version"] == 3  # a runtime that ranks without the vote must refuse it
    names, ids = label_ids_of(labels)
    compared = gallery.comparison.apply(vectors)  # (centred on the gallery when the fit chose it)
    means = np.stack([compared[ids == i].mean(0) for i in range(len(names))])
    raw_query = l2_normalize(np.random.default_rng(5).normal(size=DIM).astype(np.float32))
    query = gallery.comparison.apply(raw_query[None])[0]
    expected = (1 - weight) * (compared @ query) + weight * (means @ query)[ids]
    matches = gallery.search(raw_query, k=10, exact=True)
    assert [m.path for m in matches] == [f"img{i}.jpg" for i in np.argsort(-expected, kind="stable")[:10]]
    assert [m.score for m in matches] == pytest.approx(np.sort(expected)[::-1][:10], abs=1e-5)
    assert [m.similarity for m in matches] == pytest.approx(
        [float(compared[int(m.path[3:-4])] @ query) for m in matches], abs=1e-5)
    answer = gallery.identify(raw_query, 5)
    assert answer.score == pytest.approx(matches[0].score, abs=1e-6)


def test_annoy_candidates_rescored_agree_with_exact_search(tmp_path):
    pytest.importorskip("annoy")
    vectors, labels = _loose_labels_with_strays(per_label=60)
    _, gallery = _committed(tmp_path, vectors, labels)
    assert gallery.comparison.prototype_weight > 0 and gallery.index is not None
    rng = np.random.default_rng(9)
    for query in l2_normalize(rng.normal(size=(20, DIM)).astype(np.float32)):
        exact = gallery.search(query, 5, exact=True)
        annoy = gallery.search(query, 5, exact=False, search_k=100_000)
        # Annoy's float32 distances may swap near-ties; the scores at each rank agree
        assert [m.score for m in annoy] == pytest.approx([m.score for m in exact], abs=1e-5)
        assert len({m.path for m in annoy} & {m.path for m in exact}) >= 4


def test_calibration_uses_the_blended_scores_with_the_item_left_out():
    vectors, labels = _loose_labels_with_strays()
    weight = 0.5
    queries = loo_queries(labels)
    fallback = bundle_calibration(0.5)
    blended = calibrate(vectors, labels, 0.1, fallback, queries, weight)
    plain = calibrate(vectors, labels, 0.1, fallback, queries, 0.0)
    names, ids = label_ids_of(labels)
    impostors = []
    for q in queries:  # by hand: the best other-label score; other labels' means do not contain q
        means = np.stack([vectors[ids == i].mean(0) for i in range(len(names))])
        score = (1 - weight) * (vectors @ vectors[q]) + weight * (means @ vectors[q])[ids]
        impostors.append(score[ids != ids[q]].max())
    impostors = np.array(impostors)
    # the same scores up to float rounding: at most one borderline impostor may land on the other side
    assert abs((impostors >= blended.threshold).mean() - blended.estimated_far) <= 1 / len(impostors) + 1e-9
    assert blended.estimated_far <= 0.1
    assert blended.impostors == len(queries)
    assert blended.threshold != pytest.approx(plain.threshold, abs=1e-4)
    assert blended.pair_threshold == pytest.approx(plain.pair_threshold)  # pairs stay plain cosines


@pytest.mark.parametrize("value", [1.0, -0.1, "0.5", True, None])
def test_a_malformed_prototype_weight_is_refused_by_name(value):
    values = Comparison.default((), DIM).to_json()
    values["prototype_weight"] = value
    with pytest.raises(ValueError, match="prototype_weight"):
        Comparison.from_json(values, None)


def test_a_version_written_before_the_vote_loads_as_plain_search():
    values = Comparison.default((), DIM).to_json()
    del values["prototype_weight"], values["loo_precision_by_prototype_weight"]
    assert Comparison.from_json(values, None).prototype_weight == 0.0


def test_a_gallery_too_small_to_calibrate_keeps_no_vote(tmp_path):
    """Fewer impostors than calibrate needs: the threshold is the manifest's plain-cosine one, so
    ranking must stay plain cosine too (a voted score would be judged on the wrong scale)."""
    vectors, labels = _loose_labels_with_strays(per_label=5, strays=1)
    assert fit_comparison(vectors, labels, ()).prototype_weight > 0  # the fit alone would vote
    root, gallery = _committed(tmp_path, vectors, labels)
    assert gallery.calibration.source == "bundle" and gallery.comparison.prototype_weight == 0.0
    stored = json.loads((root / (root / CURRENT).read_text().strip() / GALLERY_INFO).read_text())
    assert stored["schema_version"] == 2


def test_nothing_in_view_compares_with_the_nearest_item_whatever_k(tmp_path):
    vectors, labels = _loose_labels_with_strays()
    root = tmp_path / "g"
    items = GalleryItems(vectors, list(labels), [f"img{i}.jpg" for i in range(len(labels))], [None] * len(labels))
    query = vectors[0]  # a stray of c0 in c1's cloud: its own item is the nearest, at cosine 1
    background = np.stack([l2_normalize((query + 0.05 * np.eye(DIM)[1]).astype(np.float32)[None])[0]])
    enrol.commit(root, items, enrol.GallerySettings("sha", (), 0.5, 0.1), background)
    gallery = load_gallery(root)
    assert gallery.comparison.prototype_weight > 0
    reasons = {k: gallery.identify(query, k).reason for k in (1, 3, 5, 10)}
    assert len(set(reasons.values())) == 1 and reasons[1] != "nothing in view"  # nearer to itself than to the wall
