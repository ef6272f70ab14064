"""Runs on each side: the interpreter's raw int8 output for the shared tensors, and local preprocessing.

    python -m benchmarks.device_check.probe --bundle B --inputs INPUTS_DIR --out OUT_DIR

Feeds every tensor of ``INPUTS_DIR/tensors.npy`` (made on x86) to the bundle's model unchanged
and saves the raw output tensors (``outputs.npy``, int8 for an int8 bundle), so the sides can be
compared exactly. Also reads and resizes the same images here (``local_tensors.npy``) and embeds
them (``embeddings.npy``), which shows how far this machine's OpenCV moves the pixels. Writes
``info.json``: machine, interpreter, package versions and the CPU that /proc/cpuinfo shows.
``--reference-kernels`` runs all of it with the interpreter's reference kernels
(``OpResolverType.BUILTIN_REF``: plain C++, no SIMD, no delegate) instead of the default ones, as
the edge commands do with the same flag; ``info.json`` records which. ``--both-kernels`` also saves
the raw outputs of each kernel set, ``outputs_default.npy`` and ``outputs_reference.npy``, for the
report's figures (x86 runs it: the reference kernels take ≈0.25 s per tensor there).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path


def cpu_seen() -> dict[str, str]:
    """The first CPU entry's 'CPU part' and 'Features' (x86: 'model name') as this process sees them."""
    seen: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return seen
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("CPU part", "Features", "model name"):
            seen[key.strip()] = value.strip()
    return seen


def raw_outputs(interpreter, tensors):
    """The model's output tensor, not dequantised, for each (H, W, 3) input."""
    import numpy as np

    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for tensor in tensors:
        interpreter.set_tensor(source["index"], np.ascontiguousarray(tensor[None, ...]))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target["index"])[0].copy())
    return np.stack(outputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--inputs", type=Path, required=True, help="folder with plan.json and tensors.npy")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reference-kernels", action="store_true",
                        help="run with the interpreter's reference kernels, not its default ones")
    parser.add_argument("--both-kernels", action="store_true",
                        help="also save the raw outputs of the default and of the reference kernels")
    args = parser.parse_args(argv)

    import cv2
    import numpy as np

    from benchmarks.device_check.inputs import read_plan
    from benchmarks.device_check.prepare import model_tensors
    from edge.bundle import open_bundle
    from edge.interpreter import find_runtime, make_interpreter

    runtime = find_runtime()
    bundle = open_bundle(args.bundle, runtime=runtime, reference_kernels=args.reference_kernels)
    tensors = np.load(args.inputs / "tensors.npy", allow_pickle=False)
    local = model_tensors(args.bundle, read_plan(args.inputs).tensors)
    args.out.mkdir(parents=True, exist_ok=True)
    outputs = raw_outputs(bundle.encoder.interpreter, tensors)
    np.save(args.out / "outputs.npy", outputs, allow_pickle=False)
    if args.both_kernels:
        other = "default" if args.reference_kernels else "reference"
        interpreter = make_interpreter(args.bundle / bundle.manifest.model_file, runtime=runtime,
                                       reference_kernels=other == "reference")
        mine = "reference" if args.reference_kernels else "default"
        np.save(args.out / f"outputs_{mine}.npy", outputs, allow_pickle=False)
        np.save(args.out / f"outputs_{other}.npy", raw_outputs(interpreter, tensors), allow_pickle=False)
    np.save(args.out / "local_tensors.npy", local, allow_pickle=False)
    np.save(args.out / "embeddings.npy", np.stack([bundle.encoder.embed_rgb(rgb) for rgb in local]),
            allow_pickle=False)
    info = {"machine": platform.machine(), "python": platform.python_version(),
            "interpreter": runtime.name, "interpreter_version": runtime.version,
            "kernels": "reference" if args.reference_kernels else "default",
            "numpy": np.__version__, "opencv": cv2.__version__, "cpu": cpu_seen()}
    (args.out / "info.json").write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
