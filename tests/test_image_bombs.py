"""Decompression bombs and huge files: refused before any allocation, with peak memory measured.

Each bomb is small on disk and declares 10,000 x 10,000 pixels. The control test decodes the same
bytes with plain OpenCV (no limit) in a subprocess and sees hundreds of MB of RSS, so the guarded
test below measures a real bomb, not a file OpenCV would have refused anyway.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.image_headers import header_size
from edge.images import MAX_FILE_BYTES, MAX_PIXELS, ImageError, read_image

REPO_ROOT = Path(__file__).resolve().parent.parent
SIDE = 10_000
RSS_LIMIT_MB = 300


def tiff_bomb(width: int = SIDE, height: int = SIDE, rows: int = 256) -> bytes:
    """An RGB deflate TIFF whose strips all point at one compressed block of zeros (~8 KB)."""
    strip = zlib.compress(bytes(width * 3 * rows), 9)
    strips = -(-height // rows)
    entries = 10
    bits_at = 8 + 2 + entries * 12 + 4
    offsets_at = bits_at + 6
    counts_at = offsets_at + 4 * strips
    data_at = counts_at + 4 * strips

    def long(tag, count, value):
        return struct.pack("<HHII", tag, 4, count, value)

    def short(tag, value):
        return struct.pack("<HHIHH", tag, 3, 1, value, 0)

    ifd = struct.pack("<H", entries) + b"".join([
        long(256, 1, width), long(257, 1, height), struct.pack("<HHII", 258, 3, 3, bits_at), short(259, 8),
        short(262, 2), long(273, strips, offsets_at), short(277, 3), long(278, 1, rows),
        long(279, strips, counts_at), short(284, 1),
    ]) + struct.pack("<I", 0)
    tables = struct.pack("<HHH", 8, 8, 8) + struct.pack(f"<{strips}I", *[data_at] * strips)
    tables += struct.pack(f"<{strips}I", *[len(strip)] * strips)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + tables + strip


def webp_bomb(width: int = SIDE, height: int = SIDE) -> bytes:
    """A lossless WebP of one colour (38 bytes): its pixels cost no bits, so the header sets the size."""
    ok, encoded = cv2.imencode(".webp", np.full((16, 16, 3), 128, np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])
    data = bytearray(encoded.tobytes())
    at = data.index(b"VP8L") + 8
    assert ok and data[at] == 0x2F
    bits = struct.unpack_from("<I", data, at + 1)[0]
    struct.pack_into("<I", data, at + 1, (bits & ~0x0FFFFFFF) | (width - 1) | ((height - 1) << 14))
    return bytes(data)


def jpeg_bomb(width: int = SIDE, height: int = SIDE) -> bytes:
    """A 16x16 JPEG whose frame header claims width x height, hidden behind one stray byte
    (libjpeg skips it with a warning and fills the missing rows)."""
    ok, encoded = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    data = bytearray(encoded.tobytes())
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data[:at]) + b"\x00" + bytes(data[at:])


def pnm_bomb(width: int = SIDE, height: int = SIDE) -> bytes:
    """A format whose header edge.image_headers does not read: only OpenCV's own limit stops it."""
    return f"P6\n{width} {height}\n255\n".encode() + bytes(3 * 1000)


BOMBS = {"tiff": (tiff_bomb, ".tif"), "webp": (webp_bomb, ".webp"), "jpeg": (jpeg_bomb, ".jpg")}

# Peak RSS of this process image: VmHWM. (ru_maxrss survives execve on Linux, so a child started
# from a big pytest process would report the parent's peak, not its own.)
PEAK_RSS = """
def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
"""

GUARDED = PEAK_RSS + """
import json, sys
from edge.images import ImageError, read_image
try:
    read_image(sys.argv[1])
    outcome = "decoded"
except ImageError as error:
    outcome = "refused: " + str(error)
print(json.dumps({"outcome": outcome, "rss_mb": peak_rss_mb()}))
"""

UNGUARDED = PEAK_RSS + """
import json, sys
import cv2, numpy as np
image = cv2.imdecode(np.fromfile(sys.argv[1], np.uint8), cv2.IMREAD_COLOR)
print(json.dumps({"shape": None if image is None else list(image.shape), "rss_mb": peak_rss_mb()}))
"""


def run_python(code: str, path: Path, env: dict | None = None) -> dict:
    result = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_bomb(tmp_path: Path, kind: str) -> Path:
    make, suffix = BOMBS[kind]
    path = tmp_path / f"bomb{suffix}"
    path.write_bytes(make())
    return path


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_bomb_is_small_on_disk_and_declares_a_huge_size(tmp_path, kind):
    path = write_bomb(tmp_path, kind)
    assert path.stat().st_size < 20_000
    assert header_size(path.read_bytes()) == (SIDE, SIDE)


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_bomb_without_the_guard_really_allocates(tmp_path, kind):
    """Control: OpenCV with its default limit (1 gigapixel) decodes the bomb in full."""
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    measured = run_python(UNGUARDED, write_bomb(tmp_path, kind), env)
    assert measured["shape"] == [SIDE, SIDE, 3]
    assert measured["rss_mb"] > RSS_LIMIT_MB


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_bomb_is_refused_with_little_memory(tmp_path, kind):
    measured = run_python(GUARDED, write_bomb(tmp_path, kind))
    assert measured["outcome"].startswith("refused: "), measured
    assert f"{SIDE}x{SIDE}" in measured["outcome"]
    assert measured["rss_mb"] < RSS_LIMIT_MB


def test_format_without_a_header_reader_is_stopped_by_opencvs_limit(tmp_path):
    path = tmp_path / "bomb.ppm"
    path.write_bytes(pnm_bomb())
    assert header_size(path.read_bytes()) is None
    measured = run_python(GUARDED, path)
    assert "OPENCV_IO_MAX_IMAGE_PIXELS=40000000" in measured["outcome"], measured
    assert measured["rss_mb"] < RSS_LIMIT_MB


def test_edge_sets_opencvs_limit_to_max_pixels():
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    code = "import os, edge.images as i; print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'], i.MAX_PIXELS)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    limit, max_pixels = result.stdout.split()
    assert limit == max_pixels == str(MAX_PIXELS)


def test_huge_sparse_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0")
        handle.truncate(3 * 2**30)  # 3 GB that take no disk space
    assert path.stat().st_size > MAX_FILE_BYTES
    code = GUARDED.replace("import json, sys", "import json, sys, psutil")
    code = code.replace("try:", "before = psutil.Process().io_counters().read_chars\ntry:", 1)
    code = code.replace("print(json.dumps({",
                        "print(json.dumps({'read': psutil.Process().io_counters().read_chars - before, ")
    measured = run_python(code, path)
    assert "3,221,225,472 bytes, more than the limit" in measured["outcome"], measured
    assert measured["read"] < 1_000_000  # the 3 GB were never read (imports read a few KB)
    assert measured["rss_mb"] < RSS_LIMIT_MB


@pytest.mark.parametrize("suffix, params", [
    (".png", []), (".jpg", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]), (".tif", []), (".bmp", []),
])
def test_header_size_of_real_files(suffix, params):
    ok, encoded = cv2.imencode(suffix, np.zeros((37, 53, 3), np.uint8), params)
    assert ok and header_size(encoded.tobytes()) == (53, 37)


def test_tiff_tile_larger_than_allowed_is_refused(tmp_path):
    """A small image whose one tile is huge: the decoder would allocate the tile."""
    ifd = struct.pack("<H", 4) + b"".join(struct.pack("<HHII", tag, 4, 1, value) for tag, value in
                                          ((256, 64), (257, 64), (322, 65536), (323, 65536))) + b"\0" * 4
    data = b"II*\x00" + struct.pack("<I", 8) + ifd
    assert header_size(data) == (65536, 65536)
    path = tmp_path / "tile.tif"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="65536x65536"):
        read_image(path)


def test_cv2_error_becomes_image_error(tmp_path):
    path = tmp_path / "bomb.ppm"
    path.write_bytes(pnm_bomb())
    with pytest.raises(ImageError, match=str(path)):
        read_image(path, max_pixels=MAX_PIXELS)


def test_file_name_over_255_bytes_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path / ("x" * 300 + ".jpg"))
