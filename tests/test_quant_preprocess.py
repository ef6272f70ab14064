"""Quantisation maths and model-input preparation."""

import numpy as np

from edge.preprocess import resize_image, shrink_to_short_side, to_model_input
from edge.quant import NOT_QUANTIZED, QuantParams, dequantize, params_of, quantize


def test_quantize_exact_values_and_clipping():
    params = QuantParams(scale=0.5, zero_point=-10)
    q = quantize(np.array([0.0, 1.0, -1.0, 1000.0, -1000.0]), params, np.int8)
    assert q.tolist() == [-10, -8, -12, 127, -128]
    assert dequantize(q[:3], params).tolist() == [0.0, 1.0, -1.0]


def test_uint8_pixels_with_unit_scale_pass_unchanged():
    pixels = np.arange(256, dtype=np.float32)
    assert np.array_equal(quantize(pixels, QuantParams(1.0, 0), np.uint8), np.arange(256, dtype=np.uint8))
    # int8 input of the same model means pixel - 128
    assert quantize(pixels, QuantParams(1.0, -128), np.int8)[[0, 128, 255]].tolist() == [-128, 0, 127]


def test_float_tensors_pass_through():
    assert not NOT_QUANTIZED.is_quantized
    values = np.array([0.25, 7.5])
    assert quantize(values, NOT_QUANTIZED, np.float32).dtype == np.float32
    assert dequantize(values, NOT_QUANTIZED).tolist() == [0.25, 7.5]
    assert params_of({"quantization": (0.0, 0)}) == NOT_QUANTIZED


def test_to_model_input_shape_and_dtype():
    rgb = np.full((50, 80, 3), 200, np.uint8)
    batch = to_model_input(rgb, 32, 32, np.dtype(np.uint8), QuantParams(1.0, 0))
    assert batch.shape == (1, 32, 32, 3) and batch.dtype == np.uint8 and int(batch.max()) == 200
    batch = to_model_input(rgb, 24, 24, np.dtype(np.float32), NOT_QUANTIZED)
    assert batch.dtype == np.float32 and float(batch.max()) == 200.0


def test_resize_rules():
    rgb = np.zeros((100, 300, 3), np.uint8)
    assert resize_image(rgb, 32, 32).shape == (32, 32, 3)  # squash: aspect not kept
    assert shrink_to_short_side(rgb, 50).shape == (50, 150, 3)
    assert shrink_to_short_side(rgb, 500) is rgb  # never enlarges
