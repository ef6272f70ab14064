"""Pre-processing, end-to-end per frame, and cold start / peak RSS of the edge process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import REPO_ROOT
from edge.bundle import open_bundle
from edge.images import read_image
from edge.preprocess import to_model_input
from edge.quant import QuantParams
from edge.search import process_frame

THREADS = 2  # the same for the encoder-only and end-to-end cases, so their ratio is fair


def test_jpeg_decode_and_resize(benchmark, test_image_paths, manifest):
    benchmark.group = "preprocess"
    data = [p.read_bytes() for p in test_image_paths[:50]]
    side = manifest.input.height
    state = {"i": 0}

    def decode_resize():
        state["i"] = (state["i"] + 1) % len(data)
        return to_model_input(read_image(data[state["i"]]), side, side, np.dtype(np.uint8), QuantParams(1.0, 0))

    benchmark.extra_info.update(images=len(data), mean_bytes=int(np.mean([len(d) for d in data])))
    benchmark.pedantic(decode_resize, rounds=100, iterations=1, warmup_rounds=5)


def test_frame_resize(benchmark, video_frames, manifest):
    benchmark.group = "preprocess"
    from edge.images import bgr_frame_to_rgb

    side = manifest.input.height
    frame = video_frames[0]
    benchmark.extra_info.update(frame_shape=list(frame.shape))
    benchmark.pedantic(lambda: to_model_input(bgr_frame_to_rgb(frame), side, side, np.dtype(np.uint8), QuantParams(1.0, 0)),
                       rounds=100, iterations=1, warmup_rounds=5)


def test_encoder_only_bundle(benchmark, bundle_dir, manifest):
    benchmark.group = "end-to-end"
    bundle = open_bundle(bundle_dir, num_threads=THREADS)
    side = manifest.input.height
    batch = to_model_input(np.zeros((side, side, 3), np.uint8), side, side, bundle.encoder.input_dtype,
                           bundle.encoder.input_params)
    benchmark.extra_info.update(threads=THREADS, role="encoder-only")
    benchmark.pedantic(bundle.encoder.run, args=(batch,), rounds=60, iterations=1, warmup_rounds=5)


def test_frame_to_top5(benchmark, bundle_dir, video_frames):
    """Video frame -> embedding -> top-5, through edge.search's own per-frame function."""
    benchmark.group = "end-to-end"
    bundle = open_bundle(bundle_dir, num_threads=THREADS)
    gallery = bundle.gallery()
    state = {"i": 0}

    def one_frame():
        state["i"] = (state["i"] + 1) % len(video_frames)
        return process_frame(bundle, gallery, video_frames[state["i"]], 5)

    benchmark.extra_info.update(threads=THREADS, role="end-to-end", gallery_items=len(gallery),
                                frame_shape=list(video_frames[0].shape))
    benchmark.pedantic(one_frame, rounds=60, iterations=1, warmup_rounds=5)


def _edge_python() -> str:
    edge = REPO_ROOT / ".venv-edge" / "bin" / "python"
    return str(edge) if edge.exists() else sys.executable


def test_cold_start_and_peak_rss(benchmark, bundle_dir, test_image_paths):
    """Process start -> first result printed, in a fresh edge process; peak RSS from wait4 in a
    small launcher (benchmarks/peak_rss.py), which also times the child alone."""
    benchmark.group = "cold-start"
    python = _edge_python()
    command = [python, str(REPO_ROOT / "benchmarks" / "peak_rss.py"), python, "-m", "edge.search",
               "--bundle", str(bundle_dir), "--image", str(test_image_paths[0]), "--json"]
    peaks, child_seconds = [], []

    def start_once():
        output = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
        last = output.strip().splitlines()[-1].split()
        assert '"matches"' in output and last[0] == "PEAK_RSS_KIB" and last[-1] == "0", output[-500:]
        peaks.append(int(last[1]) / 1024.0)
        child_seconds.append(float(last[3]))

    benchmark.pedantic(start_once, rounds=6, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(python=python, peak_rss_mib=float(np.max(peaks)),
                                child_seconds_median=float(np.median(child_seconds)),
                                edge_venv=str(Path(python).parent.parent))
