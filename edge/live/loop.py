"""The latest-frame loop: capture on its own thread beside inference, newest frame wins.

    with LatestFrames(open_source("0"), prepare=encoder.prepare_frame) as frames:
        for frame in frames:          # Frame(number, captured, image, prepared)
            ...                       # inference on frame.prepared

For a camera (``Source.drop``) the capture thread grabs every frame but decodes one only when the
inference thread is waiting for it, so each result belongs to the newest frame (at most one frame
interval old when inference starts) and frames nobody will look at are never decoded. For a video
file read as fast as it is consumed, every due frame is decoded and handed over in order (one
frame prepared ahead, so decoding overlaps inference). Resizing and colour conversion
(``prepare``) run on the capture thread too, off the inference thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from edge.camera import grab_frames
from edge.live.sources import Source


@dataclass(frozen=True)
class Frame:
    """One captured frame: its number in the stream, when its grab returned and when it was
    prepared (unix seconds), the BGR image, and ``prepare(image)`` (None without a prepare function)."""

    number: int
    captured: float
    image: np.ndarray
    prepared: Any = None
    ready: float = 0.0


def single_threaded_opencv() -> None:
    """OpenCV's own thread pool off: the capture thread's resize then runs on one core beside the
    interpreter instead of spreading over the cores the interpreter is using (benchmarks/
    test_bench_live.py measures the loop this way; README, "Live camera", has the numbers)."""
    cv2.setNumThreads(1)


class _Stopped(Exception):
    """Raised inside the capture thread's frame generator to end it (and release the device)."""


class LatestFrames:
    """Iterates Frames from a capture thread; a context manager that always stops the thread."""

    def __init__(self, source: Source, prepare: Callable[[np.ndarray], Any] | None = None, every: int = 1,
                 max_frames: int | None = None, retries: int = 3, retry_delay: float = 0.5):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.source, self.prepare, self.every, self.max_frames = source, prepare, every, max_frames
        self.retries, self.retry_delay = retries, retry_delay
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._waiting = False
        self._stopped = False
        self._finished = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._capture, name="edge-capture", daemon=True)

    def __enter__(self) -> "LatestFrames":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            with self._cond:
                self._waiting = True
                while self._slot is None and not self._finished:
                    self._cond.wait(0.5)
                frame, self._slot = self._slot, None
                self._waiting = False
                self._cond.notify_all()
                if frame is None:
                    if self._error is not None:
                        raise self._error
                    return
            yield frame

    def _wanted(self) -> bool:
        """Asked by the capture thread after each grab: decode this one?"""
        if self._stopped:
            raise _Stopped
        return not self.source.drop or (self._waiting and self._slot is None)

    def _capture(self) -> None:
        try:
            frames = grab_frames(self.source.name, self.every, self.max_frames, self.retries, self.retry_delay,
                                 live=self.source.live, opener=self.source.opener, wanted=self._wanted)
            try:
                for number, captured, image in frames:
                    prepared = self.prepare(image) if self.prepare else None
                    frame = Frame(number, captured, image, prepared, time.time())
                    with self._cond:
                        while self._slot is not None and not self._stopped:  # in order: wait for the consumer
                            self._cond.wait(0.5)
                        if self._stopped:
                            return
                        self._slot = frame
                        self._cond.notify_all()
            finally:
                frames.close()  # releases the device now, not at garbage collection
        except _Stopped:
            pass
        except BaseException as error:  # handed to the consumer, raised from __iter__
            self._error = error
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()
