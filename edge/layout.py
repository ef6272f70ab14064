"""The bundle on disk, spelled once: file names, the gallery's version folders, and the rule that
every path read from a bundle stays inside it.

    <bundle>/
      manifest.json            the contract (edge.manifest)
      encoder.tflite           the model the manifest names (a plain file name inside the bundle)
      fidelity.json            export's measurements
      split/train.txt|test.txt the data split the bundle was measured on
      gallery/
        CURRENT                name of the live version folder (replaced atomically)
        LOCK                   held by the one writer at a time (edge.gallery.lock)
        v-<stamp>/gallery.json embedding size, metric, trees, model sha256, count, checksums, comparison
        v-<stamp>/items.json   labels, relative paths, thumbnail names, content hashes
        v-<stamp>/embeddings.npy  (N, D) float32 unit vectors
        v-<stamp>/index.ann    Annoy index (absent when Annoy is not installed)
        thumbs/<sha1>.jpg      small JPEGs shared by versions

Export writes this layout, the device reads it, and the tests check it through these names.
"""

from __future__ import annotations

import os
from pathlib import Path

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "encoder.tflite"
FIDELITY_FILE = "fidelity.json"
SPLIT_DIR = "split"
GALLERY_DIR = "gallery"

CURRENT = "CURRENT"
LOCK_FILE = "LOCK"
THUMBS = "thumbs"
VERSION_PREFIX = "v-"
GALLERY_INFO = "gallery.json"
GALLERY_ITEMS = "items.json"
GALLERY_EMBEDDINGS = "embeddings.npy"
GALLERY_INDEX = "index.ann"


class UnsafePathError(ValueError):
    """A path named by a bundle leads outside it (absolute, ``..``, or through a symlink)."""


def confined(root: Path, relative: str | os.PathLike, what: str = "path") -> Path:
    """``root / relative``, refused unless it stays inside ``root`` without following symlinks.

    Args:
      root: the folder the path must stay in (a bundle or its gallery).
      relative: a relative path taken from a bundle file (a manifest field, a thumbnail name).
      what: what the path is, for the message.

    Raises:
      UnsafePathError: absolute, empty, with ``..``, or with a symlink anywhere below ``root``.
    """
    text = os.fspath(relative)
    if not text or "\x00" in text:
        raise UnsafePathError(f"{what} {text!r} is empty or not a file name")
    candidate = Path(text)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise UnsafePathError(f"{what} {text!r} must be a relative path inside {root}, without '..'")
    path = Path(root)
    for part in candidate.parts:
        path = path / part
        if path.is_symlink():
            raise UnsafePathError(f"{what} {path} is a symlink; a bundle may not point outside itself")
    return path


def refuse_symlink(path: Path, what: str = "path") -> Path:
    """Returns ``path`` unless it is a symlink (a bundle's own folders must be real folders)."""
    if Path(path).is_symlink():
        raise UnsafePathError(f"{what} {path} is a symlink; a bundle may not point outside itself")
    return Path(path)
