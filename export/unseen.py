"""Classes never trained on, measured on the int8 device path, against the frozen ImageNet baseline.

    python -m export.unseen --bundle artifacts/bundle-holdout --data-dir ../shared/data/flower_photos \
        --weights ../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5

Every image of the bundle's split is embedded with the bundle's TFLite encoder through ``edge``;
galleries are committed with the device's own code (edge.gallery.enrol.commit: the fitted
comparison and the "unknown" calibration), then queried as ``edge.search`` does. Reports:

- unseen-class P@1/P@5, gallery = the unseen classes only (all their training images, and 40 of
  each), and = every class, against frozen ImageNet MobileNetV2 features on the same images (plain
  cosine, and with the device's whole gallery fit applied to them too), with paired bootstrap
  intervals;
- open-set answers at ``--far``, gallery = the unseen classes: their queries accepted with the
  right label; queries of the trained classes (not enrolled) rejected; blank / noise / dark /
  blurred frames (a generator and seeds unlike the gallery's references) rejected.
With no held-out classes (a 5-class bundle) the same figures are reported for the whole split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.bundle import open_bundle
from edge.gallery import enrol
from edge.gallery.openset import DEFAULT_FAR
from edge.gallery.store import GalleryItems, load_gallery
from edge.layout import SPLIT_DIR

log = logging.getLogger(__name__)
FEW_SHOT = 40
"""Images per label in the few-shot gallery: as many as the outside check of issue 10 enrols."""


def blank_frames(count: int = 200, seed: int = 7) -> list[np.ndarray]:
    """640x480 BGR frames with nothing in them, drawn at random (not the gallery's references)."""
    import cv2

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        kind = i % 6
        if kind == 0:
            frame = np.tile(rng.integers(0, 256, 3, dtype=np.uint8), (480, 640, 1))
        elif kind == 1:
            frame = np.clip(rng.normal(rng.uniform(30, 220), rng.uniform(3, 70), (480, 640, 3)), 0, 255)
        elif kind == 2:
            frame = np.clip(rng.normal(rng.uniform(0, 25), rng.uniform(1, 10), (480, 640, 1)), 0, 255).repeat(3, 2)
        elif kind == 3:
            k = int(rng.choice([15, 41, 81]))
            frame = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (k, k), 0)
        elif kind == 4:
            angle = rng.uniform(0, np.pi)
            y, x = np.mgrid[0:480, 0:640]
            ramp = (np.cos(angle) * x + np.sin(angle) * y)
            ramp = (ramp - ramp.min()) / np.ptp(ramp)
            frame = (ramp[..., None] * rng.integers(0, 256, 3) + (1 - ramp[..., None]) * rng.integers(0, 256, 3))
        else:
            noisy = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
            frame = cv2.imdecode(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], cv2.IMREAD_COLOR)
        frames.append(np.ascontiguousarray(frame, dtype=np.uint8))
    return frames


def few_shot(rows: np.ndarray, labels: np.ndarray, per_label: int, seed: int = 0) -> np.ndarray:
    """``rows`` (a mask) cut to ``per_label`` seeded random items of each label: a user who enrols
    a few dozen photos of each thing, not hundreds."""
    rng = np.random.default_rng(seed)
    chosen = np.zeros_like(rows)
    for label in np.unique(labels[rows]):
        members = np.flatnonzero(rows & (labels == label))
        chosen[rng.choice(members, min(per_label, len(members)), replace=False)] = True
    return chosen


def baseline_features(paths: list[Path], weights: str, cache: Path | None) -> np.ndarray:
    """Frozen ImageNet MobileNetV2, average-pooled 1280-d, 224 squash resize (the run's baseline)."""
    key = hashlib.sha256(("\n".join(map(str, paths)) + weights).encode()).hexdigest()[:16]
    cached = cache / f"baseline-{key}.npy" if cache else None
    if cached and cached.is_file():
        return np.load(cached)
    import keras

    from edge.images import read_image
    from edge.preprocess import resize_image

    inputs = keras.Input((224, 224, 3))
    backbone = keras.applications.MobileNetV2(include_top=False, weights=None if weights == "none" else weights,
                                              input_shape=(224, 224, 3),
                                              pooling="avg")
    model = keras.Model(inputs, backbone(keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs), training=False))
    features = []
    for start in range(0, len(paths), 64):
        batch = np.stack([resize_image(read_image(p), 224, 224) for p in paths[start : start + 64]])
        features.append(model.predict_on_batch(batch.astype(np.float32)))
    features = np.concatenate(features).astype(np.float32)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, features)
    return features


def _split(bundle: Path, name: str) -> list[tuple[str, str]]:
    lines = (bundle / SPLIT_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")[:2]) for line in lines if line.strip()]


def _commit(folder: Path, vectors, labels, settings, background):
    items = GalleryItems(vectors, list(labels), [str(i) for i in range(len(labels))], [None] * len(labels))
    enrol.commit(folder, items, settings, background)
    return load_gallery(folder)


def _precision(ranked: list[list[str]], labels: np.ndarray, k: int) -> np.ndarray:
    return np.array([np.mean([r == label for r in row[:k]]) for row, label in zip(ranked, labels)])


def _baseline_ranked(gallery: np.ndarray, gallery_labels: np.ndarray, queries: np.ndarray, k: int = 5,
                     fit: bool = False) -> tuple[list[list[str]], dict]:
    """Top-k labels of frozen-feature cosine search, and the comparison used: plain cosine (the
    baseline as defined), or with ``fit`` the device's own gallery fit (centring, label vote and
    whitening, edge.gallery.comparison.fit_comparison) applied to the frozen features, so README can say how
    much of a gain is the fit and how much the encoder."""
    from edge.gallery.comparison import Comparison, fit_comparison
    from edge.gallery.prototypes import blended, label_ids_of, prototypes

    comparison = fit_comparison(gallery, list(gallery_labels), ()) if fit else Comparison.default((), gallery.shape[1])
    vectors, queries = comparison.apply(gallery), comparison.apply(queries)
    names, ids = label_ids_of(list(gallery_labels))
    similarity = blended(queries @ vectors.T, queries @ prototypes(vectors, ids, len(names)).T, ids,
                         comparison.prototype_weight)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    used = {"centred": comparison.centres is not None, "prototype_weight": comparison.prototype_weight,
            "whitening": None if comparison.whitening is None else comparison.whitening.strength}
    return gallery_labels[order].tolist(), used


def evaluate(bundle_dir: Path, data_dir: Path, weights: str, fars: Sequence[float], cache: Path | None) -> dict:
    from train.evaluate import paired_bootstrap

    bundle = open_bundle(bundle_dir)
    manifest = bundle.manifest
    train, test = _split(bundle_dir, "train"), _split(bundle_dir, "test")
    holdout = list(manifest.data.get("holdout_classes") or [])
    paths = [data_dir / p for p, _ in train + test]
    log.info("embedding %d images with the bundle's encoder", len(paths))
    device = np.stack([bundle.encoder.embed(p) for p in paths])
    base = baseline_features(paths, weights, cache)
    labels = np.array([c for _, c in train + test])
    is_train = np.arange(len(paths)) < len(train)
    unseen = np.isin(labels, holdout) if holdout else np.ones(len(labels), bool)
    background = enrol.embed_background(bundle.encoder)
    blank_vectors = [bundle.encoder.embed_frame(f) for f in blank_frames()]
    report = {"bundle": str(bundle_dir), "holdout_classes": holdout, "by_far": {}}
    for far in fars:
        report["by_far"][str(far)] = _galleries(device, base, labels, is_train, unseen, blank_vectors,
                                                enrol.GallerySettings.of(manifest, far), background, paired_bootstrap)
    return report


def _galleries(device, base, labels, is_train, unseen, blank_vectors, settings, background, paired_bootstrap) -> dict:
    report = {"galleries": {}}
    with tempfile.TemporaryDirectory() as temporary:
        galleries = {"enrolled_only": is_train & unseen, "every_class": is_train,
                     f"enrolled_only_{FEW_SHOT}_per_label": few_shot(is_train & unseen, labels, FEW_SHOT)}
        for name, rows in galleries.items():
            gallery = _commit(Path(temporary) / name, device[rows], labels[rows], settings, background)
            queries = np.flatnonzero(~is_train & unseen)
            results = [gallery.identify(device[q], 5) for q in queries]
            ranked = [[m.label for m in r.matches] for r in results]
            base_ranked, _ = _baseline_ranked(base[rows], labels[rows], base[queries])
            fitted_ranked, fitted = _baseline_ranked(base[rows], labels[rows], base[queries], fit=True)
            entry = {"gallery_items": int(rows.sum()), "queries": int(len(queries)),
                     "comparison": gallery.info["comparison"], "calibration": gallery.calibration.to_json(),
                     "baseline_with_fit": fitted}
            for k in (1, 5):
                device_p, base_p = _precision(ranked, labels[queries], k), _precision(base_ranked, labels[queries], k)
                fitted_p = _precision(fitted_ranked, labels[queries], k)
                entry[f"device_precision@{k}"] = float(device_p.mean())
                entry[f"baseline_precision@{k}"] = float(base_p.mean())
                entry[f"difference@{k}"] = paired_bootstrap(device_p, base_p)
                entry[f"baseline_with_fit_precision@{k}"] = float(fitted_p.mean())
                entry[f"difference_to_baseline_with_fit@{k}"] = paired_bootstrap(device_p, fitted_p)
            accepted = np.array([r.label is not None for r in results])
            correct = np.array([r.label == label for r, label in zip(results, labels[queries])])
            entry["open_set"] = {"enrolled_accepted_correct": float(correct.mean()),
                                 "enrolled_accepted_wrong": float((accepted & ~correct).mean())}
            others = np.flatnonzero(~is_train & ~unseen)
            if len(others) and name.startswith("enrolled_only"):
                entry["open_set"]["not_enrolled_rejected"] = float(np.mean(
                    [gallery.identify(device[q], 5).label is None for q in others]))
                entry["open_set"]["not_enrolled_queries"] = int(len(others))
            blanks = [gallery.identify(v, 5) for v in blank_vectors]
            entry["open_set"]["blank_rejected"] = float(np.mean([b.label is None for b in blanks]))
            report["galleries"][name] = entry
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.unseen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--weights", default="imagenet", help="ImageNet weights for the baseline (a .h5 offline; 'none': untrained, a smoke test only)")
    parser.add_argument("--far", type=float, nargs="+", default=[DEFAULT_FAR], help="one or more target FARs")
    parser.add_argument("--cache", type=Path, default=Path("artifacts/cache"), help="baseline feature cache")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = evaluate(args.bundle, args.data_dir, args.weights, args.far, args.cache)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
