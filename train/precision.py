"""Mixed precision: float16 arithmetic with float32 weights, where a GPU makes it pay.

``--precision auto`` (the default) trains in ``mixed`` precision when TensorFlow sees a GPU and in
``float32`` otherwise: float16 arithmetic is what GPUs with tensor cores run fast, while on a CPU
TensorFlow emulates it and is slower than float32. ``mixed`` is Keras's ``mixed_float16`` policy:
layers created under it compute in float16 and keep float32 variables, and ``compile`` wraps the
optimizer in a ``LossScaleOptimizer`` (dynamic loss scaling, so small float16 gradients do not
underflow). The layers whose outputs feed a loss or a cosine (the L2 normalisations, the cosine
classifier, the pair head, the distance) are float32 in every policy (train.model), as the
Keras mixed-precision guide recommends for a model's last layers.

The policy applies to layers created inside :func:`compute_policy`, i.e. the training models. The
run folder's encoder is rebuilt in float32 with the trained weights (:func:`float32_encoder`), so
export, the device and a re-evaluation never see float16 layers.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from train.config import PRECISIONS

log = logging.getLogger(__name__)

KERAS_POLICY = {"float32": "float32", "mixed": "mixed_float16"}


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU on this machine."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def resolve_precision(precision: str, has_gpu: bool | None = None) -> str:
    """``float32`` or ``mixed``: ``auto`` becomes ``mixed`` when there is a GPU (``has_gpu``;
    :func:`gpu_visible` when not given)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    return "mixed" if (gpu_visible() if has_gpu is None else has_gpu) else "float32"


def precision_key(precision: str) -> dict:
    """The precision's part of what identifies a result (a feature cache, a backup): float16
    arithmetic gives other numbers; float32 adds nothing, so keys made before precision existed
    still match."""
    return {} if precision == "float32" else {"precision": precision}


@contextlib.contextmanager
def compute_policy(precision: str) -> Iterator[None]:
    """Layers created inside compute in ``precision`` (``float32`` or ``mixed``); the global Keras
    dtype policy is put back on leaving, so later models (and later runs in the same process) are
    unaffected."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(KERAS_POLICY[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def float32_encoder(encoder, precision: str, input_size: int, alpha: float):
    """The encoder itself after a float32 run; after a mixed one, the same architecture built in
    float32 with the trained weights (which are float32 already)."""
    if precision == "float32":
        return encoder
    from train.model import rebuild_encoder

    with compute_policy("float32"):
        rebuilt = rebuild_encoder(encoder, input_size, alpha)
    log.info("encoder rebuilt in float32 from the mixed-precision training's weights")
    return rebuilt
