"""The device never imports TensorFlow, Keras or the desktop side."""

import ast
import subprocess
import sys

from conftest import REPO_ROOT

EDGE = REPO_ROOT / "edge"
FORBIDDEN = ("tensorflow", "keras", "tensorflow_datasets", "train", "export")


def edge_modules() -> list[str]:
    """Every module of the edge package, sub-packages included (``__main__`` files too)."""
    names = []
    for path in sorted(EDGE.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_importing_every_edge_module_loads_no_tensorflow():
    code = (
        "import importlib, sys\n"
        f"for name in {edge_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print('FORBIDDEN', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FORBIDDEN []" in result.stdout


def test_edge_source_has_no_desktop_imports():
    for path in EDGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
