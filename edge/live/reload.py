"""Gallery hot reload for a running search: a new version that goes live (``gallery/CURRENT``
changes) is loaded on a background thread and swapped in between two frames.

The watcher reads ``CURRENT`` (a few bytes) at most every ``interval`` seconds, never per frame,
and loads the new version off the inference thread; the inference thread only reads
``watcher.gallery``, a single reference replaced atomically, so no frame waits for a load.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

from edge.gallery.store import Gallery, GalleryError
from edge.layout import CURRENT

log = logging.getLogger(__name__)


def live_version_name(root: Path) -> str | None:
    """The text of ``<gallery>/CURRENT``, or None while it is missing or unreadable."""
    try:
        return (Path(root) / CURRENT).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


class GalleryWatcher:
    """Holds the live Gallery and replaces it when CURRENT names another version.

    Args:
      root: the bundle's gallery folder.
      load: () -> Gallery, the bundle's own checked loader (``Bundle.gallery``).
      gallery: the version already loaded at start (loaded here when None).
      interval: seconds between two reads of CURRENT.
    """

    def __init__(self, root: Path, load: Callable[[], Gallery], gallery: Gallery | None = None,
                 interval: float = 1.0):
        self.root, self._load, self.interval = Path(root), load, interval
        self.version = live_version_name(self.root)
        self.gallery = gallery if gallery is not None else load()
        self.reloads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="edge-gallery-watch", daemon=True)

    def __enter__(self) -> "GalleryWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def check(self) -> bool:
        """One poll: loads and swaps in the live version if it changed; True when it did."""
        name = live_version_name(self.root)
        if name is None or name == self.version:
            return False
        try:
            gallery = self._load()
        except (GalleryError, OSError, ValueError) as error:  # a half-written or bad version: keep the old one
            log.warning("gallery version %s did not load (%s); still searching %s", name, error, self.version)
            self.version = name  # do not retry a broken version every second; the next commit is tried
            return False
        self.gallery, self.version = gallery, name
        self.reloads += 1
        log.info("gallery reloaded: version %s, %d items", name, len(gallery))
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()
