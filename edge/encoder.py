"""Image -> unit embedding with the bundle's TFLite encoder, exactly as the manifest says."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.images import ImageSource, bgr_frame_to_rgb, read_image
from edge.interpreter import InterpreterError, Runtime, make_interpreter
from edge.manifest import Manifest, ManifestError
from edge.metrics import segment_normalize
from edge.preprocess import resize_image, to_model_input
from edge.quant import QuantParams, dequantize, params_of


class Encoder:
    """Runs the encoder on one image at a time (the device's batch size is 1)."""

    def __init__(
        self,
        model_path: Path,
        manifest: Manifest,
        num_threads: int | None = None,
        delegate: str | None = None,
        use_xnnpack: bool = True,
        runtime: Runtime | None = None,
        reference_kernels: bool = False,
    ):
        self.manifest = manifest
        self.interpreter = make_interpreter(model_path, num_threads, delegate, use_xnnpack, runtime,
                                            reference_kernels=reference_kernels)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self.input_params = params_of(self._input)
        self.output_params = params_of(self._output)
        self.input_dtype = np.dtype(self._input["dtype"])
        self._check_against_manifest(model_path)

    @property
    def embedding_size(self) -> int:
        return int(self._output["shape"][-1])

    def embed(self, image: ImageSource) -> np.ndarray:
        """Path, encoded bytes or RGB array -> (D,) float32 unit vector."""
        return self.embed_rgb(read_image(image))

    def embed_frame(self, frame_bgr: np.ndarray) -> np.ndarray:
        """An OpenCV BGR camera frame -> (D,) float32 unit vector (prepare_frame, then embed_rgb)."""
        return self.embed_rgb(self.prepare_frame(frame_bgr))

    def prepare_frame(self, frame_bgr: np.ndarray) -> np.ndarray:
        """An OpenCV BGR camera frame -> the model-sized RGB image embed_rgb takes.

        The live loop runs this on its capture thread, off the inference thread. Resizes before
        converting colour, so the conversion touches H x W pixels, not the whole frame (same
        pixels as convert-then-resize: both steps are per-pixel linear or channel-wise).
        """
        spec = self.manifest.input
        if not isinstance(frame_bgr, np.ndarray) or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            return resize_image(bgr_frame_to_rgb(frame_bgr), spec.height, spec.width)  # gray/BGRA/odd frames
        return bgr_frame_to_rgb(resize_image(frame_bgr, spec.height, spec.width))

    def embed_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """A validated HxWx3 uint8 RGB image -> (D,) float32 unit vector."""
        spec = self.manifest.input
        batch = to_model_input(rgb, spec.height, spec.width, self.input_dtype, self.input_params)
        return segment_normalize(self.run(batch), self.manifest.output.segments)[0]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Invokes the model on a prepared (1, H, W, 3) input; returns dequantised raw outputs."""
        self.interpreter.set_tensor(self._input["index"], batch)
        self.interpreter.invoke()
        return dequantize(self.interpreter.get_tensor(self._output["index"]), self.output_params)

    def _check_against_manifest(self, model_path: Path) -> None:
        spec, out = self.manifest.input, self.manifest.output
        expected_shape = [1, spec.height, spec.width, spec.channels]
        problems = []
        if list(self._input["shape"]) != expected_shape:
            problems.append(f"input shape {list(self._input['shape'])} != manifest {expected_shape}")
        if self.input_dtype.name != spec.dtype:
            problems.append(f"input dtype {self.input_dtype.name} != manifest {spec.dtype}")
        if self.embedding_size != out.embedding_size:
            problems.append(f"embedding size {self.embedding_size} != manifest {out.embedding_size}")
        if self.input_params.is_quantized and not _close(self.input_params, QuantParams(spec.scale, spec.zero_point)):
            problems.append(f"input quantisation {tuple(self.input_params)} != manifest {(spec.scale, spec.zero_point)}")
        if problems:
            raise ManifestError(f"{model_path} does not match its manifest: " + "; ".join(problems))


def _close(a: QuantParams, b: QuantParams) -> bool:
    return abs(a.scale - b.scale) <= 1e-6 * max(abs(a.scale), 1e-12) and a.zero_point == b.zero_point


__all__ = ["Encoder", "InterpreterError"]
