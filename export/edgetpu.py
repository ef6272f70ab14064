"""Edge TPU readiness of a TFLite model: every tensor int8/uint8, static shapes, supported ops.

The Edge TPU compiler (``edgetpu_compiler``, x86-64 Debian only, not installable here) is the final
word; this check predicts what it will map, from the Coral "supported operations" table
(coral.ai/docs/edgetpu/models-intro). Ops after the first unmapped op run on the CPU.

Compile on a machine that has the compiler::

    edgetpu_compiler -s -o BUNDLE BUNDLE/encoder.tflite   # writes encoder_edgetpu.tflite
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "MAX_POOL_2D", "MAXIMUM", "MEAN",
    "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6",
    "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX",
    "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH",
    "TRANSPOSE", "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM",
})
# Tensors that carry indices/shapes may be int32 without leaving the accelerator.
INDEX_OPERAND_OPS = {"RESHAPE", "MEAN", "SUM", "PAD", "STRIDED_SLICE", "SLICE", "EXPAND_DIMS",
                     "REDUCE_MAX", "REDUCE_MIN", "TRANSPOSE", "SQUEEZE", "SPLIT", "CONCATENATION"}
QUANTIZED = {np.dtype(np.int8), np.dtype(np.uint8)}


def readiness_report(model_path: Path) -> dict:
    """Inspects the model with the device interpreter and predicts the Edge TPU mapping.

    Returns:
      ``{"ready": bool, "ops": {op: count}, "unsupported_ops": [...], "float_ops": [...],
      "dynamic_shapes": [...], "first_cpu_op": name or None}``.
    """
    from edge.interpreter import make_interpreter

    # Without XNNPACK: the delegate would replace the graph's ops with one DELEGATE node.
    interpreter = make_interpreter(model_path, use_xnnpack=False)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # noqa: SLF001 - the only op listing the Python API has
    counts: dict[str, int] = {}
    unsupported, float_ops, first_cpu_op = [], [], None
    for position, op in enumerate(ops):
        name = op["op_name"]
        counts[name] = counts.get(name, 0) + 1
        is_float = _has_float_tensor(op, tensors, name)
        if name not in EDGETPU_OPS:
            unsupported.append(f"{position}:{name}")
        if is_float:
            float_ops.append(f"{position}:{name}")
        if first_cpu_op is None and (name not in EDGETPU_OPS or is_float):
            first_cpu_op = f"{position}:{name}"
    dynamic = [
        f"{t['name']} {list(t['shape_signature'])}"
        for t in tensors.values()
        if len(t.get("shape_signature", [])) and int(np.min(t["shape_signature"])) < 0
    ]
    io_dtypes = [np.dtype(d["dtype"]).name for d in interpreter.get_input_details() + interpreter.get_output_details()]
    ready = not unsupported and not float_ops and not dynamic and all(d in ("int8", "uint8") for d in io_dtypes)
    return {
        "ready": ready,
        "io_dtypes": io_dtypes,
        "ops": dict(sorted(counts.items())),
        "unsupported_ops": unsupported,
        "float_ops": float_ops,
        "dynamic_shapes": dynamic,
        "first_cpu_op": first_cpu_op,
        "note": "prediction from the Coral supported-ops table; edgetpu_compiler decides (see README)",
    }


BIAS_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}


def _has_float_tensor(op: dict, tensors: dict, name: str) -> bool:
    """True when a tensor of the op is not 8-bit (int32 biases and index operands excepted)."""
    operands = [(i, position, True) for position, i in enumerate(op["inputs"])]
    operands += [(i, position, False) for position, i in enumerate(op["outputs"])]
    for index, position, is_input in operands:
        if index < 0 or index not in tensors:
            continue
        dtype = np.dtype(tensors[index]["dtype"])
        if dtype in QUANTIZED:
            continue
        is_bias = is_input and position == 2 and name in BIAS_OPS
        if dtype == np.int32 and (is_bias or (is_input and name in INDEX_OPERAND_OPS)):
            continue
        return True
    return False
