"""Image sizes read from file headers, without decoding: the cheap first guard against image bombs.

A few dozen bytes can declare a picture of gigapixels (a 38-byte lossless WebP of one colour
decodes to any size its header names). :func:`header_size` reads the declared width and height
of PNG, JPEG, WebP, TIFF/BigTIFF, BMP and GIF so that :mod:`edge.images` refuses a huge image
before a decoder allocates it. Formats not parsed here are bounded by OpenCV's own pixel limit
(``OPENCV_IO_MAX_IMAGE_PIXELS``, set in ``edge/__init__.py`` before ``cv2`` is imported).

Pure Python on bytes: no numpy, no OpenCV.
"""

from __future__ import annotations

import struct

Size = tuple[int, int]

_JPEG_START_OF_FRAME = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: bytes) -> Size | None:
    """(width, height) declared by an image header, or None when the format is not parsed here
    or the header is cut short (the decoder then decides, under OpenCV's pixel limit)."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if data[:2] == b"\xff\xd8":
            return jpeg_size(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return webp_size(data)
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return tiff_size(data)
        if data[:2] == b"BM" and len(data) >= 26:
            return _bmp_size(data)
        if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
            width, height = struct.unpack("<HH", data[6:10])
            return int(width), int(height)
    except struct.error:  # a header cut short
        return None
    return None


def jpeg_size(data: bytes) -> Size | None:
    """Size from the first start-of-frame marker. Bytes that are not a marker are skipped, as
    libjpeg does ("extraneous bytes before marker"), so a stray byte cannot hide the size."""
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            position += 1
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x00, 0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        if marker in _JPEG_START_OF_FRAME:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return int(width), int(height)
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        position += 2 + length
    return None


def webp_size(data: bytes) -> Size | None:
    """Size from the first chunk: VP8 (lossy), VP8L (lossless) or VP8X (extended canvas)."""
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20:21] == b"\x2f":
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def tiff_size(data: bytes) -> Size | None:
    """ImageWidth and ImageLength of the first image (IFD), classic TIFF or BigTIFF.

    Tiles and strips are also refused when one of them is larger than the image allows,
    since a decoder allocates a whole tile or strip at once."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    if big:
        offset = struct.unpack(order + "Q", data[8:16])[0]
        count = struct.unpack(order + "Q", data[offset : offset + 8])[0]
        first, entry_size, count_format, value_size = offset + 8, 20, "Q", 8
    else:
        offset = struct.unpack(order + "I", data[4:8])[0]
        count = struct.unpack(order + "H", data[offset : offset + 2])[0]
        first, entry_size, count_format, value_size = offset + 2, 12, "I", 4
    tags: dict[int, int] = {}
    for index in range(min(count, 4096)):
        start = first + index * entry_size
        tag, kind = struct.unpack(order + "HH", data[start : start + 4])
        if tag not in (256, 257, 322, 323):
            continue
        value_at = start + 4 + struct.calcsize(count_format)
        value = data[value_at : value_at + value_size]
        formats = {3: "H", 4: "I", 16: "Q"}
        if kind in formats:
            tags[tag] = struct.unpack(order + formats[kind], value[: struct.calcsize(formats[kind])])[0]
    if 256 not in tags or 257 not in tags:
        return None
    width, height = tags[256], tags[257]
    tile_width, tile_height = tags.get(322, 0), tags.get(323, 0)
    # A tile larger than the image makes the decoder allocate the tile: report the larger.
    return max(int(width), int(tile_width)), max(int(height), int(tile_height))


def _bmp_size(data: bytes) -> Size:
    header = struct.unpack("<I", data[14:18])[0]
    if header == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return abs(int(width)), abs(int(height))
