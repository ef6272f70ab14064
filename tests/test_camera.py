"""Camera input through real OpenCV captures: video files stand in for cameras."""

import cv2
import numpy as np
import pytest

from edge.camera import CameraError, parse_source, read_frames


def _video(path, count=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for i in range(count):
        writer.write(np.full((24, 32, 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_every_nth_frame_and_max_frames(tmp_path):
    video = _video(tmp_path / "v.avi")
    assert [n for n, _ in read_frames(str(video), every=3)] == [0, 3, 6, 9]
    assert [n for n, _ in read_frames(str(video), max_frames=2)] == [0, 1]
    frame = next(read_frames(str(video)))[1]
    assert frame.shape == (24, 32, 3) and frame.dtype == np.uint8


def test_parse_source():
    assert parse_source("0") == 0 and parse_source(None) == 0 and parse_source("/dev/video2") == "/dev/video2"


def test_camera_that_dies_mid_stream_is_retried_then_reported(tmp_path):
    """A live source whose device disappears: frames already read are kept, reopening is retried
    a bounded number of times, then a clear CameraError says how far it got."""
    video = _video(tmp_path / "cam.avi", count=5)
    frames = read_frames(str(video), live=True, retries=2, retry_delay=0.01)
    seen = [next(frames)[0]]
    video.unlink()  # the "camera" is unplugged; the open capture still drains its buffer
    with pytest.raises(CameraError, match=r"stopped delivering frames after 5 frames; retried 2 times"):
        for number, _ in frames:
            seen.append(number)
    assert seen == [0, 1, 2, 3, 4]


def test_missing_device_fails_at_once():
    with pytest.raises(CameraError, match="could not open camera 7"):
        next(read_frames(7, retries=5, retry_delay=10))
