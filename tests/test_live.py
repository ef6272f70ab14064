"""The latest-frame loop, the picamera2 source and gallery hot reload, on real video through
cv2.VideoCapture, the real tiny int8 bundle and real gallery versions."""

import json
import sys
import threading
import time
import types
from contextlib import contextmanager

import cv2
import numpy as np
import pytest

from conftest import CLASS_STYLES, synthetic_image, write_rgb
from edge.camera import CameraError, open_camera, read_frames
from edge.live.loop import LatestFrames
from edge.live.picam import INSTALL_HINT, PICAM
from edge.live.sources import Source, open_paced, open_source
from edge.search import main as search_main


def _video(path, count=12, size=(64, 48), fps=10.0):
    """A real MJPG video whose frame i is a distinct synthetic image (so frames can be told apart)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    styles = list(CLASS_STYLES.values())
    for i in range(count):
        writer.write(cv2.resize(cv2.cvtColor(synthetic_image(styles[i % len(styles)], seed=i), cv2.COLOR_RGB2BGR), size))
    writer.release()
    return path


class Counting:
    """Wraps a real capture and counts grabs and retrieves (decodes)."""

    def __init__(self, capture):
        self.capture, self.grabs, self.retrieves = capture, 0, 0
        self.grabbed_at: list[float] = []  # when each grab returned

    def grab(self):
        self.grabs += 1
        ok = self.capture.grab()
        self.grabbed_at.append(time.time())
        return ok

    def retrieve(self):
        self.retrieves += 1
        return self.capture.retrieve()


def test_video_file_yields_every_nth_frame_in_order_prepared_on_the_capture_thread(tmp_path):
    video = _video(tmp_path / "v.avi", count=10)
    threads = []

    def prepare(image):
        threads.append(threading.current_thread().name)
        return cv2.resize(image, (8, 8))

    with LatestFrames(open_source(str(video)), prepare, every=3) as frames:
        got = list(frames)
    assert [f.number for f in got] == [0, 3, 6, 9]
    expected = [frame for _, frame in read_frames(str(video), every=3)]
    assert all(np.array_equal(f.image, e) for f, e in zip(got, expected))
    assert all(f.prepared.shape == (8, 8, 3) for f in got) and set(threads) == {"edge-capture"}
    assert all(abs(time.time() - f.captured) < 60 for f in got)


def test_busy_consumer_gets_the_newest_frame_and_skipped_frames_are_not_decoded(tmp_path):
    """A video paced like a 25 fps camera, a consumer that takes 3 frame intervals per frame."""
    video = _video(tmp_path / "v.avi", count=40, fps=25.0)
    counters = []

    @contextmanager
    def opener(name):
        with open_paced(name) as paced:
            counters.append(Counting(paced))
            yield counters[-1]

    got = []
    with LatestFrames(Source(str(video), opener, live=False, drop=True)) as frames:
        for frame in frames:
            got.append(frame)
            time.sleep(0.12)
    counter, numbers = counters[0], [frame.number for frame in got]
    assert counter.grabs == 41  # 40 frames and the grab that found the end
    assert counter.retrieves == len(numbers) < 20  # only frames handed over were decoded
    # Which frame comes first depends on when the consumer first asks (a loaded machine starts it
    # late); the order and the skipping do not.
    assert numbers == sorted(set(numbers)) and numbers[0] <= 5
    assert max(np.diff(numbers)) >= 2  # frames were skipped while the consumer was busy
    # Handed over as the newest frame: no frame was grabbed after it before it was ready (an
    # older frame never waits in the slot while a newer one exists). Measured at the handover,
    # not when the consumer thread happens to be scheduled.
    behind = [sum(t <= frame.ready for t in counter.grabbed_at) - 1 - frame.number for frame in got]
    assert behind == [0] * len(got)


def test_live_camera_that_dies_mid_stream_is_reported_after_bounded_reopens(tmp_path):
    video = _video(tmp_path / "cam.avi", count=5)
    source = Source(str(video), open_camera, live=True, drop=False)
    seen = []
    with LatestFrames(source, retries=2, retry_delay=0.01) as frames:
        iterator = iter(frames)
        seen.append(next(iterator).number)
        video.unlink()  # unplugged: the open capture drains its buffer, reopening fails
        with pytest.raises(CameraError, match=r"stopped delivering frames after 5 frames; retried 2 times"):
            for frame in iterator:
                seen.append(frame.number)
    assert seen == [0, 1, 2, 3, 4]


def _fake_picamera2(video, log, interval=0.0):
    """A stand-in for the picamera2 module: the real API's shape, real decoded video frames
    (``interval`` seconds per capture_request, like a camera's frame interval)."""

    class Request:
        def __init__(self, frame):
            self.frame = frame

        def make_array(self, name):
            assert name == "main"
            log["arrays"] += 1
            return self.frame.copy()

        def release(self):
            log["released"] += 1

    class Picamera2:
        def __init__(self, camera_num=0):
            self.capture = cv2.VideoCapture(str(video))
            log["opened"] += 1

        def create_video_configuration(self, main=None, **kwargs):
            return {"use_case": "video", "main": dict(main or {})}

        def configure(self, config):
            log["config"] = config

        def start(self):
            log["started"] += 1

        def capture_request(self):
            time.sleep(interval)
            ok, frame = self.capture.read()
            if not ok:
                raise RuntimeError("Camera frontend has timed out!")
            log["requests"] += 1
            return Request(frame)

        def stop(self):
            log["stopped"] += 1

        def close(self):
            self.capture.release()
            log["closed"] += 1

    return types.SimpleNamespace(Picamera2=Picamera2)


def _picam_log():
    return dict.fromkeys(["opened", "started", "stopped", "closed", "requests", "arrays", "released"], 0)


def test_picamera2_source_delivers_the_cameras_frames_and_releases_every_request(tmp_path):
    """A camera source drops frames while the consumer is busy, so which due frames arrive depends
    on timing (a loaded CI machine skips some): the stand-in is paced like a 100 fps camera and has
    frames to spare, and the test checks what holds whatever the timing."""
    video = _video(tmp_path / "v.avi", count=40)
    log = _picam_log()
    source = open_source(PICAM, size=(64, 48), picam_module=_fake_picamera2(video, log, interval=0.01))
    assert source.live and source.drop
    with LatestFrames(source, every=2, max_frames=3) as frames:
        got = [(f.number, f.image) for f in frames]
    expected = dict(read_frames(str(video)))
    numbers = [n for n, _ in got]
    assert len(numbers) == 3 and numbers == sorted(set(numbers)) and all(n % 2 == 0 for n in numbers)
    assert all(np.array_equal(image, expected[n]) for n, image in got)  # the camera's own frames
    assert log["config"]["main"] == {"size": (64, 48), "format": "RGB888"}
    # every request is released; only the frames handed over are copied out of the camera's buffers
    assert log["requests"] == log["released"] >= numbers[-1] + 1 and log["arrays"] == 3
    assert log["started"] == log["stopped"] == log["closed"] == log["opened"] == 1


def test_search_camera_picam_through_the_cli(tiny_bundle, tmp_path, capsys, monkeypatch):
    video = _video(tmp_path / "v.avi", count=60)
    log = _picam_log()
    monkeypatch.setitem(sys.modules, "picamera2", _fake_picamera2(video, log))
    argv = ["--bundle", str(tiny_bundle), "--camera", "picam", "--headless", "--json", "--max-frames", "3"]
    assert search_main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and all(line["matches"] for line in lines)
    # The open-set decision is the top-1 label or None (unknown); never another label.
    assert all(line["label"] in (None, line["matches"][0]["label"]) and line["latency_ms"] >= 0 for line in lines)
    # the stand-in delivers frames faster than a camera: it may run dry and be reopened (a live
    # camera's retry); every camera opened is stopped and closed
    assert log["opened"] == log["started"] == log["stopped"] == log["closed"] >= 1


def test_picam_without_picamera2_names_the_apt_package_and_the_venv_flag(tiny_bundle, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    assert search_main(["--bundle", str(tiny_bundle), "--camera", "picam", "--headless"]) == 2
    err = capsys.readouterr().err
    assert "python3-picamera2" in err and "--system-site-packages" in err and "Traceback" not in err
    assert "python3-picamera2" in INSTALL_HINT


def test_running_search_sees_labels_enrolled_after_it_started(bundle_copy, tmp_path, capsys, monkeypatch):
    """A video as the camera; after 4 frames capture pauses, a new label is enrolled with the
    gallery CLI (a new version goes live), capture resumes: the remaining frames, which are the
    enrolled images, find it. Every frame is processed once, in order."""
    from edge.gallery.__main__ import main as gallery_main
    import edge.live.run

    styles = list(CLASS_STYLES.values())
    images = [np.roll(synthetic_image(styles[0], seed=900 + i, size=48), 12 * i, axis=1) for i in range(4)]
    frames = [synthetic_image(styles[i % len(styles)], seed=i, size=48) for i in range(4)] + images
    video = tmp_path / "cam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (48, 48))
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    decoded = [cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) for _, frame in read_frames(str(video))]
    paths = [write_rgb(tmp_path / f"new{i}.png", rgb) for i, rgb in enumerate(decoded[4:])]
    paused, resume = threading.Event(), threading.Event()

    class Gated(Counting):
        def grab(self):
            if self.grabs == 4:
                paused.set()
                assert resume.wait(60)
            return super().grab()

    @contextmanager
    def gated(name):
        with open_camera(name) as capture:
            yield Gated(capture)

    monkeypatch.setattr(edge.live.run, "open_source", lambda text, realtime=False: Source(text, gated, False, False))
    result = {}
    runner = threading.Thread(target=lambda: result.update(code=search_main(
        ["--bundle", str(bundle_copy), "--camera", str(video), "--headless", "--json", "--k", "1", "--exact"])))
    runner.start()
    try:
        assert paused.wait(60)
        time.sleep(0.3)  # frames 0-3 are searched in the old gallery
        assert gallery_main(["add", "--bundle", str(bundle_copy), "--label", "newthing", *map(str, paths)]) == 0
        time.sleep(2.5)  # the watcher polls CURRENT once a second
    finally:
        resume.set()
        runner.join(60)
    assert result == {"code": 0}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["query"] for line in lines] == list(range(8))
    assert [line["label"] for line in lines[:4]].count("newthing") == 0
    assert [line["label"] for line in lines[4:]] == ["newthing"] * 4
