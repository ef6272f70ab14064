"""A bundle is data that stays inside itself and that other users can read.

Paths a bundle names (the manifest's model_file, its manifest and gallery folder) are confined to
the bundle: absolute paths, '..' and symlinks out are refused before anything outside is opened.
Files are written with the umask's modes, so a bundle exported or changed by one user (root,
``sudo gallery add``) is readable by another (the camera service), checked here as ``nobody``.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edge.atomic import write_text_atomic
from edge.bundle import open_bundle
from edge.layout import GALLERY_DIR, MANIFEST_FILE, MODEL_FILE, UnsafePathError
from edge.manifest import ManifestError

REPO_ROOT = Path(__file__).resolve().parent.parent
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="running as another user needs root and setpriv")

READ_AS_NOBODY = """
import os, sys
from pathlib import Path
from edge.bundle import open_bundle
root = Path(sys.argv[1])
for folder, _, names in os.walk(root):
    for name in names:
        (Path(folder) / name).read_bytes()
bundle = open_bundle(root)
print(os.getuid(), len(bundle.gallery()))
"""


@pytest.fixture
def shared_folder():
    """A world-traversable folder (pytest's own tmp folders are 0700, closed to other users)."""
    folder = Path(tempfile.mkdtemp(prefix="bundle-safety-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def as_nobody(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*NOBODY, sys.executable, "-c", code, *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)


@needs_root
def test_exported_bundle_is_readable_by_another_user(tiny_bundle, shared_folder):
    bundle = shared_folder / "bundle"
    shutil.copytree(tiny_bundle, bundle, symlinks=True)  # copy2 keeps the modes export wrote
    modes = {p.relative_to(bundle): stat.S_IMODE(p.stat().st_mode) for p in bundle.rglob("*")}
    assert all(mode & 0o004 for mode in modes.values()), modes  # every file and folder world-readable
    assert all(mode & 0o001 for p, mode in modes.items() if (bundle / p).is_dir())
    result = as_nobody(READ_AS_NOBODY, str(bundle))
    assert result.returncode == 0, result.stderr
    uid, items = result.stdout.split()
    assert int(uid) == 65534 and int(items) > 0
    # Control: the same reader fails on a file mkstemp's 0600 would have left behind.
    (bundle / MANIFEST_FILE).chmod(0o600)
    assert as_nobody(READ_AS_NOBODY, str(bundle)).returncode != 0


@needs_root
def test_atomic_writes_follow_the_umask(shared_folder):
    previous = os.umask(0o022)
    try:
        write_text_atomic(shared_folder / "made" / "a.json", "{}")
        os.umask(0o077)
        write_text_atomic(shared_folder / "private.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((shared_folder / "made" / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((shared_folder / "made").stat().st_mode) == 0o755
    assert stat.S_IMODE((shared_folder / "private.json").stat().st_mode) == 0o600
    code = "import sys; print(open(sys.argv[1]).read())"
    assert as_nobody(code, str(shared_folder / "made" / "a.json")).stdout.strip() == "{}"
    assert as_nobody(code, str(shared_folder / "private.json")).returncode != 0


def _set_model_file(bundle: Path, model_file: str) -> None:
    values = json.loads((bundle / MANIFEST_FILE).read_text())
    values["model_file"] = model_file
    (bundle / MANIFEST_FILE).write_text(json.dumps(values))


@pytest.mark.parametrize("how", ["absolute", "parent"])
def test_model_file_outside_the_bundle_is_refused(bundle_copy, tmp_path, how):
    outside = tmp_path / "outside.tflite"
    shutil.copy(bundle_copy / MODEL_FILE, outside)  # same bytes: the manifest's sha256 would match
    _set_model_file(bundle_copy, str(outside) if how == "absolute" else "../outside.tflite")
    with pytest.raises(ManifestError, match="model_file .* must be a relative path inside the bundle"):
        open_bundle(bundle_copy)


def test_model_file_symlinked_out_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "outside.tflite"
    shutil.move(bundle_copy / MODEL_FILE, outside)
    (bundle_copy / MODEL_FILE).symlink_to(outside)
    with pytest.raises(UnsafePathError, match="is a symlink"):
        open_bundle(bundle_copy)


OPEN_BUNDLE = """
import sys
from edge.bundle import open_bundle
try:
    open_bundle(sys.argv[1])
except ValueError as error:
    print(type(error).__name__, error)
"""


@pytest.mark.parametrize("how", ["absolute", "symlink", "manifest symlink"])
def test_nothing_outside_is_opened(bundle_copy, tmp_path, how):
    """The outside target is a FIFO: opening it to read would block until the timeout."""
    fifo = tmp_path / "outside.fifo"
    os.mkfifo(fifo)
    if how == "absolute":
        _set_model_file(bundle_copy, str(fifo))
    elif how == "symlink":
        (bundle_copy / MODEL_FILE).unlink()
        (bundle_copy / MODEL_FILE).symlink_to(fifo)
    else:
        (bundle_copy / MANIFEST_FILE).unlink()
        (bundle_copy / MANIFEST_FILE).symlink_to(fifo)
    result = subprocess.run([sys.executable, "-c", OPEN_BUNDLE, str(bundle_copy)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(("ManifestError", "UnsafePathError")), result.stdout
    assert "symlink" in result.stdout or "relative path inside the bundle" in result.stdout


def test_gallery_folder_symlinked_out_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.move(bundle_copy / GALLERY_DIR, outside)
    (bundle_copy / GALLERY_DIR).symlink_to(outside, target_is_directory=True)
    bundle = open_bundle(bundle_copy)
    with pytest.raises(UnsafePathError, match="gallery folder .* is a symlink"):
        bundle.gallery()


def _imports(path: Path) -> set[str]:
    """Every train.* module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("train"):
            found.add(node.module if node.module != "train" else f"train.{node.names[0].name}")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("train."))
    return found


def test_train_modules_import_no_circle():
    graph = {f"train.{p.stem}": _imports(p) for p in (REPO_ROOT / "train").glob("*.py")}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for module in graph.get(start, ()):
            if module == target or (module not in seen and reaches(module, target, seen | {module})):
                return True
        return False

    circles = [name for name in graph if reaches(name, name, {name})]
    assert circles == []
    assert "train.evaluate" not in graph["train.run_folder"]
