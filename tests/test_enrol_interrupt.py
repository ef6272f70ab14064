"""An enrolment killed with SIGKILL half way leaves the previous gallery intact and loadable."""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from conftest import REPO_ROOT, make_class_folder
from edge.gallery.store import CURRENT, GalleryItems, current_version, load_gallery, save_gallery
from edge.manifest import read_manifest


def test_sigkill_during_enrolment_keeps_previous_gallery(bundle_copy, tmp_path):
    manifest = read_manifest(bundle_copy)
    root = bundle_copy / "gallery"
    dim, sha = manifest.output.embedding_size, manifest.model_sha256
    # A large gallery makes the rebuild (index build + writes) take long enough to be caught.
    count = 60000
    vectors = np.random.default_rng(0).normal(size=(count, dim)).astype(np.float32)
    bulk = GalleryItems(vectors, ["bulk"] * count, [f"bulk/{i}.jpg" for i in range(count)], [None] * count)
    save_gallery(root, bulk, sha, trees=32)
    before = current_version(root)
    new_images = make_class_folder(tmp_path / "new", per_class=2, size=40, classes=["circles"])

    process = subprocess.Popen(
        [sys.executable, "-m", "edge.gallery", "add", "--bundle", str(bundle_copy), str(new_images)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    partial = None
    while time.monotonic() < deadline and process.poll() is None:
        partial = next((p for p in root.glob("v-*") if p.name != before.name), None)
        if partial is not None:
            break
        time.sleep(0.002)
    assert partial is not None, "the enrolment finished before a new version folder was seen"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    # The live gallery is still the previous one, complete and searchable.
    assert (root / CURRENT).read_text().strip() == before.name
    gallery = load_gallery(root, dim, sha)
    assert len(gallery) == count and gallery.label_counts() == {"bulk": count}
    assert len(gallery.search(vectors[5], 3)) == 3

    # A later enrolment succeeds and clears the abandoned half-written version.
    done = subprocess.run(
        [sys.executable, "-m", "edge.gallery", "add", "--bundle", str(bundle_copy), str(new_images)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert len(load_gallery(root, dim, sha)) == count + 2
    assert [p.name for p in root.glob("v-*")] == [current_version(root).name]
