"""Decoding and validating images: whatever arrives becomes an HxWx3 uint8 RGB array or an ImageError.

Handles grayscale, RGBA, 16-bit and palette images; refuses empty, corrupt, non-image and
oversized inputs with a message that says what arrived. Decoding is bounded before anything is
allocated, in three layers:

1. a file larger than ``MAX_FILE_BYTES`` is refused from its size, before it is read;
2. the declared width x height is read from the header (PNG, JPEG, WebP, TIFF, BMP, GIF:
   edge.image_headers) and refused above ``max_pixels``;
3. every other format OpenCV decodes is bounded by OpenCV's own limit, the environment variable
   ``OPENCV_IO_MAX_IMAGE_PIXELS``, which ``edge/__init__.py`` sets to ``MAX_PIXELS`` before
   ``cv2`` is first imported (OpenCV reads it once, at import).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from edge.image_headers import header_size

ImageSource = Union[str, Path, bytes, np.ndarray]

# 40 megapixels: larger than any phone photo; a 100 MP image would need 300 MB decoded.
MAX_PIXELS = 40_000_000
# 100 MiB: a 40 MP photo is 10-30 MB as JPEG and under 100 MB as PNG; larger files are not read.
MAX_FILE_BYTES = 100 * 2**20
MIN_SIDE = 2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageError(ValueError):
    """An input that is not a usable image; the message says what arrived."""


def read_image(source: ImageSource, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """Decodes a file path or encoded bytes, or validates an RGB array.

    Args:
      source: a path, the encoded bytes of an image file, or an HxWx3 uint8 RGB array.
      max_pixels: refuse images with more pixels than this (OpenCV's own limit,
        ``OPENCV_IO_MAX_IMAGE_PIXELS``, caps formats whose header is not read here).
      max_bytes: refuse files larger than this without reading them.

    Returns:
      An HxWx3 uint8 array in RGB order.

    Raises:
      ImageError: the input is missing, empty, not an image, corrupt, too small or too large.
    """
    if isinstance(source, np.ndarray):
        return validate_rgb(source)
    if isinstance(source, (str, Path)):
        data = _read_file(Path(source), max_bytes)
        name = str(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "<bytes>"
    else:
        raise ImageError(f"expected a path, bytes or an RGB array, got {type(source).__name__}")
    return decode_image_bytes(data, name=name, max_pixels=max_pixels)


def decode_image_bytes(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decodes encoded image bytes to RGB uint8 (see :func:`read_image`)."""
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes), expected an encoded image")
    size = header_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageError(
            f"{name}: image is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, "
            f"more than the limit of {max_pixels:,}; downscale it first"
        )
    buffer = np.frombuffer(data, dtype=np.uint8)
    # JPEGs are 8-bit colour or gray: IMREAD_COLOR also applies their EXIF orientation, as
    # camera apps show them. Other formats keep depth/alpha so they can be converted explicitly.
    flags = cv2.IMREAD_COLOR if data[:2] == b"\xff\xd8" else cv2.IMREAD_UNCHANGED
    try:
        decoded = cv2.imdecode(buffer, flags)
    except cv2.error as error:
        raise ImageError(_opencv_message(name, data, error)) from error
    if decoded is None:
        head = data[:8]
        raise ImageError(
            f"{name}: not a decodable image ({len(data):,} bytes starting {head!r}); "
            f"expected JPEG, PNG, BMP, WebP or TIFF"
        )
    if decoded.shape[0] * decoded.shape[1] > max_pixels:
        raise ImageError(
            f"{name}: image is {decoded.shape[1]}x{decoded.shape[0]}, more than {max_pixels:,} pixels"
        )
    return _to_rgb_uint8(decoded, name)


def validate_rgb(image: np.ndarray, name: str = "array") -> np.ndarray:
    """Checks an in-memory image is HxWx3 uint8 and large enough; returns it unchanged."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(f"{name}: expected an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ImageError(
            f"{name}: image is {image.shape[1]}x{image.shape[0]}, expected at least "
            f"{MIN_SIDE}x{MIN_SIDE} pixels"
        )
    return image


def bgr_frame_to_rgb(frame: np.ndarray) -> np.ndarray:
    """Converts an OpenCV BGR(A)/gray frame to validated RGB uint8."""
    if not isinstance(frame, np.ndarray) or frame.size == 0:
        raise ImageError(f"expected a camera frame, got {type(frame).__name__}")
    return _to_rgb_uint8(frame, "frame")


def is_image_file(path: Path) -> bool:
    """True for file names with a known image suffix (hidden files excluded)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _read_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes, refused from its size before reading when larger than ``max_bytes``."""
    try:
        if not path.exists():
            raise ImageError(f"{path}: no such file")
        if not path.is_file():
            raise ImageError(f"{path}: not a file")
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise ImageError(_too_large(path, size, max_bytes))
            data = handle.read(max_bytes + 1)  # bounded even if the file grows meanwhile
    except OSError as error:  # permission, a name over 255 bytes, an I/O error...
        raise ImageError(f"{path}: cannot read ({error.strerror or error})") from error
    if len(data) > max_bytes:
        raise ImageError(_too_large(path, len(data), max_bytes))
    return data


def _too_large(path: Path, size: int, max_bytes: int) -> str:
    return (f"{path}: file is {size:,} bytes, more than the limit of {max_bytes:,} for one image; "
            "downscale or recompress it first")


def _opencv_message(name: str, data: bytes, error: Exception) -> str:
    text = str(error)
    if "CV_IO_MAX_IMAGE_PIXELS" in text or "validateInputImageSize" in text:
        limit = os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", "OpenCV's default")
        return (f"{name}: image is larger than the decoder limit OPENCV_IO_MAX_IMAGE_PIXELS={limit} "
                "pixels; downscale it first")
    reason = text.strip().splitlines()[-1] if text.strip() else type(error).__name__
    return f"{name}: OpenCV could not decode it ({len(data):,} bytes starting {data[:8]!r}): {reason}"


def _to_rgb_uint8(image: np.ndarray, name: str) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)  # 16-bit PNG/TIFF: keep the high byte
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"{name}: unsupported pixel type {image.dtype}, expected 8 or 16 bits")
    if image.ndim == 2:
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.ndim == 3 and image.shape[2] == 1:
        rgb = cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    elif image.ndim == 3 and image.shape[2] == 3:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)  # alpha dropped
    else:
        raise ImageError(f"{name}: expected 1, 3 or 4 channels, got shape {image.shape}")
    return validate_rgb(np.ascontiguousarray(rgb), name)
