"""The device side in a venv made from requirements-edge.txt alone: no TensorFlow anywhere.

.ci/run builds that venv and sets EDGE_PYTHON; locally: python3 -m venv .venv-edge &&
.venv-edge/bin/pip install -r requirements-edge.txt && EDGE_PYTHON=.venv-edge/bin/python make test
"""

import json
import os
import subprocess

import pytest

from conftest import REPO_ROOT
from test_layering import edge_modules

EDGE_PYTHON = os.environ.get("EDGE_PYTHON")


@pytest.fixture
def edge_python():
    if not EDGE_PYTHON:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must set EDGE_PYTHON to the requirements-edge.txt venv (.ci/run does)")
        pytest.skip("EDGE_PYTHON not set (a venv from requirements-edge.txt alone)")
    return EDGE_PYTHON


def _run(python, *args, **kwargs):
    return subprocess.run([python, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, **kwargs)


def test_tensorflow_is_not_installed_and_every_edge_module_imports(edge_python):
    assert _run(edge_python, "-c", "import tensorflow").returncode != 0
    code = f"import importlib; [importlib.import_module(m) for m in {edge_modules()!r}]; print('ok')"
    result = _run(edge_python, "-c", code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_bundle_search_runs_in_the_edge_venv(edge_python, tiny_bundle):
    image = next((tiny_bundle.parent / "data" / "circles").glob("*.jpg"))
    result = _run(edge_python, "-m", "edge.search", "--bundle", str(tiny_bundle), "--image", str(image), "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["matches"]) == 5
    verdict = _run(edge_python, "-m", "edge.verify", "--bundle", str(tiny_bundle), str(image), str(image), "--json")
    assert verdict.returncode == 0 and json.loads(verdict.stdout)["same"] is True
