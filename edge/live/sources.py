"""Where live frames come from: an OpenCV capture, the Pi camera, or a video played in real time.

``open_source("0")`` is a webcam, ``"/dev/video2"`` a V4L2 device, ``"picam"`` the CSI camera
through picamera2, ``"clip.mp4"`` a video file read as fast as it is consumed (every frame, in
order), and ``"clip.mp4"`` with ``realtime=True`` the same file paced at its own frame rate and
treated like a camera: frames the loop is too busy for are grabbed and dropped.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Iterator

import cv2

from edge.camera import Opener, is_live, open_camera, parse_source
from edge.live.picam import DEFAULT_SIZE, PICAM, open_picamera


@dataclass(frozen=True)
class Source:
    """A frame source and how the loop treats it.

    Attributes:
      name: what the user passed (device index, path or "picam").
      opener: ``opener(name)`` -> context manager yielding a capture with grab()/retrieve().
      live: a camera: reopened a bounded number of times when it stops (edge.camera's retry).
      drop: frames arriving while inference is busy are grabbed and dropped (cameras and paced
        videos); False keeps every due frame, in order (a video file read as fast as consumed).
    """

    name: int | str
    opener: Opener
    live: bool
    drop: bool


def open_source(text: str | int | None, realtime: bool = False, size: tuple[int, int] = DEFAULT_SIZE,
                picam_module: Any = None) -> Source:
    """Parses ``--camera``'s value into a Source (nothing is opened yet)."""
    name = parse_source(text)
    if name == PICAM:
        return Source(name, partial(open_picamera, size=size, module=picam_module), live=True, drop=True)
    live = is_live(name)
    if realtime and not live:
        return Source(name, open_paced, live=False, drop=True)
    return Source(name, open_camera, live=live, drop=live)


class PacedCapture:
    """A video capture whose grab() returns no sooner than the frame's time in the video, as a
    camera would deliver it (frame n at start + n / fps, on the wall clock)."""

    def __init__(self, capture: cv2.VideoCapture, fps: float | None = None):
        self.capture = capture
        rate = fps or capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.interval = 1.0 / (rate if 0 < rate < 1000 else 30.0)
        self.frames = 0
        self.started: float | None = None

    def grab(self) -> bool:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        due = self.started + self.frames * self.interval
        if due > now:
            time.sleep(due - now)
        self.frames += 1
        return self.capture.grab()

    def retrieve(self) -> tuple[bool, Any]:
        return self.capture.retrieve()


@contextmanager
def open_paced(source: int | str, fps: float | None = None) -> Iterator[PacedCapture]:
    """open_camera for a video file, paced at ``fps`` (default: the file's own rate)."""
    with open_camera(source) as capture:
        yield PacedCapture(capture, fps)
