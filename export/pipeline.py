"""Training run -> device bundle, measured through the device's own code path.

1. Convert the encoder (without its L2 layer) to TFLite, int8 by default, calibrated on
   train-split images.
2. Embed the train split with the *exported* model through ``edge`` (decode -> resize ->
   quantise -> interpreter -> dequantise -> L2) and build the Annoy gallery from it.
3. Query the gallery with every test image the same way; compare with the float Keras encoder.
4. Calibrate the verification threshold on one half of the test split, measure it on the other.
5. Refuse (unless forced) when the quantised P@5 falls more than the tolerance below float.
6. Write everything to a temporary folder and rename it into place.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edge import __version__
from edge.gallery import enrol
from edge.atomic import replace_dir, write_text_atomic
from edge.encoder import Encoder
from edge.gallery.store import load_gallery
from edge.interpreter import find_runtime, make_interpreter
from edge.layout import FIDELITY_FILE, GALLERY_DIR, MANIFEST_FILE, MODEL_FILE, SPLIT_DIR
from edge.manifest import InputSpec, Manifest, OutputSpec, Verification, file_sha256
from edge.metrics import l2_normalize, precision_at_k, retrieval_report, roc_auc
from edge.quant import params_of
from export.calibrate import calibrate_threshold, calibration_mask, rates_at
from export.convert import fixed_batch_model, to_tflite
from export.edgetpu import readiness_report
from train.evaluate import nearest_neighbours, pair_cosine_distances
from train.run_folder import RunFolder, data_dir_of, open_run
from train.sampling import balanced_pairs

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parent.parent


class ExportError(RuntimeError):
    """Export refused or failed; the message says why and what to try."""


@dataclass(frozen=True)
class ExportOptions:
    """How to export; see ``python -m export --help``."""

    mode: str = "int8"
    edgetpu: bool = False
    data_dir: str | None = None
    calibration_images: int = 300
    tolerance_points: float = 1.0
    force: bool = False
    threshold_method: str = "eer"
    target_far: float | None = None
    trees: int = 32
    pairs: int = 10000
    num_threads: int | None = None
    check_python: str | None = None
    seed: int = 0


def export_run(run_dir: Path, bundle_dir: Path, options: ExportOptions = ExportOptions()) -> dict:
    """Writes a bundle for ``run_dir`` at ``bundle_dir``; returns the fidelity report.

    Raises:
      RunFolderError: the run is missing or incomplete.
      ExportError: the quantised model is too far below float (and not forced).
    """
    started = time.time()
    run = open_run(run_dir)
    data_dir = data_dir_of(run, Path(options.data_dir) if options.data_dir else None)
    bundle_dir = Path(bundle_dir)
    bundle_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = bundle_dir.parent / f".{bundle_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        report = _build_bundle(run, data_dir, staging, options)
        report["seconds"] = round(time.time() - started, 1)
        write_text_atomic(staging / FIDELITY_FILE, _dumps(report))
        replace_dir(staging, bundle_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _build_bundle(run: RunFolder, data_dir: Path, staging: Path, options: ExportOptions) -> dict:
    import keras

    from train.data import scan_images
    from train.features import embed_image_list
    from train.model import embedding_segments, export_encoder

    size = run.config.input_size
    # Checked now, decoded again a chunk at a time: memory does not grow with the splits.
    train_set, _ = scan_images(data_dir, run.train_records, run.class_names, size)
    test_set, _ = scan_images(data_dir, run.test_records, run.class_names, size)
    keras_encoder = keras.models.load_model(run.encoder_path)
    float_train = embed_image_list(keras_encoder, train_set)
    float_test = embed_image_list(keras_encoder, test_set)

    rng = np.random.default_rng(options.seed)
    chosen = rng.choice(len(train_set), size=min(options.calibration_images, len(train_set)), replace=False)
    representative = lambda: (train_set.clean([i])[0].astype(np.float32) for i in chosen)  # noqa: E731
    tick = time.time()
    model = fixed_batch_model(export_encoder(keras_encoder))
    mode = "int8" if options.edgetpu else options.mode
    flatbuffer = to_tflite(model, mode, representative, uint8_output=options.edgetpu)
    model_path = staging / MODEL_FILE
    model_path.write_bytes(flatbuffer)
    convert_seconds = time.time() - tick
    manifest = draft_manifest(model_path, mode, size, embedding_segments(keras_encoder))

    runtime = find_runtime()
    encoder = Encoder(model_path, manifest, options.num_threads, runtime=runtime)
    gallery_root = staging / GALLERY_DIR
    train_items = [(data_dir / r.path, r.class_name) for r in train_set.records]
    items, _ = enrol.embed_items(encoder, gallery_root, train_items, relative_to=data_dir)
    # The gallery skips byte-identical duplicates (tf_flowers has some) and anything that does not
    # decode: keep the float rows of exactly the enrolled images, in the gallery's order.
    row_of = {enrol.display_path(path, data_dir): i for i, (path, _) in enumerate(train_items)}
    float_train = float_train[[row_of[path] for path in items.paths]]
    if len(items) < len(train_items):
        log.info("gallery: %d of %d training images enrolled (duplicates or undecodable skipped)",
                 len(items), len(train_items))
    device_test = np.stack([encoder.embed(data_dir / r.path) for r in test_set.records])
    device_train = items.embeddings
    test_labels = np.array([r.class_name for r in test_set.records])
    train_labels = np.array(items.labels)
    verification = _verification(test_set.records, float_test, device_test, test_labels, options)
    # The same fit the device does on every gallery change (comparison, "unknown" threshold); the
    # pair threshold just calibrated is the fallback of a gallery too small to calibrate itself.
    settings = enrol.GallerySettings(manifest.model_sha256, tuple(manifest.output.segments), verification["threshold"])
    enrol.commit(gallery_root, items, settings, enrol.embed_background(encoder), options.trees)
    gallery = load_gallery(gallery_root, manifest.output.embedding_size, manifest.model_sha256)
    # As `python -m edge.search` searches by default (exact up to 10,000 items, Annoy above), and
    # with Annoy forced, to show what the index costs in quality.
    default_ranked = np.array([[m.label for m in gallery.search(v, 10)] for v in device_test])
    annoy_ranked = np.array([[m.label for m in gallery.search(v, 10, exact=False)] for v in device_test])
    device_search = {f"precision@{k}": precision_at_k(default_ranked, test_labels, k) for k in (1, 5, 10)}
    annoy_search = {f"precision@{k}": precision_at_k(annoy_ranked, test_labels, k) for k in (1, 5, 10)}
    float_retrieval = retrieval_report(float_test, test_labels, float_train, train_labels)
    quant_retrieval = retrieval_report(device_test, test_labels, device_train, train_labels)
    comparison = gallery.info.get("comparison")

    fidelity = _fidelity(float_train, float_test, device_train, device_test)
    # Quantisation alone: the same plain cosine on both sides. The gallery's fitted comparison
    # (edge.gallery.comparison) is a separate change, reported as gallery_search beside it.
    drop_points = 100.0 * (float_retrieval["precision@5"] - quant_retrieval["precision@5"])
    report = {
        "run": str(run.path),
        "mode": mode,
        "edgetpu_variant": options.edgetpu,
        "model_bytes": len(flatbuffer),
        "convert_seconds": round(convert_seconds, 1),
        "float_keras": {"retrieval": float_retrieval, "roc_auc": verification.pop("float_roc_auc")},
        "device": {"gallery_search": device_search, "annoy_search": annoy_search, "exact_retrieval": quant_retrieval,
                   "roc_auc": verification.pop("device_roc_auc")},
        "p5_drop_points": round(drop_points, 3),
        "tolerance_points": options.tolerance_points,
        "fidelity": fidelity,
        "gallery_comparison": comparison,
        "gallery_calibration": gallery.calibration.to_json() if gallery.calibration else None,
        "verification": verification,
        "edgetpu_readiness": readiness_report(model_path),
        "interpreters": _interpreters(runtime, model_path, options.check_python),
        "options": asdict(options),
    }
    if drop_points > options.tolerance_points and not options.force:
        raise ExportError(
            f"{mode} P@5 {quant_retrieval['precision@5']:.4f} is {drop_points:.2f} points below float "
            f"{float_retrieval['precision@5']:.4f} (tolerance {options.tolerance_points}). Try more "
            "--calibration-images, --mode float16, or --force to write it anyway (marked as forced)"
        )
    final = _complete_manifest(manifest, run, report, verification, options, drop_points)
    write_text_atomic(staging / MANIFEST_FILE, final.to_json())
    shutil.copytree(run.path / SPLIT_DIR, staging / SPLIT_DIR)
    return report


def draft_manifest(model_path: Path, mode: str, size: int, segments: Sequence[dict] = ()) -> Manifest:
    """Input/output facts read from the converted model itself, and the output's segments."""
    interpreter = make_interpreter(model_path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    in_q, out_q = params_of(inp), params_of(out)
    return Manifest(
        model_sha256=file_sha256(model_path),
        quantization=mode,
        input=InputSpec(height=size, width=size, dtype=np.dtype(inp["dtype"]).name, scale=in_q.scale,
                        zero_point=in_q.zero_point),
        output=OutputSpec(embedding_size=int(out["shape"][-1]), dtype=np.dtype(out["dtype"]).name,
                          scale=out_q.scale, zero_point=out_q.zero_point, segments=tuple(segments)),
        verification=Verification(threshold=0.5, method="uncalibrated"),
    )


def _complete_manifest(draft: Manifest, run: RunFolder, report: dict, verification: dict,
                       options: ExportOptions, drop_points: float) -> Manifest:
    values = asdict(draft)
    values.update(
        input=draft.input,
        output=draft.output,
        verification=Verification(
            threshold=verification["threshold"], method=verification["method"], target_far=options.target_far,
            details={k: v for k, v in verification.items() if k not in ("threshold", "method")},
        ),
        metrics={
            "float_keras": {"precision@1": report["float_keras"]["retrieval"]["precision@1"],
                            "precision@5": report["float_keras"]["retrieval"]["precision@5"],
                            "roc_auc": report["float_keras"]["roc_auc"]},
            "device": {**report["device"]["gallery_search"], "roc_auc": report["device"]["roc_auc"]},
            "p5_drop_points": round(drop_points, 3),
            "measured_on": f"test split, {len(run.test_records)} queries against {len(run.train_records)} gallery images",
        },
        interpreters=report["interpreters"],
        edgetpu={k: report["edgetpu_readiness"][k] for k in ("ready", "unsupported_ops", "first_cpu_op")}
        | {"variant": options.edgetpu},
        data={"classes": run.class_names, "split_lists": "split/train.txt, split/test.txt",
              "holdout_classes": list(run.config.holdout_classes), "data_dir": str(run.metrics["data"]["data_dir"])},
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        source_commit=_source_commit(),
        package_version=__version__,
        forced=bool(options.force and drop_points > options.tolerance_points),
    )
    return Manifest(**values)


def _verification(test_records, float_test, device_test, labels, options) -> dict:
    paths = [r.path for r in test_records]
    _, label_ids = np.unique(labels, return_inverse=True)
    all_pairs = balanced_pairs(label_ids, options.pairs, np.random.default_rng(options.seed))
    calibrating = calibration_mask(paths)
    try:
        cal_pairs = _pairs_within(label_ids, calibrating, options)
        eval_pairs = _pairs_within(label_ids, ~calibrating, options)
        held_out = True
    except ValueError:
        # Too few test images per class to split them: calibrate and evaluate on the same pairs,
        # and say so in the manifest.
        cal_pairs = eval_pairs = all_pairs
        held_out = False
    chosen = calibrate_threshold(pair_cosine_distances(device_test, cal_pairs), cal_pairs[:, 2],
                                 options.threshold_method, options.target_far)
    return {
        **chosen,
        "distance": "cosine distance (1 - cos)",
        "held_out": held_out,
        "calibrated_on": f"{len(cal_pairs)} balanced pairs of "
        + (f"{int(calibrating.sum())} test images (calibration half)" if held_out else "the whole test split"),
        "evaluated_on": f"{len(eval_pairs)} balanced pairs of "
        + (f"the other {int((~calibrating).sum())} test images" if held_out else "the same test images"),
        "evaluation": rates_at(pair_cosine_distances(device_test, eval_pairs), eval_pairs[:, 2], chosen["threshold"]),
        "float_roc_auc": roc_auc(-pair_cosine_distances(float_test, all_pairs), all_pairs[:, 2]),
        "device_roc_auc": roc_auc(-pair_cosine_distances(device_test, all_pairs), all_pairs[:, 2]),
    }


def _pairs_within(label_ids: np.ndarray, mask: np.ndarray, options: ExportOptions) -> np.ndarray:
    """Balanced pairs among the masked images, as indices into the whole test split."""
    index = np.flatnonzero(mask)
    pairs = balanced_pairs(label_ids[index], options.pairs, np.random.default_rng([options.seed, int(mask[0])]))
    pairs[:, :2] = index[pairs[:, :2]]
    return pairs


def _fidelity(float_train, float_test, device_train, device_test) -> dict:
    """Float Keras vs device embeddings; centred cosine removes the shared component that hides errors."""
    cosine = np.sum(l2_normalize(float_test) * l2_normalize(device_test), axis=1)
    mean = float_train.mean(axis=0)
    centred = np.sum(l2_normalize(float_test - mean) * l2_normalize(device_test - mean), axis=1)
    float_top, _ = nearest_neighbours(float_test, float_train, 5)
    device_top, _ = nearest_neighbours(device_test, device_train, 5)
    agreement = np.mean([len(set(a) & set(b)) / 5.0 for a, b in zip(float_top, device_top)])
    return {
        "cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min()),
        "centred_cosine_mean": float(centred.mean()), "centred_cosine_min": float(centred.min()),
        "top5_neighbour_agreement": float(agreement), "images": int(len(cosine)),
    }


def _interpreters(runtime, model_path: Path, check_python: str | None) -> dict:
    checked = [{"name": runtime.name, "version": runtime.version, "result": "ran every test and gallery image"}]
    if check_python:
        from export.interpreter_check import check_with_tflite_runtime

        checked.append(check_with_tflite_runtime(check_python, model_path))
        return {"checked": checked}
    return {
        "checked": checked,
        "tflite_runtime": "not checked (export --check-python PY with a tflite-runtime venv); see README 'Interpreters'",
    }


def _source_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _dumps(value) -> str:
    import json

    return json.dumps(value, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)) + "\n"
