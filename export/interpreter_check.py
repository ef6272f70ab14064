"""Run the exported model in another Python's interpreter (e.g. a tflite-runtime 2.14 venv) and
compare its output with LiteRT's on the same input, so the manifest can say what was checked.

tflite-runtime needs numpy < 2, so it cannot live in the workstation venv; point
``--check-python`` at a venv made with ``pip install tflite-runtime==2.14.0 "numpy<2"``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SCRIPT = """
import json, sys, numpy as np
from tflite_runtime.interpreter import Interpreter
import tflite_runtime
try:
    interpreter = Interpreter(model_path=sys.argv[1]); interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.load(sys.argv[2]).astype(detail["dtype"]))
    interpreter.invoke()
    np.save(sys.argv[3], interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    print(json.dumps({"ok": True, "version": tflite_runtime.__version__}))
except Exception as error:
    print(json.dumps({"ok": False, "error": type(error).__name__ + ": " + str(error)[:300]}))
"""


def check_with_tflite_runtime(python: str, model_path: Path, seed: int = 0) -> dict:
    """Runs ``model_path`` once in ``python``'s tflite_runtime and in LiteRT; compares outputs.

    Returns:
      ``{"name": "tflite_runtime", "version", "result": "ok" | "fails: ...", "max_abs_diff"}``.
    """
    from edge.interpreter import make_interpreter

    reference = make_interpreter(model_path)
    detail = reference.get_input_details()[0]
    low, high = (0, 255) if np.dtype(detail["dtype"]) != np.int8 else (-128, 127)
    batch = np.random.default_rng(seed).integers(low, high + 1, size=detail["shape"]).astype(detail["dtype"])
    reference.set_tensor(detail["index"], batch)
    reference.invoke()
    expected = reference.get_tensor(reference.get_output_details()[0]["index"]).astype(np.float64)
    with tempfile.TemporaryDirectory() as folder:
        inputs, outputs = Path(folder) / "in.npy", Path(folder) / "out.npy"
        np.save(inputs, batch)
        try:
            done = subprocess.run([python, "-c", SCRIPT, str(model_path), str(inputs), str(outputs)],
                                  capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as error:
            return {"name": "tflite_runtime", "result": f"not run: {error}"}
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            return {"name": "tflite_runtime", "result": f"not run: {done.stderr.strip()[-300:]}"}
        answer = json.loads(lines[-1])
        if not answer["ok"]:
            return {"name": "tflite_runtime", "result": f"fails: {answer['error']}"}
        got = np.load(outputs).astype(np.float64)
    return {"name": "tflite_runtime", "version": answer["version"], "result": "ok",
            "max_abs_diff_vs_litert": float(np.abs(got - expected).max())}
