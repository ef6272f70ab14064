"""Encoder latency per image (interpreter only, input already prepared): precision x threads x XNNPACK."""

from __future__ import annotations

import numpy as np
import pytest

from edge.encoder import Encoder
from edge.interpreter import InterpreterError
from export.pipeline import draft_manifest

CASES = [
    ("int8@224", 1, True), ("int8@224", 2, True), ("float32@224", 1, True), ("float32@224", 2, True),
    ("float16@224", 1, True), ("float16@224", 2, True), ("int8@224", 1, False), ("float32@224", 1, False),
    ("int8@160", 1, True), ("int8@160", 2, True),
]


def _encoder(path, name: str, threads: int, xnnpack: bool) -> Encoder:
    mode, size = name.split("@")
    return Encoder(path, draft_manifest(path, mode, int(size)), num_threads=threads, use_xnnpack=xnnpack)


@pytest.mark.parametrize("variant, threads, xnnpack", CASES, ids=[f"{v}-t{t}-{'xnnpack' if x else 'noxnnpack'}" for v, t, x in CASES])
def test_encoder_latency(benchmark, model_variants, variant, threads, xnnpack):
    benchmark.group = "encoder"
    try:
        encoder = _encoder(model_variants[variant], variant, threads, xnnpack)
    except InterpreterError as error:
        pytest.skip(f"interpreter cannot run this variant: {error}")
    spec = encoder.manifest.input
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(spec.height, spec.width, 3)).astype(np.uint8)
    from edge.preprocess import to_model_input

    batch = to_model_input(pixels, spec.height, spec.width, encoder.input_dtype, encoder.input_params)
    benchmark.extra_info.update(variant=variant, threads=threads, xnnpack=xnnpack,
                                model_bytes=model_variants[variant].stat().st_size)
    benchmark.pedantic(encoder.run, args=(batch,), rounds=40, iterations=1, warmup_rounds=5)
