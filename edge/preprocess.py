"""Image -> model input, exactly as the bundle manifest describes (shared with training)."""

from __future__ import annotations

import cv2
import numpy as np

from edge.quant import QuantParams, quantize


def resize_image(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes the whole image to ``height x width`` ("squash": aspect ratio is not kept).

    Squash keeps every pixel of the object in view, which suits centred photos; training uses
    the same function, so the device sees what the model was trained on. INTER_AREA when
    shrinking (no aliasing), INTER_LINEAR when enlarging.
    """
    if rgb.shape[0] == height and rgb.shape[1] == width:
        return rgb
    shrinking = rgb.shape[0] * rgb.shape[1] > height * width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(rgb, (width, height), interpolation=interpolation)


def shrink_to_short_side(rgb: np.ndarray, short_side: int) -> np.ndarray:
    """Downscales (never upscales) so the shorter side is at most ``short_side``; keeps aspect."""
    height, width = rgb.shape[:2]
    if min(height, width) <= short_side:
        return rgb
    scale = short_side / min(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def to_model_input(
    rgb: np.ndarray, height: int, width: int, dtype: np.dtype, params: QuantParams
) -> np.ndarray:
    """Returns a (1, H, W, 3) batch of pixel values 0..255, quantised when the input is.

    The exported encoders rescale pixels inside the model, so the float input is raw 0..255 and
    an int8 input is ``pixel / scale + zero_point`` with the converter's own parameters.
    """
    resized = resize_image(rgb, height, width)
    if np.dtype(dtype) == np.uint8 and params == QuantParams(1.0, 0):
        return resized[None, ...]  # raw pixels are already the model's input: no arithmetic
    return quantize(resized.astype(np.float32), params, dtype)[None, ...]
