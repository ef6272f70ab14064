"""Keras encoder -> TFLite bytes (pure: the caller writes the file).

Uses ``TFLiteConverter.from_keras_model``, the path that works with TF 2.21 + Keras 3
(``from_concrete_functions`` does not bake the weights in; ../shared/NOTES.md). Builtin ops only:
device interpreters cannot run SELECT_TF_OPS.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

MODES = ("int8", "float16", "float32", "dynamic")


def fixed_batch_model(model):
    """The same model with a static batch of 1 (static shapes for the device and the Edge TPU)."""
    import keras

    inputs = keras.Input(shape=model.input.shape[1:], batch_size=1, name="pixels")
    return keras.Model(inputs, model(inputs), name=model.name)


def pin_pixel_range(image: np.ndarray) -> np.ndarray:
    """A float32 copy with one pixel at 0 and one at 255.

    The input tensor's quantisation comes from the range seen in calibration; without this a set
    of images that never reaches 255 gives a scale below 1 and clips bright camera pixels.
    """
    pinned = np.array(image, dtype=np.float32, copy=True)
    pinned[0, 0, :] = 0.0
    pinned[-1, -1, :] = 255.0
    return pinned


def to_tflite(
    model,
    mode: str = "int8",
    representative_images: Callable[[], Iterable[np.ndarray]] | None = None,
    uint8_output: bool = False,
) -> bytes:
    """Converts an encoder that takes float pixels 0..255 (rescaling inside the model).

    Args:
      model: Keras model, input (1, H, W, 3) float pixels 0..255.
      mode: "int8" (full integer: uint8 pixel input, int8 output, every op int8), "float16"
        (float16 weights, float I/O), "float32", or "dynamic" (int8 weights, float activations).
      representative_images: for "int8", yields (H, W, 3) float32 pixel arrays for calibration.
      uint8_output: int8 mode only, make the output uint8 too (the Edge TPU compiler's I/O).

    Returns:
      The flatbuffer bytes.
    """
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        if representative_images is None:
            raise ValueError("int8 conversion needs representative images for calibration")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [pin_pixel_range(image)[None]] for image in representative_images()
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # uint8 input = raw camera pixels (scale 1, zero point 0 when calibrated on 0..255 images).
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8 if uint8_output else tf.int8
    return converter.convert()
