"""Photometric and geometric augmentation in numpy/OpenCV, seeded and deterministic.

Hue is never shifted: colour is what tells roses from tulips.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge.preprocess import resize_image


def random_resized_crop(
    image: np.ndarray,
    size: int,
    rng: np.random.Generator,
    area_range: tuple[float, float] = (0.35, 1.0),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """Crops a random region (share of area and aspect ratio in range) and squashes it to size."""
    height, width = image.shape[:2]
    for _ in range(10):
        area = height * width * rng.uniform(*area_range)
        aspect = math.exp(rng.uniform(math.log(aspect_range[0]), math.log(aspect_range[1])))
        crop_w = int(round(math.sqrt(area * aspect)))
        crop_h = int(round(math.sqrt(area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return resize_image(image[top : top + crop_h, left : left + crop_w], size, size)
    return resize_image(image, size, size)


def jitter_colour(image: np.ndarray, rng: np.random.Generator, strength: float = 0.2) -> np.ndarray:
    """Random brightness, contrast and saturation, each scaled by 1 +- strength."""
    pixels = image.astype(np.float32)
    pixels *= rng.uniform(1 - strength, 1 + strength)  # brightness
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(1 - strength, 1 + strength) + mean  # contrast
    gray = cv2.cvtColor(np.clip(pixels, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    gray = gray.astype(np.float32)[..., None]
    pixels = (pixels - gray) * rng.uniform(1 - strength, 1 + strength) + gray  # saturation
    return np.clip(pixels, 0, 255).astype(np.uint8)


def augmented_view(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One training view: random resized crop, horizontal flip half the time, colour jitter."""
    view = random_resized_crop(image, size, rng)
    if rng.random() < 0.5:
        view = view[:, ::-1]
    return jitter_colour(np.ascontiguousarray(view), rng)
