"""One writer at a time: an OS file lock on ``gallery/LOCK`` held from load to prune.

``flock`` locks belong to the open file, so a writer that dies (even by SIGKILL) releases its lock
with its process; no stale lock files need clearing. Readers (search, verify) never lock.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edge.gallery.index import GalleryError
from edge.layout import LOCK_FILE, refuse_symlink

log = logging.getLogger(__name__)


class GalleryBusyError(GalleryError):
    """Another enrolment holds the gallery's lock and the caller asked not to wait."""


@contextmanager
def gallery_lock(root: Path, wait: bool = True) -> Iterator[None]:
    """Holds the exclusive writer lock of the gallery at ``root``.

    Args:
      root: the gallery folder (created if missing).
      wait: block until the lock is free (saying so once), or raise GalleryBusyError at once.
    """
    root = refuse_symlink(Path(root), "gallery folder")
    root.mkdir(parents=True, exist_ok=True)
    path = refuse_symlink(root / LOCK_FILE, "gallery lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = _holder(fd)
            if not wait:
                raise GalleryBusyError(
                    f"another enrolment{holder} is changing {root}; try again when it has finished "
                    "(or leave out --no-wait to wait for it)"
                ) from None
            log.warning("waiting for another enrolment%s to finish changing %s ...", holder, root)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
