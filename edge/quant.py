"""Affine quantisation maths, in one place: ``real = scale * (q - zero_point)``.

Mirrors pycoral's ``adapters/common.py``: tiny functions over arrays and interpreter details.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class QuantParams(NamedTuple):
    """Per-tensor affine quantisation; ``scale == 0`` means the tensor is not quantised."""

    scale: float
    zero_point: int

    @property
    def is_quantized(self) -> bool:
        return self.scale != 0.0


NOT_QUANTIZED = QuantParams(0.0, 0)


def params_of(tensor_details: dict) -> QuantParams:
    """Reads per-tensor quantisation from an interpreter's input/output details."""
    scale, zero_point = tensor_details.get("quantization", (0.0, 0))
    return QuantParams(float(scale), int(zero_point))


def quantize(values: np.ndarray, params: QuantParams, dtype: np.dtype) -> np.ndarray:
    """``q = round(x / scale) + zero_point``, clipped to ``dtype``; floats pass through as ``dtype``."""
    dtype = np.dtype(dtype)
    if not params.is_quantized:
        return np.asarray(values, dtype=dtype)
    info = np.iinfo(dtype)
    q = np.round(np.asarray(values, dtype=np.float32) / params.scale) + params.zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, params: QuantParams) -> np.ndarray:
    """``x = scale * (q - zero_point)`` as float32; float tensors are returned as float32."""
    if not params.is_quantized:
        return np.asarray(values, dtype=np.float32)
    return (params.scale * (np.asarray(values, dtype=np.float32) - params.zero_point)).astype(np.float32)
