"""What the device benchmark feeds the encoder: seeded synthetic camera frames, or real photos.

Frames are 640x480 BGR, what OpenCV's camera capture delivers by default and what
benchmarks/conftest.py's video frames are. Content hardly changes the timings (every op of the
encoder is dense); --images gives real photos anyway, e.g. to compare with the table's frames.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.cli import report
from edge.images import ImageError, is_image_file, read_image

FRAME_WIDTH, FRAME_HEIGHT = 640, 480
MAX_FOLDER_IMAGES = 40


def synthetic_frames(count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Seeded smooth colour frames (random 80x60 pixels blown up), HxWx3 uint8 BGR."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(count, FRAME_HEIGHT // 8, FRAME_WIDTH // 8, 3)).astype(np.uint8)
    return [cv2.resize(s, (FRAME_WIDTH, FRAME_HEIGHT), interpolation=cv2.INTER_LINEAR) for s in small]


def image_paths(folder: Path, limit: int = MAX_FOLDER_IMAGES) -> list[Path]:
    """Up to ``limit`` image files below ``folder`` (sorted, sub-folders included).

    Raises:
      FileNotFoundError: no such folder, or no image files in it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {folder} is not a folder; give a folder of .jpg/.png images")
    paths = [p for p in sorted(folder.rglob("*")) if is_image_file(p)][:limit]
    if not paths:
        raise FileNotFoundError(f"no image files (.jpg, .png, ...) below {folder}")
    return paths


def frames_from_folder(folder: Path, limit: int = MAX_FOLDER_IMAGES) -> tuple[list[np.ndarray], list[Path], int]:
    """Real photos below ``folder`` resized to 640x480 BGR frames; unreadable ones are reported
    and skipped. Returns the frames, the paths they came from and how many were skipped.

    Raises:
      FileNotFoundError: no folder, or none of its images decodes.
    """
    frames, used = [], []
    for path in image_paths(folder, limit):
        try:
            rgb = read_image(path)
        except (ImageError, OSError, ValueError) as error:
            report(error)
            continue
        frames.append(cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (FRAME_WIDTH, FRAME_HEIGHT),
                                 interpolation=cv2.INTER_AREA))
        used.append(path)
    if not frames:
        raise FileNotFoundError(f"none of the images below {folder} could be decoded")
    return frames, used, len(image_paths(folder, limit)) - len(used)


def write_query_image(frame_bgr: np.ndarray, folder: Path) -> Path:
    """A frame as a JPEG file for the cold-start command's --image."""
    ok, data = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ImageError("OpenCV could not encode the benchmark's query image as JPEG")
    path = Path(folder) / "bench-query.jpg"
    path.write_bytes(data.tobytes())
    return path
