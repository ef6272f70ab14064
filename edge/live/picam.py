"""The Raspberry Pi CSI camera through picamera2 (libcamera), shaped like a cv2.VideoCapture.

    python -m edge.search --bundle B --camera picam --headless --json

picamera2 is not on PyPI in a usable form: it comes from apt (``sudo apt install python3-picamera2``
on Raspberry Pi OS bookworm) and a venv sees it only when made with ``--system-site-packages``
(README, "Raspberry Pi camera"). The "RGB888" format is 24-bit BGR in memory, which is what
OpenCV and ``Encoder.prepare_frame`` expect, so frames need no conversion here.
"""

from __future__ import annotations

import importlib
import logging
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from edge.camera import CameraError

log = logging.getLogger(__name__)

PICAM = "picam"
DEFAULT_SIZE = (640, 480)
INSTALL_HINT = (
    "picamera2 is not importable from this Python. On Raspberry Pi OS: `sudo apt install python3-picamera2`, "
    "then make the venv with `python3 -m venv --system-site-packages VENV` so it sees apt's picamera2 "
    "(README, 'Raspberry Pi camera')"
)


def load_picamera2(module: Any = None) -> Any:
    """The ``Picamera2`` class (from ``module`` when given, for tests), or CameraError with the fix."""
    if module is None:
        try:
            module = importlib.import_module("picamera2")
        except ImportError as error:
            raise CameraError(f"{INSTALL_HINT} ({error})") from error
    return module.Picamera2


class PicamCapture:
    """grab() / retrieve() over a started Picamera2, so the OpenCV frame loop can drive it.

    grab() takes the next completed request from libcamera (no copy); retrieve() copies its main
    stream into a numpy array. A request not retrieved is released at the next grab, so skipped
    frames cost no copy and libcamera never runs out of buffers.
    """

    def __init__(self, camera: Any):
        self.camera = camera
        self._request: Any = None

    def grab(self) -> bool:
        self._release()
        try:
            self._request = self.camera.capture_request()
        except RuntimeError as error:  # picamera2 raises RuntimeError when the camera stops
            log.warning("picamera2 capture failed: %s", error)
            return False
        return self._request is not None

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        if self._request is None:
            return False, None
        try:
            frame = self._request.make_array("main")
        finally:
            self._release()
        return frame is not None, frame

    def _release(self) -> None:
        if self._request is not None:
            request, self._request = self._request, None
            request.release()


@contextmanager
def open_picamera(source: str = PICAM, size: tuple[int, int] = DEFAULT_SIZE, camera_num: int = 0,
                  module: Any = None) -> Iterator[PicamCapture]:
    """Starts the Pi camera in a BGR video configuration of ``size`` and always stops and closes it.

    Raises:
      CameraError: picamera2 is missing (the message names the apt package and the venv flag), or
        libcamera finds no camera / the camera is busy.
    """
    picamera2 = load_picamera2(module)
    try:
        camera = picamera2(camera_num)
    except (RuntimeError, IndexError) as error:
        raise CameraError(f"picamera2 found no usable camera {camera_num} ({error}); check the ribbon cable, "
                          "`rpicam-hello --list-cameras`, and that no other program holds the camera") from error
    try:
        try:
            camera.configure(camera.create_video_configuration(main={"size": tuple(size), "format": "RGB888"}))
            camera.start()
        except RuntimeError as error:
            raise CameraError(f"picamera2 could not start camera {camera_num} at {size[0]}x{size[1]}: {error}") from error
        capture = PicamCapture(camera)
        try:
            yield capture
        finally:
            capture._release()
            camera.stop()
    finally:
        camera.close()
