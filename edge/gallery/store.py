"""The gallery on disk: an Annoy index plus the embeddings, labels, paths and thumbnails behind it.

Layout of ``<bundle>/gallery/``::

    CURRENT                  name of the live version folder (replaced atomically)
    v-<stamp>/gallery.json   embedding size, metric, trees, model sha256, item count
    v-<stamp>/items.json     labels, relative paths, thumbnail names
    v-<stamp>/embeddings.npy (N, D) float32 unit vectors (kept because Annoy cannot add items)
    v-<stamp>/index.ann      Annoy "angular" index over the embeddings
    thumbs/<sha1>.jpg        small JPEGs, shared by versions, written once

Every change writes a complete new version folder, then swaps ``CURRENT``: a process killed at
any point leaves the previous gallery loadable. Annoy cannot add items after a build, so
enrolment rebuilds the index from the stored embeddings (milliseconds for thousands of items).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from annoy import AnnoyIndex

from edge.atomic import fsync_dir, write_bytes_atomic, write_text_atomic
from edge.metrics import l2_normalize

CURRENT = "CURRENT"
THUMBS = "thumbs"
GALLERY_SCHEMA = 1
DEFAULT_TREES = 32
# Nodes Annoy inspects per query unless told otherwise. Fixed (not Annoy's trees * k) so that the
# top 5 is always the prefix of the top 10, and high enough for recall >= 0.99 on galleries of
# tens of thousands (benchmarks/RESULTS.md measures it against exact search).
DEFAULT_SEARCH_K = 4000
# Below this many items exact numpy search is both faster and exact (benchmarks/RESULTS.md:
# 10,000 x 128-d exact 0.15 ms vs Annoy at search_k 4000 0.29 ms), so "auto" uses it.
EXACT_SEARCH_MAX_ITEMS = 10_000


class GalleryError(ValueError):
    """A gallery is missing, corrupt, or does not belong to the model."""


@dataclass(frozen=True)
class Match:
    """One search result; distance is cosine distance (1 - cos), similarity is cos."""

    label: str
    path: str
    distance: float
    similarity: float
    thumbnail: str | None = None

    def to_json(self) -> dict:
        return {"label": self.label, "path": self.path, "distance": round(self.distance, 6),
                "similarity": round(self.similarity, 6)}


@dataclass(frozen=True)
class GalleryItems:
    """What a gallery holds, in index order."""

    embeddings: np.ndarray
    labels: list[str]
    paths: list[str]
    thumbnails: list[str | None]

    def __post_init__(self):
        n = len(self.embeddings)
        if not (len(self.labels) == len(self.paths) == len(self.thumbnails) == n):
            raise GalleryError(
                f"gallery items disagree: {n} embeddings, {len(self.labels)} labels, "
                f"{len(self.paths)} paths, {len(self.thumbnails)} thumbnails"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def concat(self, other: "GalleryItems") -> "GalleryItems":
        return GalleryItems(
            np.concatenate([self.embeddings, other.embeddings]).astype(np.float32),
            self.labels + other.labels, self.paths + other.paths, self.thumbnails + other.thumbnails,
        )

    def without_label(self, label: str) -> "GalleryItems":
        keep = [i for i, item_label in enumerate(self.labels) if item_label != label]
        return GalleryItems(
            self.embeddings[keep], [self.labels[i] for i in keep], [self.paths[i] for i in keep],
            [self.thumbnails[i] for i in keep],
        )

    @classmethod
    def empty(cls, dim: int) -> "GalleryItems":
        return cls(np.zeros((0, dim), np.float32), [], [], [])


class Gallery:
    """A loaded gallery version: search by vector."""

    def __init__(self, root: Path, info: dict, items: GalleryItems, index: AnnoyIndex):
        self.root = Path(root)
        self.info = info
        self.items = items
        self.index = index

    def __len__(self) -> int:
        return len(self.items)

    @property
    def embedding_size(self) -> int:
        return int(self.info["embedding_size"])

    def search(self, vector: np.ndarray, k: int = 5, search_k: int | None = None,
               exact: bool | None = None) -> list[Match]:
        """The ``k`` nearest items to a unit vector, best first.

        Args:
          vector: (D,) query embedding (normalised here again for safety).
          k: results wanted.
          search_k: Annoy nodes to inspect; None uses the gallery's ``search_k`` (gallery.json),
            -1 Annoy's own default (trees * k). More is slower and closer to exact.
          exact: True brute-force numpy search, False Annoy, None (auto) exact for galleries of at
            most EXACT_SEARCH_MAX_ITEMS items and Annoy above.
        """
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.embedding_size:
            raise GalleryError(f"query has {vector.shape[0]} dimensions, the gallery {self.embedding_size}")
        if len(self) == 0:
            return []
        vector = l2_normalize(vector)
        k = min(k, len(self))
        if exact is None:
            exact = len(self) <= EXACT_SEARCH_MAX_ITEMS
        if exact:
            similarity = self.items.embeddings @ vector
            order = np.argsort(-similarity, kind="stable")[:k]
            pairs = [(int(i), float(similarity[i])) for i in order]
        else:
            if search_k is None:
                search_k = int(self.info.get("search_k", DEFAULT_SEARCH_K))
            ids, distances = self.index.get_nns_by_vector(vector.tolist(), k, search_k=search_k, include_distances=True)
            # Annoy's angular distance is sqrt(2 - 2 cos) for unit vectors.
            pairs = [(int(i), 1.0 - d * d / 2.0) for i, d in zip(ids, distances)]
        return [
            Match(self.items.labels[i], self.items.paths[i], 1.0 - s, s, self.items.thumbnails[i]) for i, s in pairs
        ]

    def thumbnail_path(self, match: Match) -> Path | None:
        return self.root / THUMBS / match.thumbnail if match.thumbnail else None

    def label_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for label in self.items.labels:
            counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))


def load_gallery(root: Path, embedding_size: int | None = None, model_sha256: str | None = None) -> Gallery:
    """Loads the live version; checks it against the model when size/hash are given.

    Raises:
      GalleryError: missing, half-written or corrupt files, or a gallery made by another model.
    """
    root = Path(root)
    version_dir = current_version(root)
    info = _read_json(version_dir / "gallery.json")
    items_json = _read_json(version_dir / "items.json")
    try:
        embeddings = np.load(version_dir / "embeddings.npy", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise GalleryError(f"{version_dir / 'embeddings.npy'} is unreadable ({error})") from error
    try:
        items = GalleryItems(embeddings.astype(np.float32), list(items_json["labels"]), list(items_json["paths"]),
                             list(items_json["thumbnails"]))
    except KeyError as error:
        raise GalleryError(f"{version_dir / 'items.json'} lacks {error}") from error
    dim = int(info.get("embedding_size", -1))
    if embeddings.ndim != 2 or (len(items) and embeddings.shape[1] != dim) or len(items) != info.get("count"):
        raise GalleryError(
            f"{version_dir}: gallery.json says {info.get('count')} items of size {dim}, "
            f"embeddings.npy holds {embeddings.shape}"
        )
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
    index = AnnoyIndex(dim, "angular")
    index_path = version_dir / "index.ann"
    if not index_path.is_file() or (len(items) and not _annoy_load(index, index_path)):
        raise GalleryError(f"{index_path} is missing or not an Annoy index")
    if len(items) and index.get_n_items() != len(items):
        raise GalleryError(f"{index_path} holds {index.get_n_items()} items, items.json {len(items)}")
    return Gallery(root, info, items, index)


def current_version(root: Path) -> Path:
    """The live version folder named by ``CURRENT``."""
    pointer = Path(root) / CURRENT
    if not pointer.is_file():
        raise GalleryError(
            f"no gallery at {root} ({pointer.name} missing); build one: python -m edge.gallery build --bundle DIR FOLDER"
        )
    name = pointer.read_text(encoding="utf-8").strip()
    version_dir = Path(root) / name
    if not name or "/" in name or not version_dir.is_dir():
        raise GalleryError(f"{pointer} names {name!r}, which is not a version folder of {root}")
    return version_dir


def save_gallery(
    root: Path, items: GalleryItems, model_sha256: str, trees: int = DEFAULT_TREES,
    search_k: int = DEFAULT_SEARCH_K, extra: dict | None = None,
) -> Path:
    """Writes ``items`` as a new version and makes it live atomically; returns the version folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    dim = int(items.embeddings.shape[1])
    embeddings = l2_normalize(items.embeddings)
    version = root / f"v-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    version.mkdir()
    index = AnnoyIndex(dim, "angular")
    for i, vector in enumerate(embeddings):
        index.add_item(i, vector.tolist())
    index.build(trees)
    index.save(str(version / "index.ann"))
    index.unload()
    _fsync_file(version / "index.ann")
    with open(version / "embeddings.npy", "wb") as handle:
        np.save(handle, embeddings, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    items_json = {"labels": items.labels, "paths": items.paths, "thumbnails": items.thumbnails}
    write_text_atomic(version / "items.json", json.dumps(items_json) + "\n")
    info = {
        "schema_version": GALLERY_SCHEMA, "embedding_size": dim, "metric": "angular", "distance": "cosine (1 - cos)",
        "trees": trees, "search_k": search_k, "count": len(items), "model_sha256": model_sha256,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {}),
    }
    write_text_atomic(version / "gallery.json", json.dumps(info, indent=2) + "\n")
    fsync_dir(version)
    write_text_atomic(root / CURRENT, version.name + "\n")  # the commit point
    _remove_stale_versions(root, keep=version.name)
    return version


def store_thumbnail(root: Path, jpeg: bytes) -> str:
    """Writes a thumbnail once under its content hash; returns its file name."""
    name = hashlib.sha1(jpeg).hexdigest() + ".jpg"
    path = Path(root) / THUMBS / name
    if not path.exists():
        write_bytes_atomic(path, jpeg)
    return name


def prune_thumbnails(root: Path, keep: Sequence[str | None]) -> int:
    """Deletes thumbnails no item refers to; returns how many were removed."""
    folder = Path(root) / THUMBS
    if not folder.is_dir():
        return 0
    wanted = {name for name in keep if name}
    removed = 0
    for path in folder.glob("*.jpg"):
        if path.name not in wanted:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _remove_stale_versions(root: Path, keep: str) -> None:
    for path in root.glob("v-*"):
        if path.is_dir() and path.name != keep:
            shutil.rmtree(path, ignore_errors=True)


def _annoy_load(index: AnnoyIndex, path: Path) -> bool:
    try:
        return bool(index.load(str(path)))
    except OSError:
        return False


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise GalleryError(f"{path} is missing; the gallery is incomplete")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise GalleryError(f"{path} is not valid JSON ({error})") from error
