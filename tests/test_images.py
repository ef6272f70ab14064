"""Image decoding and validation: every awkward input becomes RGB uint8 or a clear ImageError."""

import struct
import zlib

import cv2
import numpy as np
import pytest

from conftest import CLASS_STYLES, synthetic_image
from edge.images import ImageError, bgr_frame_to_rgb, header_size, read_image, validate_rgb


def test_good_jpeg_is_rgb(bad_files):
    image = read_image(bad_files["good_jpeg"])
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    # the circle is red (220, 60, 60) in RGB: red channel dominates at the centre region
    assert image[..., 0].mean() > image[..., 2].mean()


@pytest.mark.parametrize("kind, message", [
    ("corrupt_jpeg", "not a decodable image"),
    ("zero_byte", "empty file (0 bytes)"),
    ("text_as_jpeg", "not a decodable image"),
    ("one_pixel", "expected at least 2x2"),
])
def test_bad_files_raise_clear_errors(bad_files, kind, message):
    with pytest.raises(ImageError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        read_image(bad_files[kind])
    assert str(bad_files[kind]) in str(error.value)


@pytest.mark.parametrize("kind", ["gray_png", "rgba_png", "png16"])
def test_gray_rgba_and_16_bit_become_rgb_uint8(bad_files, kind):
    image = read_image(bad_files[kind])
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    original = synthetic_image(CLASS_STYLES["circles"], seed=7)  # what the fixture wrote, losslessly
    if kind == "gray_png":
        assert np.array_equal(image[..., 0], image[..., 2])
        assert np.abs(image[..., 0].astype(int) - cv2.cvtColor(original, cv2.COLOR_RGB2GRAY)).max() <= 1
    else:  # alpha dropped / high byte of 16 bits kept: the same RGB pixels
        assert np.array_equal(image, original)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.jpg")


def test_bytes_input(bad_files):
    assert read_image(bad_files["good_jpeg"].read_bytes()).shape == (64, 64, 3)


def test_huge_png_is_refused_from_its_header_without_decoding(tmp_path):
    # A valid PNG header claiming 30000 x 30000 (900 MP); decoding it would need 2.7 GB.
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    assert header_size(path.read_bytes()) == (30000, 30000)
    with pytest.raises(ImageError, match="30000x30000 = 900,000,000 pixels"):
        read_image(path)


def test_large_real_image_over_a_limit(tmp_path):
    path = tmp_path / "large.jpg"
    cv2.imwrite(str(path), np.zeros((1200, 1600, 3), np.uint8))
    assert header_size(path.read_bytes()) == (1600, 1200)
    assert read_image(path).shape == (1200, 1600, 3)
    with pytest.raises(ImageError, match="more than the limit of 1,000,000"):
        read_image(path, max_pixels=1_000_000)


def test_validate_rgb_says_what_arrived():
    with pytest.raises(ImageError, match=r"expected an HxWx3 uint8 image, got \(480, 640\) uint16"):
        validate_rgb(np.zeros((480, 640), np.uint16))
    with pytest.raises(ImageError, match="numpy array"):
        validate_rgb([[1, 2, 3]])


def test_bgr_frame_conversion():
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    assert bgr_frame_to_rgb(frame)[0, 0].tolist() == [0, 0, 255]
    with pytest.raises(ImageError):
        bgr_frame_to_rgb(np.zeros((0,), np.uint8))
