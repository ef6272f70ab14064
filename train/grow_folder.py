"""Makes a larger class folder from a smaller one, for measuring how training scales: every image
plus three fixed transformed copies (mirrored, centre crop of 85 %, 15 % darker), under new names,
in the same classes. Not data to train a model on; a folder ``--copies`` times as large::

    python -m train.grow_folder --source ../shared/data/flower_photos --out /tmp/flowers-4x
    python -m train.grow_folder --source ../shared/data/flower_photos --out /tmp/flowers-100 \\
        --per-class 100 --copies 1     # a plain subset (the first 100 images of every class)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

import edge  # noqa: F401  (first: sets OpenCV's decoder pixel limit before cv2 is imported)
import cv2
import numpy as np

from edge.images import ImageError, read_image
from train.data import cap_per_class, list_images


def _mirror(rgb: np.ndarray) -> np.ndarray:
    return rgb[:, ::-1]


def _centre_crop(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    top, left = int(height * 0.075), int(width * 0.075)
    return rgb[top : height - top, left : width - left]


def _darker(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float32) * 0.85).astype(np.uint8)


TRANSFORMS: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
    ("mirror", _mirror), ("crop85", _centre_crop), ("dark15", _darker),
]


def grow(source: Path, out: Path, copies: int, per_class: int | None) -> int:
    """Writes ``out/<class>/<stem>[_<transform>].jpg``; returns the number of images written."""
    if not 1 <= copies <= 1 + len(TRANSFORMS):
        raise ValueError(f"--copies must be 1..{1 + len(TRANSFORMS)}, got {copies}")
    records, _ = list_images(source)
    written = 0
    for record in cap_per_class(records, per_class):
        try:
            rgb = read_image(source / record.path)
        except ImageError as error:
            print(f"skipping {record.path}: {error}", file=sys.stderr)
            continue
        target = out / record.class_name
        target.mkdir(parents=True, exist_ok=True)
        stem = Path(record.path).stem
        variants = [("", rgb)] + [(f"_{name}", fn(rgb)) for name, fn in TRANSFORMS[: copies - 1]]
        for suffix, image in variants:
            bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(target / f"{stem}{suffix}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"could not write {target / (stem + suffix)}.jpg")
            written += 1
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.grow_folder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="folder of <class>/<image>")
    parser.add_argument("--out", type=Path, required=True, help="new folder (created)")
    parser.add_argument("--copies", type=int, default=4, help="images per source image (1 = a plain copy)")
    parser.add_argument("--per-class", type=int, default=None, help="use only the first N images of every class")
    args = parser.parse_args(argv)
    try:
        count = grow(args.source, args.out, args.copies, args.per_class)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{count} images in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
