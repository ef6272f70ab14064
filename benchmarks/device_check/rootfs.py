"""The cached Debian bookworm arm64 root file system that qemu-user runs Python from.

``debootstrap --foreign`` downloads and unpacks without running anything arm64 (≈45 s); every
downloaded ``.deb`` is then unpacked with ``dpkg-deb --fsys-tarfile | tar --keep-directory-symlink``
(plain ``dpkg-deb -x`` replaces the merged-/usr ``lib -> usr/lib`` link with a folder, and the
loader ``/lib/ld-linux-aarch64.so.1`` is then not found). No package scripts run; Python needs none.
The tree is built under ``<cache>/rootfs.partial`` and renamed when complete, with a stamp that
records how it was made, so an interrupted build is never taken for a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from benchmarks.device_check.profiles import CpuProfile, cpuinfo_text

SUITE = "bookworm"
PACKAGES = ("python3",)  # the wheels bring everything else (headless OpenCV needs no libGL)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
STAMP = ".siamese-device-check.json"
PYTHON = "usr/bin/python3.11"
LOADER = "usr/lib/ld-linux-aarch64.so.1"
TOOLS = {"debootstrap": "debootstrap", "dpkg-deb": "dpkg", "qemu-aarch64-static": "qemu-user-static"}


class SetupError(RuntimeError):
    """The emulated device cannot be set up (a missing tool, a failed download)."""


def missing_tools() -> list[str]:
    """Host tools that are not on PATH, as 'tool (apt package)'."""
    return [f"{tool} (apt-get install {package})" for tool, package in TOOLS.items() if shutil.which(tool) is None]


def ensure_rootfs(cache: Path, mirror: str = DEFAULT_MIRROR, log=print) -> Path:
    """Returns ``<cache>/rootfs``, building it first when it is absent or was made differently.

    Raises:
      SetupError: a host tool is missing, this is not root, or debootstrap failed.
    """
    root = cache / "rootfs"
    recipe = {"suite": SUITE, "arch": "arm64", "variant": "minbase", "packages": list(PACKAGES), "mirror": mirror}
    stamp = root / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe and (root / PYTHON).is_file():
        return root
    if missing_tools():
        raise SetupError("missing host tools: " + ", ".join(missing_tools()))
    if os.geteuid() != 0:
        raise SetupError("debootstrap needs root to create the root file system once; run `sudo make device-check`")
    partial = cache / "rootfs.partial"
    _remove_tree(partial)
    _remove_tree(root)
    partial.mkdir(parents=True)
    log(f"device-check: debootstrap {SUITE} arm64 into {partial} (once; cached afterwards)")
    _run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
          "--include=" + ",".join(PACKAGES), SUITE, str(partial), mirror])
    archives = sorted((partial / "var/cache/apt/archives").glob("*.deb"))
    for deb in archives:
        _unpack(deb, partial)
        deb.unlink()
    _replace_proc_link(partial)
    if not (partial / PYTHON).is_file() or not (partial / LOADER).exists():
        raise SetupError(f"{partial} has no {PYTHON} or {LOADER} after unpacking {len(archives)} packages")
    (partial / STAMP).write_text(json.dumps(recipe))
    partial.rename(root)
    return root


def write_cpuinfo(root: Path, profile: CpuProfile) -> Path:
    """Writes the profile's ARM /proc/cpuinfo inside ``root`` (qemu -L serves it to the guest)."""
    _replace_proc_link(root)
    path = root / "proc" / "cpuinfo"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(cpuinfo_text(profile))
    temporary.replace(path)
    return path


def _replace_proc_link(root: Path) -> None:
    # debootstrap links ROOT/proc to the host's /proc when it cannot mount one (a container):
    # writing ROOT/proc/cpuinfo would then go to the host. Only the link is removed, never followed.
    proc = root / "proc"
    if proc.is_symlink():
        proc.unlink()
    proc.mkdir(exist_ok=True)


def _unpack(deb: Path, root: Path) -> None:
    data = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "--keep-directory-symlink", "-C", str(root)], stdin=data.stdout,
                           capture_output=True, text=True)
    data.stdout.close()
    if data.wait() != 0 or untar.returncode != 0:
        raise SetupError(f"cannot unpack {deb.name} into {root}: {untar.stderr.strip()[:300]}")


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise SetupError(f"{' '.join(command[:2])} ... failed ({result.returncode}): " + " | ".join(tail))


def _remove_tree(path: Path) -> None:
    # rmtree unlinks symlinks inside (proc -> /proc) without following them.
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
