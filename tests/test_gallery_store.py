"""The Annoy gallery on disk: known neighbour order, model checks, atomic versions."""

import json

import numpy as np
import pytest

from edge.gallery.store import (
    CURRENT,
    GalleryError,
    GalleryItems,
    current_version,
    load_gallery,
    save_gallery,
)

SHA = "cd" * 32


def _items(vectors, labels):
    vectors = np.asarray(vectors, np.float32)
    return GalleryItems(vectors, list(labels), [f"{l}/{i}.jpg" for i, l in enumerate(labels)], [None] * len(labels))


def test_three_vectors_in_known_order(tmp_path):
    save_gallery(tmp_path, _items([[1, 0, 0], [0, 1, 0], [0.8, 0.6, 0]], ["a", "b", "c"]), SHA, trees=4)
    gallery = load_gallery(tmp_path, 3, SHA)
    for exact in (False, True):
        matches = gallery.search(np.array([1.0, 0.1, 0.0]), k=3, exact=exact)
        assert [m.label for m in matches] == ["a", "c", "b"]
        assert matches[0].similarity == pytest.approx(1 / np.sqrt(1.01), abs=1e-5)
        assert matches[0].distance == pytest.approx(1 - matches[0].similarity, abs=1e-6)


def test_annoy_agrees_with_exact_on_clustered_data(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 32))
    vectors = np.repeat(centres, 50, axis=0) + 0.3 * rng.normal(size=(500, 32))
    save_gallery(tmp_path, _items(vectors, [str(i // 50) for i in range(500)]), SHA, trees=16)
    gallery = load_gallery(tmp_path)
    queries = centres + 0.3 * rng.normal(size=centres.shape)
    overlap = [len({m.path for m in gallery.search(q, 10, search_k=2000, exact=False)} & {m.path for m in gallery.search(q, 10, exact=True)})
               for q in queries]
    assert np.mean(overlap) / 10 >= 0.95


def test_model_mismatch_is_refused(tmp_path):
    save_gallery(tmp_path, _items([[1, 0], [0, 1]], ["a", "b"]), SHA)
    with pytest.raises(GalleryError, match="belongs to another model"):
        load_gallery(tmp_path, embedding_size=3)
    with pytest.raises(GalleryError, match="model sha256"):
        load_gallery(tmp_path, 2, "ef" * 32)


def test_missing_gallery_says_how_to_build(tmp_path):
    with pytest.raises(GalleryError, match="python -m edge.gallery build"):
        load_gallery(tmp_path / "nothing")


def _restamp(version, name):
    """Rewrites a file's checksum in gallery.json, as if the file had been written that way."""
    from edge.gallery.store import _sha256

    info = json.loads((version / "gallery.json").read_text())
    info["files"][name] = _sha256(version / name)
    (version / "gallery.json").write_text(json.dumps(info))


def test_corrupt_files_are_refused(tmp_path):
    version = save_gallery(tmp_path, _items([[1, 0], [0, 1]], ["a", "b"]), SHA)
    (version / "index.ann").write_bytes(b"garbage!")
    with pytest.raises(GalleryError, match="does not match its checksum"):
        load_gallery(tmp_path)
    _restamp(version, "index.ann")  # checksums agree, the content is still not an index
    with pytest.raises(GalleryError, match="not an Annoy index|holds"):
        load_gallery(tmp_path)
    version = save_gallery(tmp_path, _items([[1, 0], [0, 1]], ["a", "b"]), SHA)
    (version / "items.json").write_text(json.dumps({"labels": ["a"], "paths": ["x"], "thumbnails": [None]}))
    _restamp(version, "items.json")
    with pytest.raises(GalleryError, match="must be a list of 2"):
        load_gallery(tmp_path)


def test_new_version_replaces_old_and_stale_versions_go(tmp_path):
    first = save_gallery(tmp_path, _items([[1, 0]], ["a"]), SHA)
    second = save_gallery(tmp_path, _items([[1, 0], [0, 1]], ["a", "b"]), SHA)
    assert current_version(tmp_path) == second and not first.exists()
    assert len(load_gallery(tmp_path)) == 2


def test_half_written_version_is_ignored(tmp_path):
    """A version folder without the CURRENT switch (a killed write) never becomes live."""
    save_gallery(tmp_path, _items([[1, 0]], ["a"]), SHA)
    half = tmp_path / "v-99999999T999999-1-000000"
    half.mkdir()
    (half / "embeddings.npy").write_bytes(b"partial")
    assert len(load_gallery(tmp_path)) == 1
    (tmp_path / CURRENT).write_text("../elsewhere\n")
    with pytest.raises(GalleryError, match="not a version folder"):
        load_gallery(tmp_path)


def test_items_operations():
    items = _items([[1, 0], [0, 1], [1, 1]], ["a", "b", "a"])
    assert items.without_label("a").labels == ["b"]
    merged = items.concat(_items([[0, 2]], ["c"]))
    assert merged.labels == ["a", "b", "a", "c"] and merged.embeddings.shape == (4, 2)
    with pytest.raises(GalleryError, match="disagree"):
        GalleryItems(np.zeros((2, 2), np.float32), ["a"], ["p"], [None])


def test_auto_search_is_exact_for_small_galleries(tmp_path, monkeypatch):
    import edge.gallery.index as store

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(300, 8))
    save_gallery(tmp_path, _items(vectors, [str(i) for i in range(300)]), SHA, trees=2, search_k=2)
    gallery = load_gallery(tmp_path)
    query = rng.normal(size=8)
    exact = [m.path for m in gallery.search(query, 10, exact=True)]
    assert [m.path for m in gallery.search(query, 10)] == exact  # 300 <= the exact limit
    monkeypatch.setattr(store, "EXACT_SEARCH_MAX_ITEMS", 100)
    # above the limit the tiny Annoy budget (2 trees, search_k 2) is used and misses neighbours
    assert [m.path for m in gallery.search(query, 10)] != exact
