"""Decoding and validating images: whatever arrives becomes an HxWx3 uint8 RGB array or an ImageError.

Handles grayscale, RGBA, 16-bit and palette images; refuses empty, corrupt, non-image and
oversized inputs with a message that says what arrived. The size check reads the PNG/JPEG header
first, so a huge image is refused before its pixels are allocated.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Union

import cv2
import numpy as np

ImageSource = Union[str, Path, bytes, np.ndarray]

# 40 megapixels: larger than any phone photo; a 100 MP image would need 300 MB decoded.
MAX_PIXELS = 40_000_000
MIN_SIDE = 2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageError(ValueError):
    """An input that is not a usable image; the message says what arrived."""


def read_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decodes a file path or encoded bytes, or validates an RGB array.

    Args:
      source: a path, the encoded bytes of an image file, or an HxWx3 uint8 RGB array.
      max_pixels: refuse images with more pixels than this.

    Returns:
      An HxWx3 uint8 array in RGB order.

    Raises:
      ImageError: the input is missing, empty, not an image, corrupt, too small or too large.
    """
    if isinstance(source, np.ndarray):
        return validate_rgb(source)
    if isinstance(source, (str, Path)):
        data = _read_file(Path(source))
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
    decoded = cv2.imdecode(buffer, flags)
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


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding, or None if unknown."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    start_of_frame = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
    while position + 9 < len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        if marker in start_of_frame:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return int(width), int(height)
        position += 2 + length
    return None


def _read_file(path: Path) -> bytes:
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a file")
    try:
        return path.read_bytes()
    except OSError as error:
        raise ImageError(f"{path}: cannot read ({error.strerror})") from error


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
