"""On-device enrolment: embed new images and fold them into the gallery (no retraining)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from edge.encoder import Encoder
from edge.gallery.store import (
    DEFAULT_SEARCH_K,
    DEFAULT_TREES,
    GalleryError,
    GalleryItems,
    load_gallery,
    prune_thumbnails,
    save_gallery,
    store_thumbnail,
)
from edge.images import ImageError, is_image_file, read_image
from edge.preprocess import shrink_to_short_side

log = logging.getLogger(__name__)
THUMBNAIL_SIDE = 96


@dataclass
class EnrolReport:
    """What an enrolment did."""

    added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    total: int = 0


def folder_items(folder: Path) -> list[tuple[Path, str]]:
    """``(image path, label)`` for every image in ``folder/<label>/``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}; expected <label>/<image> sub-folders")
    items = [
        (path, class_dir.name)
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        for path in sorted(class_dir.rglob("*"))
        if is_image_file(path)
    ]
    if not items:
        raise FileNotFoundError(f"{folder} has no images in <label>/ sub-folders")
    return items


def thumbnail_jpeg(rgb: np.ndarray, side: int = THUMBNAIL_SIDE) -> bytes:
    """A small JPEG (shorter side ``side``) of an RGB image."""
    small = shrink_to_short_side(rgb, side)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ImageError("could not encode a thumbnail")
    return encoded.tobytes()


def embed_items(
    encoder: Encoder,
    gallery_root: Path,
    items: Iterable[tuple[Path, str]],
    relative_to: Path | None = None,
) -> tuple[GalleryItems, list[tuple[str, str]]]:
    """Embeds images and stores their thumbnails; unreadable images are skipped and reported."""
    vectors, labels, paths, thumbs, skipped = [], [], [], [], []
    for path, label in items:
        shown = _display_path(Path(path), relative_to)
        try:
            rgb = read_image(path)
        except ImageError as error:
            log.warning("skipping %s: %s", shown, error)
            skipped.append((shown, str(error)))
            continue
        vectors.append(encoder.embed_rgb(rgb))
        labels.append(label)
        paths.append(shown)
        thumbs.append(store_thumbnail(gallery_root, thumbnail_jpeg(rgb)))
    dim = encoder.embedding_size
    embeddings = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    return GalleryItems(embeddings, labels, paths, thumbs), skipped


def build(encoder: Encoder, gallery_root: Path, model_sha256: str, items: Sequence[tuple[Path, str]],
          relative_to: Path | None = None, trees: int = DEFAULT_TREES) -> EnrolReport:
    """Replaces the gallery with exactly ``items``."""
    new, skipped = embed_items(encoder, gallery_root, items, relative_to)
    save_gallery(gallery_root, new, model_sha256, trees)
    prune_thumbnails(gallery_root, new.thumbnails)
    return EnrolReport(added=len(new), skipped=skipped, total=len(new))


def add(encoder: Encoder, gallery_root: Path, model_sha256: str, items: Sequence[tuple[Path, str]],
        relative_to: Path | None = None) -> EnrolReport:
    """Appends ``items`` to the live gallery (rebuilding the Annoy index from stored embeddings)."""
    current = load_gallery(gallery_root, encoder.embedding_size, model_sha256)
    new, skipped = embed_items(encoder, gallery_root, items, relative_to)
    merged = current.items.concat(new)
    save_gallery(gallery_root, merged, model_sha256, int(current.info.get("trees", DEFAULT_TREES)),
                 int(current.info.get("search_k", DEFAULT_SEARCH_K)))
    return EnrolReport(added=len(new), skipped=skipped, total=len(merged))


def remove_label(gallery_root: Path, label: str, embedding_size: int, model_sha256: str) -> int:
    """Removes every item of ``label``; returns how many were removed."""
    current = load_gallery(gallery_root, embedding_size, model_sha256)
    kept = current.items.without_label(label)
    removed = len(current) - len(kept)
    if removed == 0:
        raise GalleryError(f"label {label!r} is not in the gallery (labels: {sorted(current.label_counts())})")
    save_gallery(gallery_root, kept, model_sha256, int(current.info.get("trees", DEFAULT_TREES)),
                 int(current.info.get("search_k", DEFAULT_SEARCH_K)))
    prune_thumbnails(gallery_root, kept.thumbnails)
    return removed


def _display_path(path: Path, relative_to: Path | None) -> str:
    if relative_to is not None:
        try:
            return path.resolve().relative_to(Path(relative_to).resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()
