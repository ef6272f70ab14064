"""The timed parts of the device benchmark: encoder, frame -> top-K, gallery search.

Same definitions as the workstation benchmarks (benchmarks/test_bench_*.py): seeded inputs,
warm-up calls, then a fixed number of timed calls with time.perf_counter; the median is reported.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edge.bundle import Bundle, open_bundle
from edge.gallery.index import DEFAULT_SEARCH_K, EXACT_SEARCH_MAX_ITEMS, Gallery
from edge.preprocess import to_model_input

SEARCH_TOP = 10  # as benchmarks/test_bench_search.py: top-10, recall@10 against exact
QUERY_NOISE = 0.5  # norm of the seeded noise added to a gallery item to make a query (cosine ~0.89)


def median_ms(function: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median wall milliseconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000.0


def interleaved_median_ms(calls: dict[str, Callable[[int], object]], inputs: int, repeats: int,
                          warmup: int) -> dict[str, float]:
    """Median milliseconds of each ``calls[name](i)``, the cases taking turns in every round;
    ``i`` cycles through ``range(inputs)`` (a new frame each round)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_number in range(warmup + repeats):
        i = round_number % inputs
        for name, call in calls.items():
            start = time.perf_counter()
            call(i)
            if round_number >= warmup:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1000.0 for name, values in samples.items()}


def model_batch(bundle: Bundle, seed: int = 0) -> np.ndarray:
    """A seeded random image as the encoder's prepared (1, H, W, 3) input."""
    encoder, spec = bundle.encoder, bundle.manifest.input
    pixels = np.random.default_rng(seed).integers(0, 256, size=(spec.height, spec.width, 3)).astype(np.uint8)
    return to_model_input(pixels, spec.height, spec.width, encoder.input_dtype, encoder.input_params)


def variant_name(bundle: Bundle) -> str:
    """"int8@224": quantisation and input size, as RESULTS.md names encoder variants."""
    return f"{bundle.manifest.quantization}@{bundle.manifest.input.height}"


def encoder_rows(path: Path, threads: Sequence[int], repeats: int, warmup: int, xnnpack_off: bool = False,
                 seed: int = 0, progress: Callable[[str], None] = lambda _: None) -> list[dict]:
    """Interpreter-only latency (input already prepared) for each thread count, XNNPACK on; with
    ``xnnpack_off`` also 1 thread without it."""
    cases = [(t, True) for t in threads] + ([(1, False)] if xnnpack_off else [])
    rows = []
    for count, xnnpack in cases:
        progress(f"encoder, {count} thread(s), XNNPACK {'on' if xnnpack else 'off'}")
        bundle = open_bundle(path, num_threads=count, use_xnnpack=xnnpack)
        batch = model_batch(bundle, seed)
        ms = median_ms(lambda: bundle.encoder.run(batch), repeats, warmup)
        model = Path(path) / bundle.manifest.model_file
        rows.append({"variant": variant_name(bundle), "threads": count, "xnnpack": xnnpack, "median_ms": ms,
                     "images_per_s": 1000.0 / ms, "model_mb": model.stat().st_size / 1e6})
    return rows


def end_to_end(bundle: Bundle, gallery: Gallery, frames: Sequence[np.ndarray], k: int, repeats: int, warmup: int,
               threads: int | None = None, seed: int = 0) -> dict:
    """A BGR frame -> prepare (resize + colour) -> encoder -> gallery.identify top-k, against the
    encoder alone, and each part on its own (as edge.search does per frame; its live loop runs
    prepare on the capture thread, so "inference thread" is embed + identify). The cases take turns
    call by call, so a load that comes and goes on a shared machine falls on all of them alike and
    their ratios stay fair; each is still the median of its own ``repeats`` calls."""
    encoder = bundle.encoder
    batch = model_batch(bundle, seed)
    prepared = [encoder.prepare_frame(f) for f in frames]
    vectors = [encoder.embed_rgb(p) for p in prepared]
    calls = {
        "encoder_only_ms": lambda i: encoder.run(batch),
        "end_to_end_ms": lambda i: gallery.identify(encoder.embed_rgb(encoder.prepare_frame(frames[i])), k),
        "inference_thread_ms": lambda i: gallery.identify(encoder.embed_rgb(prepared[i]), k),
        "prepare": lambda i: encoder.prepare_frame(frames[i]),
        "embed": lambda i: encoder.embed_rgb(prepared[i]),
        "search": lambda i: gallery.identify(vectors[i], k),
    }
    measured = interleaved_median_ms(calls, len(frames), repeats, warmup)
    times = {name: measured[name] for name in ("encoder_only_ms", "end_to_end_ms", "inference_thread_ms")}
    parts = {name: measured[name] for name in ("prepare", "embed", "search")}
    return {**times, "ratio": times["end_to_end_ms"] / times["encoder_only_ms"],
            "live_ratio": times["inference_thread_ms"] / times["encoder_only_ms"], "parts_ms": parts,
            "threads": threads, "k": k, "frame_shape": list(frames[0].shape), "frames": len(frames), "gallery_items": len(gallery)}


def search_queries(gallery: Gallery, count: int, seed: int = 0) -> np.ndarray:
    """Seeded queries near the gallery: random items plus noise of norm QUERY_NOISE, unit length."""
    rng = np.random.default_rng(seed)
    vectors = gallery.vectors
    noise = rng.normal(size=(count, vectors.shape[1])).astype(np.float32)
    noise *= QUERY_NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
    queries = vectors[rng.integers(0, len(vectors), count)] + noise
    return (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int = SEARCH_TOP) -> np.ndarray:
    """The exact top-k by cosine (benchmarks/test_bench_search.py's definition)."""
    scores = vectors @ query
    if k >= len(scores):
        return np.argsort(-scores)
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def annoy_status(gallery: Gallery) -> str:
    """Why Annoy is or is not measured."""
    from edge.gallery import store

    if store.AnnoyIndex is None:
        return "annoy is not installed (pip extra 'ann'): exact search only"
    if gallery.index is None:
        return "the gallery has no Annoy index: exact search only"
    return f"Annoy index with {gallery.info.get('trees')} trees"


def search_rows(gallery: Gallery, queries: int, repeats: int, warmup: int, seed: int = 0) -> dict:
    """Top-10 latency of one query over the bundle's own gallery: exact numpy, and Annoy at the
    gallery's search_k and at -1 (trees * k) when the gallery has an index; recall@10 vs exact."""
    vectors = gallery.vectors
    if len(vectors) == 0:
        return {"items": 0, "annoy": annoy_status(gallery), "default_method": "none (empty gallery)", "rows": []}
    wanted = search_queries(gallery, queries, seed)
    truth = [set(exact_top(vectors, q).tolist()) for q in wanted]
    top = min(SEARCH_TOP, len(vectors))
    state = {"i": 0}

    def next_query() -> np.ndarray:
        state["i"] = (state["i"] + 1) % len(wanted)
        return wanted[state["i"]]

    rows = [{"items": len(vectors), "method": "exact", "trees": None, "search_k": None, "recall_at_10": 1.0,
             "median_ms": median_ms(lambda: exact_top(vectors, next_query()), repeats, warmup)}]
    if gallery.index is not None:
        gallery_k = int(gallery.info.get("search_k", DEFAULT_SEARCH_K))
        for search_k in dict.fromkeys((gallery_k, -1)):
            found = [set(gallery.index.get_nns_by_vector(q, top, search_k=search_k)) for q in wanted]
            recall = float(np.mean([len(f & t) / len(t) for f, t in zip(found, truth)]))
            ms = median_ms(lambda: gallery.index.get_nns_by_vector(next_query(), top, search_k=search_k),
                           repeats, warmup)
            rows.append({"items": len(vectors), "method": "annoy", "trees": gallery.info.get("trees"),
                         "search_k": search_k, "recall_at_10": recall, "median_ms": ms})
    exact_ms = rows[0]["median_ms"]
    for row in rows:
        row["vs_exact"] = row["median_ms"] / exact_ms
    default = "exact" if len(vectors) <= EXACT_SEARCH_MAX_ITEMS or gallery.index is None else "annoy"
    return {"items": len(vectors), "queries": len(wanted), "annoy": annoy_status(gallery),
            "default_method": f"{default} (edge.search's choice for {len(vectors):,} items)", "rows": rows}
