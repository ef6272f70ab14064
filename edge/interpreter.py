"""Finding and creating a TFLite interpreter on the device.

Order: ``ai_edge_litert`` (LiteRT, the maintained runtime: numpy 2, every model TF 2.21 converts),
then ``tflite_runtime`` 2.14 (last release; Python <= 3.11, numpy < 2; cannot load TF 2.21's
dynamic-range models, runs int8 about 9x slower here), then ``tensorflow.lite`` (a workstation).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CANDIDATES = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite"),  # imported by name only as the last resort
)
EDGETPU_LIBRARIES = {"linux": "libedgetpu.so.1", "darwin": "libedgetpu.1.dylib", "win32": "edgetpu.dll"}


class InterpreterError(RuntimeError):
    """A model cannot be loaded or run by the available interpreter."""


@dataclass(frozen=True)
class Runtime:
    """An interpreter module that imported: its name, version and classes."""

    name: str
    version: str
    module: Any

    @property
    def Interpreter(self):  # noqa: N802 (mirrors the module's class name)
        return self.module.Interpreter


def find_runtime(preferred: str | None = None) -> Runtime:
    """Imports the first available interpreter module (or exactly ``preferred``).

    Raises:
      ImportError: none is installed; the message names requirements-edge.txt.
    """
    tried = []
    for name, module_name in CANDIDATES:
        if preferred and name != preferred:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            tried.append(f"{module_name} ({error})")
            continue
        version = _version_of(name)
        return Runtime(name, version, module)
    raise ImportError(
        "no TFLite interpreter found; tried " + "; ".join(tried)
        + ". Install the device requirements: python -m pip install -r requirements-edge.txt"
    )


def make_interpreter(
    model_path: Path,
    num_threads: int | None = None,
    delegate: str | None = None,
    use_xnnpack: bool = True,
    runtime: Runtime | None = None,
    reference_kernels: bool = False,
):
    """Creates an interpreter with tensors allocated.

    Args:
      model_path: the ``.tflite`` file.
      num_threads: CPU threads (None: the interpreter's default).
      delegate: None, or "edgetpu" to run on a Coral Edge TPU through libedgetpu.
      use_xnnpack: False builds the interpreter without its default XNNPACK delegate.
      runtime: an already found runtime (default: :func:`find_runtime`).
      reference_kernels: True runs the interpreter's reference kernels
        (``OpResolverType.BUILTIN_REF``: plain C++, no SIMD, no delegate), the arithmetic the
        interpreter specifies, instead of the optimised ones (x86's and arm64's optimised int8
        kernels may round differently). Slow (several times the default); for checks, not for a
        device. Not with a delegate.

    Raises:
      FileNotFoundError: no model at ``model_path``.
      InterpreterError: the model does not load (corrupt, or ops this interpreter lacks),
        or the Edge TPU library is missing, or reference kernels are asked for with a delegate or
        from an interpreter without them.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no model at {model_path}; export one with `make export`")
    runtime = runtime or find_runtime()
    kwargs: dict[str, Any] = {"model_path": str(model_path)}
    if num_threads is not None:
        kwargs["num_threads"] = int(num_threads)
    if delegate == "edgetpu":
        kwargs["experimental_delegates"] = [load_edgetpu_delegate(runtime)]
    elif delegate is not None:
        raise InterpreterError(f"unknown delegate {delegate!r}; expected 'edgetpu' or none")
    if reference_kernels:
        if delegate is not None:
            raise InterpreterError("the reference kernels run on the CPU; drop --delegate or --reference-kernels")
        resolver = getattr(runtime.module, "OpResolverType", None)
        if resolver is None or not hasattr(resolver, "BUILTIN_REF"):
            raise InterpreterError(f"{runtime.name} {runtime.version} has no reference kernels (BUILTIN_REF)")
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_REF
    elif not use_xnnpack:
        resolver = getattr(runtime.module, "OpResolverType", None)
        if resolver is None:
            raise InterpreterError(f"{runtime.name} {runtime.version} cannot disable XNNPACK")
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = runtime.Interpreter(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise InterpreterError(
            f"{runtime.name} {runtime.version} cannot load {model_path}: {str(error).strip()[:400]}"
        ) from error
    return interpreter


def load_edgetpu_delegate(runtime: Runtime):
    """Loads libedgetpu; raises InterpreterError with install advice when it is absent."""
    import sys

    library = EDGETPU_LIBRARIES.get(sys.platform, "libedgetpu.so.1")
    loader = getattr(runtime.module, "load_delegate", None)
    if loader is None:
        raise InterpreterError(f"{runtime.name} has no load_delegate; cannot use the Edge TPU")
    try:
        return loader(library)
    except (ValueError, OSError, RuntimeError) as error:
        raise InterpreterError(
            f"cannot load the Edge TPU delegate {library} ({error}). Install libedgetpu "
            "(Coral: apt-get install libedgetpu1-std), plug in the accelerator, and use a bundle "
            "exported with --edgetpu and compiled by edgetpu_compiler"
        ) from error


def _version_of(name: str) -> str:
    distribution = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}.get(name, name)
    try:
        from importlib.metadata import version

        return version(distribution)
    except Exception:  # noqa: BLE001 - a version string is informational only
        return "unknown"
