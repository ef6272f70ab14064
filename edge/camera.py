"""Camera and video input through OpenCV, with clear errors and a bounded retry for live devices.

A source is a device index (``0``), a device path (``/dev/video0``) or a video file / image
sequence (``clip.mp4``, ``img_%03d.jpg``). On Raspberry Pi OS with a CSI camera behind libcamera,
OpenCV's V4L2 backend sees it only through the compatibility layer: run under ``libcamerify``
(package libcamera-tools) or use picamera2 (README, "Raspberry Pi camera").
"""

from __future__ import annotations

import logging
import os
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import cv2
import numpy as np

log = logging.getLogger(__name__)

# source -> a context manager yielding a capture with grab() -> bool and retrieve() -> (ok, frame)
Opener = Callable[[Any], ContextManager[Any]]


class CameraError(RuntimeError):
    """The camera or video did not open, or a live camera stopped delivering frames."""


def parse_source(text: str | int | None) -> int | str:
    """``"0"`` -> device index 0; anything else is a device path or a file name."""
    if text is None or text == "":
        return 0
    if isinstance(text, int):
        return text
    return int(text) if text.isdigit() else text


def is_live(source: int | str) -> bool:
    """Device indices and character devices (/dev/video0) are live; anything else is a file that
    ends, wherever it lives (a clip under /dev/shm is still a file)."""
    if isinstance(source, int):
        return True
    try:
        return stat.S_ISCHR(os.stat(source).st_mode)
    except (OSError, ValueError):  # missing, a name too long, a NUL byte: not a device we can open
        return False


@contextmanager
def open_camera(source: int | str) -> Iterator[cv2.VideoCapture]:
    """Opens a capture and always releases it.

    Raises:
      CameraError: the source does not open (no such device, unreadable file).
    """
    if not is_live(source) and "%" not in str(source) and not Path(source).exists():
        raise CameraError(f"video source {source} does not exist")
    capture = cv2.VideoCapture(source)
    try:
        if not capture.isOpened():
            kind = "camera" if is_live(source) else "video file"
            raise CameraError(f"could not open {kind} {source!r}; check that it exists and is not in use")
        yield capture
    finally:
        capture.release()


def read_frames(source: int | str, every: int = 1, max_frames: int | None = None, retries: int = 3,
                retry_delay: float = 0.5, live: bool | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(frame_number, bgr_frame)`` for every ``every``-th frame.

    A video file ends at its last frame. A live camera (``live``, inferred from the source when
    None) that stops delivering frames or cannot be reopened is retried up to ``retries`` times
    (``retry_delay`` doubling each time) before CameraError is raised.
    """
    for number, _, frame in grab_frames(source, every, max_frames, retries, retry_delay, live):
        yield number, frame


def grab_frames(source: int | str, every: int = 1, max_frames: int | None = None, retries: int = 3,
                retry_delay: float = 0.5, live: bool | None = None, opener: Opener | None = None,
                wanted: Callable[[], bool] | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yields ``(frame_number, grabbed_at, bgr_frame)``: read_frames with the capture's own parts.

    Every frame is grabbed (``capture.grab()``, no decoding); only a frame that is due (every
    ``every``-th) and ``wanted()`` (default: always) is decoded (``capture.retrieve()``), so a live
    loop that skips frames does not pay for decoding them. ``grabbed_at`` is ``time.time()`` when
    the frame's grab returned. ``opener(source)`` is a context manager yielding an object with
    ``grab()`` and ``retrieve()`` like cv2.VideoCapture (default: open_camera).
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    live = is_live(source) if live is None else live
    opener = open_camera if opener is None else opener
    number, yielded, failures = 0, 0, 0
    while max_frames is None or yielded < max_frames:
        try:
            with opener(source) as capture:
                while max_frames is None or yielded < max_frames:
                    if not capture.grab():
                        break
                    grabbed_at = time.time()
                    failures = 0
                    number += 1
                    if (number - 1) % every or (wanted is not None and not wanted()):
                        continue
                    ok, frame = capture.retrieve()
                    if not ok or frame is None:
                        break
                    yield number - 1, grabbed_at, frame
                    yielded += 1
        except CameraError:
            if not live or number == 0 and failures == 0:
                raise  # a source that never opened is reported at once
        if not live:
            if number == 0:
                raise CameraError(f"video {source!r} opened but holds no readable frames")
            return
        if max_frames is not None and yielded >= max_frames:
            return
        failures += 1
        if failures > retries:
            raise CameraError(
                f"camera {source!r} stopped delivering frames after {number} frames; retried {retries} times"
            )
        log.warning("camera %r returned no frame; reopening (%d/%d)", source, failures, retries)
        time.sleep(retry_delay * 2 ** (failures - 1))
