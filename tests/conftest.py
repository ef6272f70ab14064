"""Shared fixtures: tiny generated data sets and image files of every awkward kind."""

from __future__ import annotations

import os
from pathlib import Path

import edge  # noqa: F401  (first: sets OpenCV's decoder pixel limit before cv2 is imported)
import cv2
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
FLOWERS = SHARED / "data" / "flower_photos"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

# Each class is a colour and a stripe direction, so even a random tiny network separates them.
CLASS_STYLES = {
    "circles": ((220, 60, 60), "circle"),
    "stripes": ((60, 200, 80), "stripes"),
    "squares": ((70, 90, 230), "square"),
}


def synthetic_image(style: tuple, seed: int, size: int = 64) -> np.ndarray:
    """An RGB uint8 image of one class style with seeded noise and position jitter."""
    colour, shape = style
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    centre = tuple(int(v) for v in rng.integers(size // 3, 2 * size // 3, size=2))
    if shape == "circle":
        cv2.circle(image, centre, size // 4, colour, -1)
    elif shape == "square":
        cv2.rectangle(image, (centre[0] - size // 5, centre[1] - size // 5), (centre[0] + size // 5, centre[1] + size // 5), colour, -1)
    else:
        for x in range(int(rng.integers(0, 6)), size, 10):
            cv2.line(image, (x, 0), (x, size - 1), colour, 3)
    return image


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def make_class_folder(root: Path, per_class: int = 10, size: int = 64, classes=None) -> Path:
    """``root/<class>/<i>.jpg`` for the synthetic classes."""
    for c, (name, style) in enumerate(CLASS_STYLES.items()):
        if classes is not None and name not in classes:
            continue
        for i in range(per_class):
            write_rgb(root / name / f"{name}_{i:03d}.jpg", synthetic_image(style, seed=1000 * c + i, size=size))
    return root


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    return make_class_folder(tmp_path / "data")


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    """One file of every kind that must not crash a loader."""
    root = tmp_path_factory.mktemp("bad")
    good = synthetic_image(CLASS_STYLES["circles"], seed=7)
    files = {}
    files["good_jpeg"] = write_rgb(root / "good.jpg", good)
    jpeg = (root / "good.jpg").read_bytes()
    files["corrupt_jpeg"] = root / "corrupt.jpg"
    files["corrupt_jpeg"].write_bytes(jpeg[:20] + b"\x00" * 50)
    files["zero_byte"] = root / "empty.jpg"
    files["zero_byte"].write_bytes(b"")
    files["text_as_jpeg"] = root / "notes.jpg"
    files["text_as_jpeg"].write_text("this is not an image\n")
    files["gray_png"] = root / "gray.png"
    cv2.imwrite(str(files["gray_png"]), cv2.cvtColor(good, cv2.COLOR_RGB2GRAY))
    files["rgba_png"] = root / "rgba.png"
    rgba = np.dstack([cv2.cvtColor(good, cv2.COLOR_RGB2BGR), np.full(good.shape[:2], 128, np.uint8)])
    cv2.imwrite(str(files["rgba_png"]), rgba)
    files["png16"] = root / "deep.png"
    cv2.imwrite(str(files["png16"]), cv2.cvtColor(good, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    files["one_pixel"] = root / "dot.png"
    cv2.imwrite(str(files["one_pixel"]), np.zeros((1, 1, 3), np.uint8))
    return files


# A tiny tower: random weights, 32 px, alpha 0.35 - seconds to train and convert on 2 cores.
TINY_TRAIN_ARGS = ["--weights", "none", "--input-size", "32", "--alpha", "0.35", "--embedding-size", "16",
                   "--head-epochs", "1", "--fine-tune-epochs", "1", "--augmented-views", "1",
                   "--fine-tune-from-block", "14", "--batch-size", "12", "--eval-pairs", "200", "--no-progress"]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("tiny") / "data", per_class=12, size=48)


@pytest.fixture(scope="session")
def tiny_run(tiny_data) -> Path:
    from train.__main__ import main as train_main

    run = tiny_data.parent / "run"
    assert train_main(["--data-dir", str(tiny_data), "--run-dir", str(run), *TINY_TRAIN_ARGS]) == 0
    return run


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run) -> Path:
    """A real int8 bundle of the tiny run, made once per session; copy it before changing it."""
    from export.__main__ import main as export_main

    bundle = tiny_run.parent / "bundle"
    # An untrained toy model may lose more than 1 point in int8; the tolerance is tested elsewhere.
    argv = ["--run", str(tiny_run), "--bundle", str(bundle), "--calibration-images", "24", "--pairs", "200",
            "--tolerance", "100", "--trees", "8"]
    assert export_main(argv) == 0
    return bundle


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path) -> Path:
    """A private copy of the session bundle, free to modify."""
    import shutil

    target = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, target)
    return target
