"""The live window: the frame, FPS, and the top-K gallery thumbnails with labels and similarity."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import cv2
import numpy as np

from edge.gallery.store import Gallery, Match

WINDOW = "siamese-edge"
TILE = 96


def has_display() -> bool:
    """Whether a window can open. With no display the GUI build of OpenCV aborts the process
    (Qt, SIGABRT, exit 134) instead of raising, so this must be checked before ``cv2.imshow``:
    a DISPLAY that is set counts only when an X server answers behind it. WAYLAND_DISPLAY alone
    does not: the Qt build of the opencv-python wheels speaks X (xcb) only, and Wayland desktops
    (Raspberry Pi OS Bookworm included) run XWayland and set DISPLAY as well."""
    if not sys.platform.startswith("linux"):
        return True
    return x_server_answers(os.environ.get("DISPLAY", ""))


def x_server_answers(display: str, timeout: float = 0.5) -> bool:
    """Connects to the X server ``display`` names (``:0``, ``unix:0.0``, ``localhost:10.0``)."""
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        return False
    if host in ("", "unix"):
        return _connects(socket.AF_UNIX, f"/tmp/.X11-unix/X{number}", timeout)
    return _connects(socket.AF_INET, (host, 6000 + int(number)), timeout)  # ssh -X forwarding


def _connects(family: int, address, timeout: float) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(address)
        return True
    except (OSError, ValueError):
        return False


class ThumbnailCache:
    """Loads each gallery thumbnail once (not every frame)."""

    def __init__(self, gallery: Gallery):
        self.gallery = gallery
        self._cache: dict[str, np.ndarray] = {}

    def get(self, match: Match) -> np.ndarray:
        key = match.thumbnail or ""
        if key not in self._cache:
            path = self.gallery.thumbnail_path(match)
            image = cv2.imread(str(path)) if path and Path(path).exists() else None
            if image is None:
                image = np.full((TILE, TILE, 3), 64, np.uint8)
            self._cache[key] = cv2.resize(image, (TILE, TILE), interpolation=cv2.INTER_AREA)
        return self._cache[key]


def compose(frame_bgr: np.ndarray, matches: list[Match], thumbnails: ThumbnailCache, fps: float) -> np.ndarray:
    """Frame on top, a strip of thumbnails below; returns a BGR image."""
    height = 360
    scale = height / frame_bgr.shape[0]
    view = cv2.resize(frame_bgr, (max(1, int(frame_bgr.shape[1] * scale)), height))
    cv2.putText(view, f"{fps:5.1f} FPS", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2, cv2.LINE_AA)
    tiles = []
    for match in matches:
        tile = thumbnails.get(match).copy()
        caption = f"{match.label[:10]} {match.similarity:.2f}"
        cv2.rectangle(tile, (0, TILE - 18), (TILE, TILE), (0, 0, 0), -1)
        cv2.putText(tile, caption, (2, TILE - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    strip = np.concatenate(tiles, axis=1) if tiles else np.zeros((TILE, 1, 3), np.uint8)
    width = max(view.shape[1], strip.shape[1])
    pad = lambda image: np.pad(image, ((0, 0), (0, width - image.shape[1]), (0, 0)))  # noqa: E731
    return np.concatenate([pad(view), pad(strip)], axis=0)


def show(image_bgr: np.ndarray) -> bool:
    """Shows a frame; returns False when the user pressed q or Esc."""
    cv2.imshow(WINDOW, image_bgr)
    return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)


def close() -> None:
    try:
        cv2.destroyAllWindows()
    except cv2.error:
        pass
