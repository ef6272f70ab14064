"""`pip install .` in a fresh venv gives a working device: console scripts, no compiler, no TensorFlow.

Downloads from PyPI (pip's own cache is reused), so it runs only with EDGE_PACKAGE_TEST=1 or CI=true.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

ENABLED = os.environ.get("EDGE_PACKAGE_TEST") == "1" or os.environ.get("CI") == "true"
pytestmark = pytest.mark.skipif(not ENABLED, reason="set EDGE_PACKAGE_TEST=1 (downloads from PyPI)")
VENV_GOAL_MB = 300


def _no_compiler_env() -> dict:
    """PATH without any C/C++ compiler, and CC/CXX set to `false`, so a source build cannot succeed."""
    bare = Path(os.environ.get("PYTEST_TMP_BIN", "/tmp")) / "siamese-no-compiler-bin"
    bare.mkdir(parents=True, exist_ok=True)
    for tool in ("git", "uname", "ldconfig", "sh"):  # what pip and wheels may shell out to
        found = shutil.which(tool)
        if found and not (bare / tool).exists():
            (bare / tool).symlink_to(found)
    return {**os.environ, "PATH": str(bare), "CC": "false", "CXX": "false"}


@pytest.fixture(scope="module")
def package_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("pkg") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = _no_compiler_env()
    for compiler in ("gcc", "cc", "c++", "g++"):
        assert shutil.which(compiler, path=env["PATH"]) is None
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(REPO_ROOT)],
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return venv


def _run(venv: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / script), *args], capture_output=True, text=True, timeout=300,
                          cwd=venv.parent, env=_no_compiler_env())


def test_default_install_has_no_tensorflow_and_no_annoy(package_venv):
    python = str(package_venv / "bin" / "python")
    for module in ("tensorflow", "annoy"):
        assert subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode != 0


def test_version_flag(package_venv):
    from edge import __version__
    result = _run(package_venv, "siamese-search", "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"siamese-edge {__version__}"


def test_console_scripts_search_verify_and_enrol(package_venv, tiny_bundle, bundle_copy):
    bundle = bundle_copy
    image = sorted((tiny_bundle.parent / "data").glob("*/*.jpg"))[0]
    search = _run(package_venv, "siamese-search", "--bundle", str(bundle), "--image", str(image), "--json")
    assert search.returncode == 0, search.stderr
    assert len(json.loads(search.stdout.splitlines()[-1])["matches"]) == 5
    verify = _run(package_venv, "siamese-verify", "--bundle", str(bundle), str(image), str(image), "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["same"] is True, verify.stderr
    enrol = _run(package_venv, "siamese-gallery", "add", "--bundle", str(bundle), "--label", "pkgtest", str(image))
    assert enrol.returncode == 0, enrol.stderr
    listing = _run(package_venv, "siamese-gallery", "list", "--bundle", str(bundle))
    assert listing.returncode == 0 and "pkgtest" in listing.stdout, listing.stderr


def test_venv_size_is_reported(package_venv):
    size = sum(f.stat().st_size for f in package_venv.rglob("*") if f.is_file() and not f.is_symlink())
    megabytes = size / 1e6
    print(f"package venv: {megabytes:.0f} MB of files (goal <= {VENV_GOAL_MB} MB)")
    assert megabytes > 50  # a real install (numpy + OpenCV + LiteRT), not an empty venv
