"""On-device enrolment: embed new images and fold them into the gallery (no retraining).

Every change (build, add, remove, calibrate) runs under the gallery's writer lock, embeds what is
new, refits how the gallery compares (edge.gallery.comparison) and when it answers "unknown"
(edge.gallery.openset) to what is now enrolled, and commits a new version atomically.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import cv2
import numpy as np

from edge.encoder import Encoder
from edge.gallery.comparison import MAX_FIT_QUERIES, Comparison, fit_comparison, fit_sample, loo_queries
from edge.gallery.lock import gallery_lock
from edge.gallery.openset import (DEFAULT_FAR, Calibration, background_frames, bundle_calibration, calibrate,
                                  calibration_from_scores)
from edge.gallery.whitening import held_out_scores
from edge.gallery.store import (
    DEFAULT_SEARCH_K,
    DEFAULT_TREES,
    GalleryError,
    GalleryItems,
    load_gallery,
    prune_thumbnails,
    referenced_thumbnails,
    save_gallery,
    store_thumbnail,
)
from edge.images import ImageError, is_image_file, read_image
from edge.manifest import file_sha256
from edge.preprocess import shrink_to_short_side

log = logging.getLogger(__name__)
THUMBNAIL_SIDE = 96
HASH_LIMIT_BYTES = 256 << 20  # larger files are refused by the decoder anyway; don't hash them
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class GallerySettings:
    """What a gallery change needs from the bundle besides the images."""

    model_sha256: str
    segments: tuple = ()
    manifest_threshold: float = 0.5
    """The manifest's pair threshold (cosine distance): the fallback when the gallery is too small."""
    far: float = DEFAULT_FAR

    @classmethod
    def of(cls, manifest, far: float = DEFAULT_FAR) -> "GallerySettings":
        return cls(manifest.model_sha256, tuple(manifest.output.segments), manifest.verification.threshold, far)


@dataclass
class EnrolReport:
    """What an enrolment did."""

    added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Images that failed, with the reason."""
    duplicates: list[str] = field(default_factory=list)
    """Images whose bytes were already enrolled (or given twice)."""
    total: int = 0
    comparison: Comparison | None = None
    calibration: Calibration | None = None


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
    known_hashes: Iterable[str | None] = (),
    progress: Progress | None = None,
    report: EnrolReport | None = None,
) -> tuple[GalleryItems, list[tuple[str, str]]]:
    """Embeds images and stores their thumbnails; unreadable images are skipped and reported,
    images whose bytes are in ``known_hashes`` (or earlier in ``items``) are skipped as duplicates."""
    items = list(items)
    report = report if report is not None else EnrolReport()
    seen = {h for h in known_hashes if h}
    vectors, labels, paths, thumbs, hashes = [], [], [], [], []
    for done, (path, label) in enumerate(items, 1):
        shown = display_path(Path(path), relative_to)
        try:
            digest = _file_sha256(Path(path))
            if digest is not None and digest in seen:
                report.duplicates.append(shown)
                continue
            rgb = read_image(path)
            vector = encoder.embed_rgb(rgb)
            thumbnail = store_thumbnail(gallery_root, thumbnail_jpeg(rgb))
        except (ImageError, OSError) as error:
            log.warning("skipping %s: %s", shown, error)
            report.skipped.append((shown, str(error)))
            continue
        finally:
            if progress:
                progress(done, len(items))
        seen.add(digest)
        vectors.append(vector)
        labels.append(label)
        paths.append(shown)
        thumbs.append(thumbnail)
        hashes.append(digest)
    dim = encoder.embedding_size
    embeddings = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    return GalleryItems(embeddings, labels, paths, thumbs, hashes), report.skipped


def embed_background(encoder: Encoder) -> np.ndarray:
    """The "nothing" reference frames (edge.gallery.openset) through this encoder."""
    return np.stack([encoder.embed_rgb(frame) for frame in background_frames()]).astype(np.float32)


def commit(root: Path, items: GalleryItems, settings: GallerySettings, background: np.ndarray | None,
           trees: int = DEFAULT_TREES, search_k: int = DEFAULT_SEARCH_K, report: EnrolReport | None = None) -> Path:
    """Fits comparison and calibration to ``items`` and saves them as the live version."""
    comparison = fit_comparison(items.embeddings, items.labels, settings.segments)
    calibration = calibrate_comparison(comparison, items, settings)
    if calibration.source != "gallery" and (comparison.prototype_weight > 0 or comparison.whitening is not None):
        # Too few impostors to fit a threshold: the fallback is a plain-cosine threshold, so no vote
        # and no whitening (the threshold means nothing for scores that are not plain cosines).
        comparison = replace(comparison, prototype_weight=0.0, whitening=None)
    version = save_gallery(root, items, settings.model_sha256, trees, search_k, comparison=comparison,
                           calibration=calibration, background=background)
    prune_thumbnails(root, items.thumbnails)
    if report is not None:
        report.comparison, report.calibration, report.total = comparison, calibration, len(items)
    return version


def calibrate_comparison(comparison: Comparison, items: GalleryItems, settings: GallerySettings) -> Calibration:
    """The "unknown" and pair thresholds for ``comparison``: leave-one-out, or, when it whitens
    (a metric fitted on these very items), on held-out folds with the whitening refitted without them."""
    fallback = bundle_calibration(settings.manifest_threshold, settings.far)
    if comparison.whitening is None:
        vectors = comparison.apply(items.embeddings) if len(items) else items.embeddings
        return calibrate(vectors, items.labels, settings.far, fallback, loo_queries(items.labels),
                         comparison.prototype_weight)
    sample = fit_sample(len(items))  # the items the whitening was fitted on
    labels = np.asarray(items.labels)[sample]
    scores = held_out_scores(comparison.without_whitening().apply(items.embeddings[sample]),
                             np.unique(labels, return_inverse=True)[1].reshape(-1), comparison.whitening.strength,
                             comparison.prototype_weight, MAX_FIT_QUERIES)
    return calibration_from_scores(scores, settings.far, fallback)


def build(encoder: Encoder, gallery_root: Path, settings: GallerySettings | str, items: Sequence[tuple[Path, str]],
          relative_to: Path | None = None, trees: int = DEFAULT_TREES, allow_empty: bool = False,
          wait: bool = True, progress: Progress | None = None) -> EnrolReport:
    """Replaces the gallery with exactly ``items`` (refused when nothing decodes, unless ``allow_empty``)."""
    settings = _settings(settings)
    report = EnrolReport()
    with gallery_lock(gallery_root, wait):
        with _cleanup_on_failure(gallery_root):
            new, _ = embed_items(encoder, gallery_root, items, relative_to, progress=progress, report=report)
            if len(new) == 0 and not allow_empty:
                raise GalleryError(
                    f"none of the {len(items)} images could be enrolled ({_first_reasons(report)}); the gallery "
                    "was left as it was. Check the folder, or pass --allow-empty to really build an empty gallery"
                )
            commit(gallery_root, new, settings, embed_background(encoder), trees, report=report)
    report.added = len(new)
    return report


def add(encoder: Encoder, gallery_root: Path, settings: GallerySettings | str, items: Sequence[tuple[Path, str]],
        relative_to: Path | None = None, wait: bool = True, progress: Progress | None = None) -> EnrolReport:
    """Appends ``items`` to the live gallery (rebuilding the index from stored embeddings)."""
    settings = _settings(settings)
    report = EnrolReport()
    with gallery_lock(gallery_root, wait):
        current = load_gallery(gallery_root, encoder.embedding_size, settings.model_sha256)
        with _cleanup_on_failure(gallery_root):
            new, _ = embed_items(encoder, gallery_root, items, relative_to, current.items.hashes, progress, report)
            report.added, report.total = len(new), len(current)
            if len(new) == 0:
                return report  # nothing to change: no new version
            background = _background_of(current) if current.background is not None else embed_background(encoder)
            commit(gallery_root, current.items.concat(new), settings, background,
                   int(current.info.get("trees", DEFAULT_TREES)), int(current.info.get("search_k", DEFAULT_SEARCH_K)),
                   report)
    return report


def remove_label(gallery_root: Path, label: str, settings: GallerySettings | str, allow_empty: bool = False,
                 wait: bool = True, embedding_size: int | None = None) -> int:
    """Removes every item of ``label``; returns how many were removed."""
    settings = _settings(settings)
    with gallery_lock(gallery_root, wait):
        current = load_gallery(gallery_root, embedding_size, settings.model_sha256)
        kept = current.items.without_label(label)
        removed = len(current) - len(kept)
        if removed == 0:
            raise GalleryError(f"label {label!r} is not in the gallery (labels: {sorted(current.label_counts())})")
        if len(kept) == 0 and not allow_empty:
            raise GalleryError(f"removing {label!r} would leave the gallery empty; pass --allow-empty to do it")
        commit(gallery_root, kept, settings, _background_of(current), int(current.info.get("trees", DEFAULT_TREES)),
               int(current.info.get("search_k", DEFAULT_SEARCH_K)))
    return removed


def recalibrate(gallery_root: Path, settings: GallerySettings, wait: bool = True) -> EnrolReport:
    """Refits comparison and calibration of the live gallery (e.g. at another ``far``)."""
    report = EnrolReport()
    with gallery_lock(gallery_root, wait):
        current = load_gallery(gallery_root, None, settings.model_sha256)
        commit(gallery_root, current.items, settings, _background_of(current),
               int(current.info.get("trees", DEFAULT_TREES)), int(current.info.get("search_k", DEFAULT_SEARCH_K)),
               report)
    return report


def _background_of(gallery) -> np.ndarray | None:
    """The stored (un-compared) background embeddings of a loaded version, if it has them."""
    return gallery.stored_background


class _cleanup_on_failure:
    """On any failure (a full disk, Ctrl-C) deletes thumbnails this change wrote that the live
    version does not use, so a failed enrolment leaves nothing behind."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if kind is not None:
            try:
                prune_thumbnails(self.root, sorted(referenced_thumbnails(self.root)))
            except OSError as cleanup_error:  # the original error matters more
                log.warning("could not clean up thumbnails after the failure: %s", cleanup_error)
        return False


def _settings(settings: GallerySettings | str) -> GallerySettings:
    return GallerySettings(settings) if isinstance(settings, str) else settings


def _first_reasons(report: EnrolReport, count: int = 3) -> str:
    parts = [f"{path}: {reason}" for path, reason in report.skipped[:count]]
    if report.duplicates:
        parts.append(f"{len(report.duplicates)} duplicates")
    return "; ".join(parts) or "no images"


def _file_sha256(path: Path) -> str | None:
    try:
        if os.stat(path).st_size > HASH_LIMIT_BYTES:
            return None
    except OSError:
        return None  # the decoder reports the problem with the path
    return file_sha256(path)


def display_path(path: Path, relative_to: Path | None) -> str:
    """How an enrolled image's path is stored: relative to ``relative_to`` when inside it (POSIX)."""
    if relative_to is not None:
        try:
            return path.resolve().relative_to(Path(relative_to).resolve()).as_posix()
        except (ValueError, OSError):
            pass
    return path.as_posix()


__all__ = ["EnrolReport", "GallerySettings", "add", "build", "calibrate_comparison", "commit", "embed_background",
           "embed_items", "folder_items", "recalibrate", "remove_label", "thumbnail_jpeg"]
