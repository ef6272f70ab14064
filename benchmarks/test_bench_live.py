"""The live loop: capture-to-result latency of a 30 fps video played in real time, and where a
frame's time goes on the inference thread once resize and colour run on the capture thread.

    make bench PYTEST_ARGS="-k live"       # or BENCH_BUNDLE=... to use another bundle
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.bundle import open_bundle
from edge.images import bgr_frame_to_rgb
from edge.live.loop import LatestFrames, single_threaded_opencv
from edge.live.results import frame_record, identify
from edge.live.sources import open_source
from edge.preprocess import resize_image

THREADS = 2  # as test_bench_pipeline's encoder-only / end-to-end pair, so the ratios compare
CAMERA_FPS = 30.0
SLOW = dict(num_threads=1, use_xnnpack=False)  # the "slowed encoder": a stand-in for a Pi's


@pytest.fixture(scope="session")
def camera_video(test_image_paths) -> Path:
    """Six seconds of 640x480 30 fps MJPG made from test photos (each shown for 3 frames)."""
    video = Path(tempfile.mkdtemp(prefix="bench-live-")) / "camera30.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), CAMERA_FPS, (640, 480))
    for path in test_image_paths[:60]:
        frame = cv2.resize(cv2.imread(str(path)), (640, 480))
        for _ in range(3):
            writer.write(frame)
    writer.release()
    return video


def _median_ms(function, rounds: int = 30) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


@pytest.fixture
def opencv_as_live():
    """OpenCV single-threaded as edge.search --camera runs it, restored afterwards for the others."""
    previous = cv2.getNumThreads()
    single_threaded_opencv()
    yield
    cv2.setNumThreads(previous)


def test_live_latency_realtime_30fps_slow_encoder(benchmark, bundle_dir, camera_video, opencv_as_live):
    """The video paced at 30 fps through the latest-frame loop, encoder on 1 thread without
    XNNPACK. Capture-to-result latency must stay under encoder time + one frame interval."""
    benchmark.group = "live"
    bundle = open_bundle(bundle_dir, **SLOW)
    gallery = bundle.gallery()
    encoder = bundle.encoder
    batch = np.zeros((1, encoder.manifest.input.height, encoder.manifest.input.width, 3), encoder.input_dtype)
    encoder_ms = _median_ms(lambda: encoder.run(batch))
    latencies, numbers, parts = [], [], []

    def play():
        latencies.clear(), numbers.clear(), parts.clear()
        with LatestFrames(open_source(str(camera_video), realtime=True), encoder.prepare_frame) as frames:
            for frame in frames:
                received = time.time()
                vector = encoder.embed_rgb(frame.prepared)
                embedded = time.time()
                answer = identify(gallery, vector, 5)
                record = frame_record(frame.number, frame.captured, answer)
                done = frame.captured + record["latency_ms"] / 1000.0
                latencies.append(record["latency_ms"])
                numbers.append(frame.number)
                # capture thread (retrieve + resize + colour), hand-over, embed, search; ms
                parts.append([frame.ready - frame.captured, received - frame.ready, embedded - received, done - embedded])

    benchmark.pedantic(play, rounds=1, iterations=1)
    interval_ms = 1000.0 / CAMERA_FPS
    p50, p95 = (float(np.percentile(latencies, q)) for q in (50, 95))
    encoder_after_ms = _median_ms(lambda: encoder.run(batch))
    benchmark.extra_info.update(
        role="live-latency", threads=1, xnnpack=False, camera_fps=CAMERA_FPS, frames_in_video=180,
        frames_processed=len(numbers), frames_skipped=numbers[-1] + 1 - len(numbers),
        encoder_ms=encoder_ms, encoder_after_ms=encoder_after_ms, latency_p50_ms=p50, latency_p95_ms=p95,
        latency_max_ms=float(np.max(latencies)), bound_ms=max(encoder_ms, encoder_after_ms) + interval_ms,
        **{f"{name}_p50_ms": float(np.median(column)) * 1000.0 for name, column in
           zip(("prepare", "handover", "embed", "search"), np.array(parts).T)},
        **{f"{name}_p95_ms": float(np.percentile(column, 95)) * 1000.0 for name, column in
           zip(("prepare", "handover", "embed", "search"), np.array(parts).T)})
    assert numbers == sorted(numbers) and len(numbers) >= 10


def _live_parts(bundle_dir, video_frames):
    bundle = open_bundle(bundle_dir, num_threads=THREADS)
    return bundle.encoder, bundle.gallery(), video_frames


def test_live_inference_thread_per_frame(benchmark, bundle_dir, video_frames):
    """What the inference thread does per frame in the live loop: the frame arrives resized and
    in RGB from the capture thread; embed (invoke + normalise) + top-5."""
    benchmark.group = "end-to-end"
    encoder, gallery, frames = _live_parts(bundle_dir, video_frames)
    prepared = [encoder.prepare_frame(frame) for frame in frames]
    state = {"i": 0}

    def one_frame():
        state["i"] = (state["i"] + 1) % len(prepared)
        return identify(gallery, encoder.embed_rgb(prepared[state["i"]]), 5)

    benchmark.extra_info.update(threads=THREADS, role="live-inference", gallery_items=len(gallery))
    benchmark.pedantic(one_frame, rounds=60, iterations=1, warmup_rounds=5)


@pytest.mark.parametrize("part", ["grab", "read", "resize", "colour", "search"])
def test_frame_part(benchmark, bundle_dir, video_frames, camera_video, part):
    """Where a frame's time goes outside the interpreter (invoke is test_encoder_only_bundle):
    grab vs read (grab + retrieve) of a 640x480 MJPG frame, the INTER_AREA resize to the model
    size, BGR -> RGB of the resized image, and the top-5 search."""
    benchmark.group = "frame-parts"
    encoder, gallery, frames = _live_parts(bundle_dir, video_frames)
    side = encoder.manifest.input.height
    small = [resize_image(f, side, side) for f in frames]
    vector = encoder.embed_frame(frames[0])
    state = {"i": 0}
    capture = cv2.VideoCapture(str(camera_video))

    def step():
        state["i"] = (state["i"] + 1) % len(frames)
        return state["i"]

    actions = {
        "grab": lambda: capture.grab() or capture.set(cv2.CAP_PROP_POS_FRAMES, 0),
        "read": lambda: capture.read()[0] or capture.set(cv2.CAP_PROP_POS_FRAMES, 0),
        "resize": lambda: resize_image(frames[step()], side, side),
        "colour": lambda: bgr_frame_to_rgb(small[step()]),
        "search": lambda: gallery.search(vector, 5),
    }
    benchmark.extra_info.update(part=part, frame_shape=list(frames[0].shape), model_side=side, threads=THREADS)
    try:
        benchmark.pedantic(actions[part], rounds=100, iterations=1, warmup_rounds=5)
    finally:
        capture.release()
