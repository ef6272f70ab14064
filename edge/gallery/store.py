"""The gallery on disk: versions of embeddings, labels, paths, thumbnails and the Annoy index.

Layout (edge/layout.py spells the names)::

    CURRENT                  name of the live version folder (replaced atomically)
    v-<stamp>/gallery.json   sizes, model sha256, trees, count, comparison, calibration, checksums
    v-<stamp>/items.json     labels, relative paths, thumbnail names, content hashes
    v-<stamp>/embeddings.npy (N, D) float32 embeddings as the encoder made them
    v-<stamp>/background.npy (M, D) "nothing" frames embedded by the same encoder (edge.gallery.openset)
    v-<stamp>/centres.npy    per-segment centres, when the fitted comparison centres
    v-<stamp>/whitening.npy, whitening_mean.npy   the fitted whitening (D, D) and its centre (D,)
    v-<stamp>/index.ann      Annoy index over the compared vectors (absent without Annoy)
    thumbs/<sha1>.jpg        small JPEGs, shared by versions, written once

Every change writes a complete new version folder, then swaps ``CURRENT``: a process killed at
any point leaves the previous gallery loadable. Every file of a version is listed with its sha256
in gallery.json and checked on load. Annoy cannot add items after a build, so enrolment rebuilds
the index (milliseconds for thousands of items). Writers hold edge.gallery.lock while they change
the gallery; readers need no lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.atomic import fsync_dir, write_bytes_atomic, write_text_atomic
from edge.gallery.comparison import Comparison
from edge.gallery.index import (  # noqa: F401 - re-exported: the gallery's public names
    DEFAULT_SEARCH_K,
    EXACT_SEARCH_MAX_ITEMS,
    Gallery,
    GalleryError,
    GalleryItems,
    Identification,
    Match,
)
from edge.gallery.openset import Calibration
from edge.manifest import file_sha256 as _sha256
from edge.layout import (
    CURRENT,
    GALLERY_EMBEDDINGS,
    GALLERY_INDEX,
    GALLERY_INFO,
    GALLERY_ITEMS,
    THUMBS,
    VERSION_PREFIX,
    UnsafePathError,
    refuse_symlink,
)

try:  # Annoy is optional on the device (pip extra "ann"): without it every search is exact.
    from annoy import AnnoyIndex
except ImportError:  # pragma: no cover - exercised in the package test's venv
    AnnoyIndex = None

log = logging.getLogger(__name__)

GALLERY_SCHEMA = 2
VOTING_GALLERY_SCHEMA = 3
"""Written when the fitted comparison has a label vote: a runtime that does not know the vote
(0.2.x) would rank by plain cosine against a threshold fitted on voted scores, so it must refuse."""
WHITENED_GALLERY_SCHEMA = 4
"""Written when the fitted comparison whitens: a 0.3.x runtime would compare without it."""
READABLE_GALLERY_SCHEMAS = (1, 2, 3, 4)
BACKGROUND_FILE = "background.npy"
CENTRES_FILE = "centres.npy"
WHITENING_FILE = "whitening.npy"
WHITENING_MEAN_FILE = "whitening_mean.npy"
DEFAULT_TREES = 32
MAX_TREES = 1024
MAX_SEARCH_K = 10_000_000
THUMBNAIL_NAME = re.compile(r"^[0-9a-f]{40}\.jpg$")
_warned_no_annoy = False


def load_gallery(root: Path, embedding_size: int | None = None, model_sha256: str | None = None,
                 fallback_calibration: Calibration | None = None) -> Gallery:
    """Loads the live version; checks it against the model when size/hash are given.

    A writer may swap and prune versions while this reads; a version that vanishes under the
    reader is retried from the new ``CURRENT``.

    Raises:
      GalleryError: missing, half-written, corrupt or out-of-range files, or another model's gallery.
    """
    for attempt in range(3):
        version_dir = current_version(root)
        try:
            return _load_version(Path(root), version_dir, embedding_size, model_sha256, fallback_calibration)
        except GalleryError:
            if attempt < 2 and not version_dir.exists():
                continue  # pruned between reading CURRENT and the files: read CURRENT again
            raise
    raise GalleryError(f"{root}: the live version kept changing while it was read")  # pragma: no cover


def _load_version(root: Path, version_dir: Path, embedding_size, model_sha256, fallback) -> Gallery:
    info = _read_json(version_dir / GALLERY_INFO)
    schema = info.get("schema_version")
    if schema not in READABLE_GALLERY_SCHEMAS:
        raise GalleryError(f"{version_dir / GALLERY_INFO}: schema_version {schema!r} is not one of "
                           f"{list(READABLE_GALLERY_SCHEMAS)}; rebuild it: python -m edge.gallery build")
    _check_files(version_dir, info)
    dim = _int_field(info, "embedding_size", 1, 1 << 16, version_dir)
    count = _int_field(info, "count", 0, 1 << 31, version_dir)
    _int_field(info, "trees", 1, MAX_TREES, version_dir)
    if "search_k" in info:
        _int_field(info, "search_k", -1, MAX_SEARCH_K, version_dir)
    items = _read_items(version_dir, dim, count)
    if embedding_size is not None and dim != embedding_size:
        raise GalleryError(
            f"{root}: gallery embeddings have {dim} dimensions but the model makes {embedding_size}; "
            "this gallery belongs to another model. Rebuild it: python -m edge.gallery build"
        )
    if model_sha256 is not None and info.get("model_sha256") != model_sha256:
        raise GalleryError(
            f"{root}: gallery was built with model sha256 {str(info.get('model_sha256'))[:12]}..., the bundle's "
            f"model is {model_sha256[:12]}...; rebuild it: python -m edge.gallery build"
        )
    try:
        comparison = _read_comparison(version_dir, info, dim)
        calibration = Calibration.from_json(info["calibration"], str(version_dir / GALLERY_INFO)) \
            if info.get("calibration") else fallback
    except (ValueError, OSError) as error:
        raise GalleryError(str(error)) from error
    background = _read_matrix(version_dir / BACKGROUND_FILE, dim) if (version_dir / BACKGROUND_FILE).is_file() else None
    return Gallery(root, info, items, _load_index(version_dir, dim, len(items)), comparison, calibration,
                   background, version_dir.name)


def current_version(root: Path) -> Path:
    """The live version folder named by ``CURRENT``."""
    root = refuse_symlink(Path(root), "gallery folder")
    pointer = root / CURRENT
    if not pointer.is_file():
        raise GalleryError(
            f"no gallery at {root} ({pointer.name} missing); build one: python -m edge.gallery build --bundle DIR FOLDER"
        )
    try:
        name = pointer.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError as error:
        raise GalleryError(f"{pointer} is not UTF-8 text ({error}); the gallery pointer is corrupt") from error
    version_dir = root / name
    if not name.startswith(VERSION_PREFIX) or "/" in name or "\\" in name or name in (".", "..") \
            or version_dir.is_symlink() or not version_dir.is_dir():
        raise GalleryError(f"{pointer} names {name[:80]!r}, which is not a version folder of {root}")
    return version_dir


def save_gallery(
    root: Path, items: GalleryItems, model_sha256: str, trees: int = DEFAULT_TREES,
    search_k: int = DEFAULT_SEARCH_K, extra: dict | None = None, comparison: Comparison | None = None,
    calibration: Calibration | None = None, background: np.ndarray | None = None,
) -> Path:
    """Writes ``items`` as a new version and makes it live atomically; returns the version folder.

    Call it with the gallery's lock held (edge.gallery.lock) when other writers may run. A failed
    write (a full disk) removes its half-written folder and leaves the live version as it was.
    """
    root = refuse_symlink(Path(root), "gallery folder")
    if not 1 <= int(trees) <= MAX_TREES:
        raise GalleryError(f"trees must be 1..{MAX_TREES}, got {trees}")
    root.mkdir(parents=True, exist_ok=True)
    dim = int(items.embeddings.shape[1])
    embeddings = np.asarray(items.embeddings, dtype=np.float32)
    if not np.isfinite(embeddings).all():
        raise GalleryError("refusing to save embeddings with NaN or infinite values")
    comparison = comparison or Comparison.default((), dim)
    version = root / f"{VERSION_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**9:09d}"
    version.mkdir()
    try:
        files = {GALLERY_EMBEDDINGS: _npy_bytes(embeddings)}
        if background is not None:
            files[BACKGROUND_FILE] = _npy_bytes(np.asarray(background, np.float32))
        if comparison.centres is not None:
            files[CENTRES_FILE] = _npy_bytes(comparison.centres.astype(np.float32))
        if comparison.whitening is not None:
            files[WHITENING_FILE] = _npy_bytes(comparison.whitening.matrix.astype(np.float32))
            files[WHITENING_MEAN_FILE] = _npy_bytes(comparison.whitening.mean.astype(np.float32))
        items_json = {"labels": items.labels, "paths": items.paths, "thumbnails": items.thumbnails,
                      "hashes": items.hashes}
        files[GALLERY_ITEMS] = (json.dumps(items_json) + "\n").encode("utf-8")
        for name, data in files.items():
            write_bytes_atomic(version / name, data)
        if AnnoyIndex is not None and len(items):
            _build_index(version / GALLERY_INDEX, comparison.apply(embeddings), trees)
        info = {
            "schema_version": _schema_of(comparison), "embedding_size": dim, "metric": "angular",
            "distance": "cosine (1 - cos)", "trees": int(trees), "search_k": int(search_k), "count": len(items),
            "model_sha256": model_sha256, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "comparison": comparison.to_json(),
            "calibration": calibration.to_json() if calibration else None,
            "files": {name: _sha256(version / name) for name in sorted(os.listdir(version))},
            **(extra or {}),
        }
        write_text_atomic(version / GALLERY_INFO, json.dumps(info, indent=2) + "\n")
        fsync_dir(version)
        write_text_atomic(root / CURRENT, version.name + "\n")  # the commit point
    except BaseException:
        shutil.rmtree(version, ignore_errors=True)
        raise
    remove_stale_versions(root, keep=version.name)
    return version


def store_thumbnail(root: Path, jpeg: bytes) -> str:
    """Writes a thumbnail once under its content hash; returns its file name."""
    name = hashlib.sha1(jpeg).hexdigest() + ".jpg"
    folder = thumbs_dir(root)
    path = folder / name
    if not path.exists():
        write_bytes_atomic(path, jpeg)
    return name


def thumbs_dir(root: Path) -> Path:
    """``root/thumbs``, refused when it (or the gallery folder) is a symlink."""
    refuse_symlink(Path(root), "gallery folder")
    return refuse_symlink(Path(root) / THUMBS, "thumbnail folder")


def prune_thumbnails(root: Path, keep: Sequence[str | None]) -> int:
    """Deletes thumbnails no item refers to; returns how many were removed. Only real files named
    like thumbnails, in a real ``thumbs/`` folder, are ever deleted."""
    folder = thumbs_dir(root)
    if not folder.is_dir():
        return 0
    wanted = {name for name in keep if name}
    removed = 0
    for path in folder.iterdir():
        if THUMBNAIL_NAME.match(path.name) and path.name not in wanted and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def remove_stale_versions(root: Path, keep: str) -> None:
    """Deletes every version folder but ``keep`` that is not newer than it (half-written ones left
    by a killed writer included). Never deletes the live version or one made after ``keep``."""
    root = Path(root)
    try:
        live = current_version(root).name
        keep_time = (root / keep).stat().st_mtime
    except (GalleryError, OSError):
        return
    for path in root.glob(f"{VERSION_PREFIX}*"):
        if path.name in (keep, live) or path.is_symlink() or not path.is_dir():
            continue
        try:
            if path.stat().st_mtime > keep_time:
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)


def referenced_thumbnails(root: Path) -> set[str]:
    """Thumbnail names the live version refers to (empty without a readable live version)."""
    try:
        items = json.loads((current_version(root) / GALLERY_ITEMS).read_text(encoding="utf-8"))
        return {t for t in items.get("thumbnails", []) if isinstance(t, str)}
    except (GalleryError, OSError, ValueError):
        return set()


def _build_index(path: Path, vectors: np.ndarray, trees: int) -> None:
    index = AnnoyIndex(int(vectors.shape[1]), "angular")
    for i, vector in enumerate(vectors):
        index.add_item(i, vector.tolist())
    index.build(int(trees))
    index.save(str(path))
    index.unload()
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _load_index(version_dir: Path, dim: int, count: int):
    global _warned_no_annoy
    path = version_dir / GALLERY_INDEX
    if AnnoyIndex is None:
        if not _warned_no_annoy:
            log.info("annoy is not installed: every search is exact (numpy); pip install 'siamese-edge[ann]' adds it")
            _warned_no_annoy = True
        return None
    if count == 0:
        return None
    if not path.is_file():
        log.info("%s has no Annoy index (written without annoy): searching exactly", version_dir.name)
        return None
    index = AnnoyIndex(dim, "angular")
    try:
        loaded = bool(index.load(str(path)))
    except OSError:
        loaded = False
    if not loaded:
        raise GalleryError(f"{path} is not an Annoy index")
    if index.get_n_items() != count:
        raise GalleryError(f"{path} holds {index.get_n_items()} items, items.json {count}")
    return index


def _read_items(version_dir: Path, dim: int, count: int) -> GalleryItems:
    path = version_dir / GALLERY_ITEMS
    values = _read_json(path)
    embeddings = _read_matrix(version_dir / GALLERY_EMBEDDINGS, dim)
    fields = {}
    for name in ("labels", "paths", "thumbnails", "hashes"):
        value = values.get(name, [None] * count if name == "hashes" else None)
        if not isinstance(value, list) or len(value) != count:
            raise GalleryError(f"{path}: {name!r} must be a list of {count} entries (gallery.json count), "
                               f"got {type(value).__name__} of {len(value) if isinstance(value, list) else '?'}")
        fields[name] = value
    if not all(isinstance(v, str) and v for v in fields["labels"] + fields["paths"]):
        raise GalleryError(f"{path}: labels and paths must be non-empty strings")
    if not all(t is None or (isinstance(t, str) and THUMBNAIL_NAME.match(t)) for t in fields["thumbnails"]):
        raise GalleryError(f"{path}: thumbnails must be <sha1>.jpg names inside thumbs/")
    if len(embeddings) != count:
        raise GalleryError(f"{version_dir}: gallery.json says {count} items, {GALLERY_EMBEDDINGS} holds "
                           f"{embeddings.shape[0]} rows of {embeddings.shape[1]}")
    return GalleryItems(embeddings, fields["labels"], fields["paths"], fields["thumbnails"], fields["hashes"])


def _read_matrix(path: Path, dim: int) -> np.ndarray:
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise GalleryError(f"{path} is unreadable ({error})") from error
    if matrix.ndim != 2 or matrix.shape[1] != dim or matrix.dtype.kind != "f":
        raise GalleryError(f"{path} holds {matrix.dtype} {matrix.shape}, expected (N, {dim}) floats")
    matrix = matrix.astype(np.float32)
    if not np.isfinite(matrix).all():
        raise GalleryError(f"{path} holds NaN or infinite values; rebuild the gallery")
    return matrix


def _read_array(path: Path, shape: tuple) -> np.ndarray:
    """A comparison array of exactly ``shape``, finite, as float32 (GalleryError naming the file)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise GalleryError(f"{path} is unreadable ({error}); rebuild the gallery: python -m edge.gallery build") \
            from error
    if array.shape != shape or array.dtype.kind != "f" or not np.isfinite(array).all():
        raise GalleryError(f"{path} holds {array.dtype} {array.shape}, expected finite floats of shape {shape}; "
                           "rebuild the gallery: python -m edge.gallery build")
    return array.astype(np.float32)


def _read_comparison(version_dir: Path, info: dict, dim: int) -> Comparison:
    values = info.get("comparison")
    if not values:
        return Comparison.default((), dim)
    if not isinstance(values, dict):
        raise ValueError(f"{version_dir / GALLERY_INFO}: comparison must be an object")
    centres = _read_array(version_dir / CENTRES_FILE, (dim,)) if values.get("centred") else None
    whitening = None
    if values.get("whitening") is not None:
        whitening = (_read_array(version_dir / WHITENING_MEAN_FILE, (dim,)),
                     _read_array(version_dir / WHITENING_FILE, (dim, dim)))
    elif info.get("schema_version") == WHITENED_GALLERY_SCHEMA:
        raise ValueError(f"{version_dir / GALLERY_INFO}: schema {WHITENED_GALLERY_SCHEMA} is written for whitened "
                         "galleries, but the comparison names no whitening; rebuild it: python -m edge.gallery build")
    comparison = Comparison.from_json(values, centres, str(version_dir / GALLERY_INFO), whitening)
    if sum(comparison.sizes) != dim:
        raise ValueError(f"{version_dir / GALLERY_INFO}: comparison sizes {list(comparison.sizes)} != {dim}")
    return comparison


def _schema_of(comparison: Comparison) -> int:
    """The oldest schema that says everything this comparison does (older runtimes refuse newer ones)."""
    if comparison.whitening is not None:
        return WHITENED_GALLERY_SCHEMA
    return VOTING_GALLERY_SCHEMA if comparison.prototype_weight > 0 else GALLERY_SCHEMA


def _check_files(version_dir: Path, info: dict) -> None:
    files = info.get("files")
    if files is None:
        return  # schema 1 galleries carry no checksums
    if not isinstance(files, dict):
        raise GalleryError(f"{version_dir / GALLERY_INFO}: 'files' must map file names to sha256")
    for name, expected in files.items():
        path = version_dir / str(name)
        if "/" in str(name) or not path.is_file() or path.is_symlink():
            raise GalleryError(f"{path} is missing; the gallery version is incomplete")
        if _sha256(path) != expected:
            raise GalleryError(f"{path} does not match its checksum in {GALLERY_INFO}: the file was changed or "
                               "corrupted. Rebuild the gallery: python -m edge.gallery build")


def _int_field(info: dict, name: str, low: int, high: int, where: Path) -> int:
    value = info.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or int(value) != value or not low <= value <= high:
        raise GalleryError(f"{where / GALLERY_INFO}: {name} is {value!r}, expected an integer in {low}..{high}")
    return int(value)


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise GalleryError(f"{path} is missing; the gallery is incomplete")
    try:
        values = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise GalleryError(f"{path} is not valid UTF-8 JSON ({error})") from error
    if not isinstance(values, dict):
        raise GalleryError(f"{path}: expected a JSON object, got {type(values).__name__}")
    return values


__all__ = ["CURRENT", "THUMBS", "DEFAULT_SEARCH_K", "DEFAULT_TREES", "EXACT_SEARCH_MAX_ITEMS", "Gallery", "GalleryError",
           "GalleryItems", "Identification", "Match", "UnsafePathError", "current_version",
           "load_gallery", "prune_thumbnails", "save_gallery", "store_thumbnail"]
