"""Atomic writes: a reader sees the old content or the new, never a half-written file or folder.

Files get the modes an ordinary ``open()`` would give them (0666 less the umask, so 0644 under the
usual umask 022): a bundle written by one user (export, ``sudo gallery add``) stays readable by the
service that runs the camera. ``mkstemp`` alone would leave them 0600.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def fsync_dir(path: Path) -> None:
    """Flushes a folder's entries (renames) to disk where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Writes to a temporary file in the same folder, fsyncs it, then renames it over ``path``."""
    write_atomic(path, lambda handle: handle.write(data))


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write(handle)`` into a temporary file in the same folder (mode from the umask), fsync,
    rename over ``path``; on any failure the temporary file is removed and ``path`` is untouched.
    For large arrays: ``write_atomic(p, lambda f: np.save(f, array))`` streams without a copy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def replace_dir(staged: Path, target: Path) -> None:
    """Moves a fully written folder ``staged`` to ``target``, replacing any previous one.

    POSIX cannot swap two folders in one step, so the old folder is renamed aside first; if the
    process dies between the two renames, :func:`recover_dir` puts the old one back.
    """
    staged, target = Path(staged), Path(target)
    aside = target.with_name(f".{target.name}.old")
    if aside.exists():
        shutil.rmtree(aside)
    if target.exists():
        os.replace(target, aside)
    os.replace(staged, target)
    fsync_dir(target.parent)
    shutil.rmtree(aside, ignore_errors=True)


def recover_dir(target: Path) -> None:
    """Restores ``target`` from its aside copy when a :func:`replace_dir` was cut short."""
    target = Path(target)
    aside = target.with_name(f".{target.name}.old")
    if not target.exists() and aside.exists():
        os.replace(aside, target)
