"""Nothing breaks the gallery (issue 11): concurrent writers, empty or undecodable enrolments,
duplicates, a symlinked thumbs folder, tampered or out-of-range files. Real bundle, real CLI."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT, make_class_folder
from edge.gallery.__main__ import main as gallery_main
from edge.gallery.lock import gallery_lock
from edge.gallery.store import GalleryError, current_version, load_gallery


def _add(bundle, folder):
    return subprocess.Popen([sys.executable, "-m", "edge.gallery", "add", "--bundle", str(bundle), str(folder),
                             "--quiet"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_three_concurrent_writers_lose_nothing(bundle_copy, tmp_path):
    root = bundle_copy / "gallery"
    expected = {}
    for round_number in range(2):
        writers = []
        for writer in range(3):
            label = f"w{writer}r{round_number}"
            folder = tmp_path / label
            make_class_folder(folder, per_class=2, size=40, classes=["circles"])
            (folder / "circles").rename(folder / label)  # a label of its own
            for path in (folder / label).iterdir():  # distinct bytes per writer: no duplicates
                path.write_bytes(path.read_bytes() + label.encode())
            writers.append((label, _add(bundle_copy, folder)))
        deadline = time.monotonic() + 240
        while any(p.poll() is None for _, p in writers) and time.monotonic() < deadline:
            assert len(load_gallery(root)) > 0  # the gallery always loads while they write
            time.sleep(0.05)
        for label, process in writers:
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
            expected[label] = 2
    counts = load_gallery(root).label_counts()
    assert {label: counts.get(label) for label in expected} == expected
    assert [p.name for p in root.glob("v-*")] == [current_version(root).name]


def test_no_wait_fails_while_another_writer_holds_the_lock(bundle_copy, tmp_path, capsys):
    new = make_class_folder(tmp_path / "new", per_class=1, size=40, classes=["circles"])
    with gallery_lock(bundle_copy / "gallery"):
        assert gallery_main(["add", "--bundle", str(bundle_copy), str(new), "--no-wait"]) == 2
    assert "another enrolment" in capsys.readouterr().err


def test_build_that_decodes_nothing_keeps_the_previous_gallery(bundle_copy, tmp_path, capsys):
    root = bundle_copy / "gallery"
    before, count = current_version(root), len(load_gallery(root))
    thumbs = sorted(p.name for p in (root / "thumbs").iterdir())
    broken = tmp_path / "heic" / "things"
    broken.mkdir(parents=True)
    for i in range(3):
        (broken / f"{i}.jpg").write_bytes(b"ftypheic" + bytes(40))  # HEIC bytes named .jpg
    (broken / "empty.jpg").write_bytes(b"")
    assert gallery_main(["build", "--bundle", str(bundle_copy), str(broken.parent), "--quiet"]) == 2
    assert "none of the 4 images could be enrolled" in capsys.readouterr().err
    assert current_version(root) == before and len(load_gallery(root)) == count
    assert sorted(p.name for p in (root / "thumbs").iterdir()) == thumbs
    # Removing the last label is refused the same way unless asked for.
    single = make_class_folder(tmp_path / "one", per_class=2, size=40, classes=["squares"])
    assert gallery_main(["build", "--bundle", str(bundle_copy), str(single), "--quiet"]) == 0
    assert gallery_main(["remove", "--bundle", str(bundle_copy), "squares"]) == 2
    assert "--allow-empty" in capsys.readouterr().err
    assert gallery_main(["remove", "--bundle", str(bundle_copy), "squares", "--allow-empty"]) == 0
    assert len(load_gallery(root)) == 0


def test_the_same_image_twice_is_enrolled_once(bundle_copy, tmp_path, capsys):
    new = make_class_folder(tmp_path / "new", per_class=2, size=40, classes=["circles"])
    copy = new / "circles" / "again.jpg"
    copy.write_bytes((new / "circles" / "circles_000.jpg").read_bytes())
    assert gallery_main(["add", "--bundle", str(bundle_copy), str(new), "--quiet"]) == 0
    assert "added 2 images; skipped 1 duplicates" in capsys.readouterr().out
    assert gallery_main(["add", "--bundle", str(bundle_copy), str(new), "--quiet"]) == 0
    assert "added 0 images; skipped 3 duplicates" in capsys.readouterr().out


def test_symlinked_thumbs_are_refused_and_nothing_outside_is_touched(bundle_copy, tmp_path, capsys):
    root = bundle_copy / "gallery"
    photos = tmp_path / "my_photos"
    photos.mkdir()
    for name in ("a" * 40 + ".jpg", "holiday.jpg"):
        (photos / name).write_bytes(b"precious")
    os.rename(root / "thumbs", tmp_path / "old_thumbs")
    os.symlink(photos, root / "thumbs")
    new = make_class_folder(tmp_path / "new", per_class=1, size=40, classes=["circles"])
    assert gallery_main(["add", "--bundle", str(bundle_copy), str(new), "--quiet"]) == 2
    assert "symlink" in capsys.readouterr().err
    label = load_gallery(root).items.labels[0]
    assert gallery_main(["remove", "--bundle", str(bundle_copy), label]) == 2
    assert sorted(p.name for p in photos.iterdir()) == ["a" * 40 + ".jpg", "holiday.jpg"]
    assert all(p.read_bytes() == b"precious" for p in photos.iterdir())


def _version_file(root, name):
    return current_version(root) / name


def test_tampered_and_out_of_range_gallery_files_are_refused(bundle_copy):
    root = bundle_copy / "gallery"
    path = _version_file(root, "embeddings.npy")
    data = bytearray(path.read_bytes())
    data[-100:] = bytes(100)
    path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match="checksum"):
        load_gallery(root)


@pytest.mark.parametrize("field, value, message", [
    ("trees", 1e8, "trees is 100000000.0, expected an integer in 1..1024"),
    ("count", "12", "count is '12'"),
    ("embedding_size", -3, "embedding_size is -3"),
])
def test_gallery_json_numbers_are_validated(bundle_copy, field, value, message):
    info_path = _version_file(bundle_copy / "gallery", "gallery.json")
    info = json.loads(info_path.read_text())
    info[field] = value
    info_path.write_text(json.dumps(info))
    with pytest.raises(GalleryError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_gallery(bundle_copy / "gallery")


def test_nan_embeddings_are_refused_with_the_file_named(bundle_copy):
    from edge.gallery.store import _sha256

    root = bundle_copy / "gallery"
    path = _version_file(root, "embeddings.npy")
    vectors = np.load(path)
    np.save(path, np.full_like(vectors, np.nan))
    info_path = _version_file(root, "gallery.json")
    info = json.loads(info_path.read_text())
    info["files"]["embeddings.npy"] = _sha256(path)  # checksums agree: the values must still be checked
    info_path.write_text(json.dumps(info))
    with pytest.raises(GalleryError, match="embeddings.npy holds NaN"):
        load_gallery(root)


def test_a_full_disk_during_add_leaves_the_gallery_and_disk_as_they_were(bundle_copy, tmp_path):
    """RLIMIT_FSIZE makes every write past the limit fail (EFBIG), as a full disk fails them."""
    import resource
    import signal

    from edge.gallery.store import GalleryItems, save_gallery
    from edge.manifest import read_manifest

    manifest = read_manifest(bundle_copy)
    root = bundle_copy / "gallery"
    count, dim = 6000, manifest.output.embedding_size
    vectors = np.random.default_rng(0).normal(size=(count, dim)).astype(np.float32)
    save_gallery(root, GalleryItems(vectors, ["bulk"] * count, [f"b/{i}" for i in range(count)], [None] * count),
                 manifest.model_sha256, trees=4)
    before = current_version(root)
    from edge.gallery.store import prune_thumbnails

    prune_thumbnails(root, [])  # the bulk items have none: start from no thumbnails at all
    thumbs_before = sorted(p.name for p in (root / "thumbs").iterdir())
    new = make_class_folder(tmp_path / "new", per_class=3, size=40, classes=["circles"])
    limit = (before / "embeddings.npy").stat().st_size // 2  # thumbnails fit, the new embeddings do not

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    failed = subprocess.run([sys.executable, "-m", "edge.gallery", "add", "--bundle", str(bundle_copy), str(new),
                             "--quiet"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                            preexec_fn=small_disk)
    assert failed.returncode == 2 and failed.stderr.count("error:") == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    assert current_version(root) == before and len(load_gallery(root)) == count
    assert [p.name for p in root.glob("v-*")] == [before.name]  # no half-written version kept
    assert sorted(p.name for p in (root / "thumbs").iterdir()) == thumbs_before  # no orphan thumbnails
    done = subprocess.run([sys.executable, "-m", "edge.gallery", "add", "--bundle", str(bundle_copy), str(new),
                           "--quiet"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(load_gallery(root)) == count + 3
