"""Mixed precision (train.precision): float16 arithmetic during training, a float32 encoder in the
run folder. These machines have no GPU, so ``--precision mixed`` is forced here: TensorFlow runs the
same float16 graph on the CPU (slowly), which checks everything but the GPU's kernels and speed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FLOWERS, TINY_TRAIN_ARGS, WEIGHTS
from train.__main__ import main as train_main
from train.layout import CONFIG_FILE, HISTORY_FILE, METRICS_FILE
from train.precision import compute_policy, float32_encoder, resolve_precision
from train.run_folder import open_run


def test_auto_is_mixed_only_with_a_gpu():
    assert resolve_precision("auto", has_gpu=False) == "float32"
    assert resolve_precision("auto", has_gpu=True) == "mixed"
    assert resolve_precision("float32", has_gpu=True) == "float32"
    assert resolve_precision("mixed", has_gpu=False) == "mixed"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("bfloat16")


def test_policy_is_put_back_even_after_an_error():
    import keras

    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError):
        with compute_policy("mixed"):
            assert keras.config.dtype_policy().name == "mixed_float16"
            raise RuntimeError("stage failed")
    assert keras.config.dtype_policy().name == before


def test_mixed_tower_computes_in_float16_and_ends_in_float32():
    import keras

    from train.model import NORMALIZE_LAYER, build_tower

    with compute_policy("mixed"):
        tower = build_tower(32, 8, "none", alpha=0.35)
    conv = tower.backbone.get_layer("Conv1")
    assert (conv.compute_dtype, conv.variable_dtype) == ("float16", "float32")
    assert tower.encoder.get_layer(NORMALIZE_LAYER).compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"

    rebuilt = float32_encoder(tower.encoder, "mixed", 32, 0.35)
    assert {layer.compute_dtype for layer in _all_layers(rebuilt)} == {"float32"}
    for trained, copied in zip(tower.encoder.get_weights(), rebuilt.get_weights(), strict=True):
        assert copied.dtype == np.float32 and np.array_equal(trained, copied)
    assert float32_encoder(tower.encoder, "float32", 32, 0.35) is tower.encoder


@pytest.mark.shared
@pytest.mark.skipif(not (FLOWERS.is_dir() and WEIGHTS.is_file()), reason="needs ../shared data and weights")
def test_float16_arithmetic_barely_moves_real_embeddings():
    """With the ImageNet weights, float16 arithmetic and float32 give the same embedding up to
    rounding (measured: max |difference| 0.0045, cosine >= 0.9998 on 16 roses). A random tower is no
    test of this: its errors grow block by block until they swamp the output."""
    from edge.images import read_image
    from train.model import build_tower

    import cv2

    files = sorted((FLOWERS / "roses").glob("*.jpg"))[:8]
    pixels = np.stack([cv2.resize(read_image(f), (224, 224), interpolation=cv2.INTER_AREA) for f in files])
    with compute_policy("mixed"):
        tower = build_tower(224, 128, str(WEIGHTS))
    mixed = np.asarray(tower.encoder(pixels.astype(np.float32)))
    exact = np.asarray(float32_encoder(tower.encoder, "mixed", 224, 1.0)(pixels.astype(np.float32)))
    assert mixed.dtype == np.float32
    assert np.abs(mixed - exact).max() < 0.02
    assert (mixed * exact).sum(axis=1).min() > 0.999


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


@pytest.fixture(scope="module")
def float_and_mixed_runs(tiny_data, tmp_path_factory):
    runs = {}
    for precision in ("float32", "mixed"):
        run = tmp_path_factory.mktemp(f"run-{precision}")
        assert train_main(["--data-dir", str(tiny_data), "--run-dir", str(run), *TINY_TRAIN_ARGS,
                           "--precision", precision]) == 0
        runs[precision] = run
    return runs


def test_mixed_run_trains_like_float32_and_saves_a_float32_encoder(float_and_mixed_runs):
    import keras

    float_run, mixed_run = float_and_mixed_runs["float32"], float_and_mixed_runs["mixed"]
    assert json.loads((mixed_run / CONFIG_FILE).read_text())["precision"] == "mixed"
    assert json.loads((float_run / CONFIG_FILE).read_text())["precision"] == "float32"
    float_history = json.loads((float_run / HISTORY_FILE).read_text())
    mixed_history = json.loads((mixed_run / HISTORY_FILE).read_text())
    for stage in ("stage 1", "stage 2"):
        # Same data, same initial weights, same batches: only float16 rounding separates the losses.
        assert np.isfinite(mixed_history[stage]).all()
        np.testing.assert_allclose(mixed_history[stage], float_history[stage], rtol=0.05)
    assert mixed_history != float_history, "the mixed run must really have computed in float16"

    encoder = keras.models.load_model(open_run(mixed_run).encoder_path)
    assert {layer.compute_dtype for layer in _all_layers(encoder)} == {"float32"}
    metrics = json.loads((mixed_run / METRICS_FILE).read_text())
    # The saved float32 encoder against the embeddings the float16 training computed.
    assert 0 < metrics["encoder_check"]["max_abs_diff"] < 0.15
    for key in ("trained", "baseline_frozen_imagenet"):
        assert 0.0 <= metrics[key]["retrieval"]["precision@5"] <= 1.0


def test_mixed_run_exports_an_int8_bundle(float_and_mixed_runs, tmp_path):
    from edge.bundle import open_bundle
    from edge.layout import SPLIT_DIR
    from export.__main__ import main as export_main

    bundle = tmp_path / "bundle"
    argv = ["--run", str(float_and_mixed_runs["mixed"]), "--bundle", str(bundle), "--calibration-images", "24",
            "--pairs", "200", "--tolerance", "100", "--trees", "8"]
    assert export_main(argv) == 0
    opened = open_bundle(bundle)
    assert opened.manifest.quantization == "int8"
    gallery = opened.gallery()
    assert len(gallery) == len((bundle / SPLIT_DIR / "train.txt").read_text().splitlines())
    assert gallery.info["model_sha256"] == opened.manifest.model_sha256
