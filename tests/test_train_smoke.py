"""A tiny tower (no pretrained weights, small input) trains for a step or two and writes a
complete run folder; the saved encoder re-evaluates to the same numbers."""

import json

import numpy as np
import pytest

from conftest import TINY_TRAIN_ARGS, make_class_folder
from train.__main__ import main as train_main
from train.evaluate import evaluate_saved_run
from train.layout import (
    CLASSES_FILE, CONFIG_FILE, ENCODER_FILE, GRID_PLOT, HISTORY_FILE, LOSS_PLOT, METRICS_FILE, SIAMESE_FILE, TEST_LIST,
    TRAIN_LIST,
)
from train.run_folder import RunFolderError, open_run

TINY = TINY_TRAIN_ARGS

RUN_FILES = [CONFIG_FILE, ENCODER_FILE, SIAMESE_FILE, METRICS_FILE, HISTORY_FILE, CLASSES_FILE, LOSS_PLOT, GRID_PLOT,
             TRAIN_LIST, TEST_LIST]


def test_run_folder_is_complete(tiny_run):
    for name in RUN_FILES:
        assert (tiny_run / name).is_file(), name
    metrics = json.loads((tiny_run / METRICS_FILE).read_text())
    assert set(metrics) >= {"trained", "baseline_frozen_imagenet", "pair_head", "timing", "data"}
    for key in ("trained", "baseline_frozen_imagenet"):
        retrieval = metrics[key]["retrieval"]
        assert 0.0 <= retrieval["precision@5"] <= 1.0 and retrieval["num_queries"] == 6
        assert 0.0 <= metrics[key]["verification"]["roc_auc"] <= 1.0
    assert metrics["encoder_check"]["max_abs_diff"] < 1e-3
    history = json.loads((tiny_run / HISTORY_FILE).read_text())
    assert len(history["stage 1"]) == 1 and len(history["stage 2"]) == 1
    assert all(np.isfinite(history["stage 2"]))
    assert len((tiny_run / TEST_LIST).read_text().splitlines()) == 6


def test_embeddings_have_not_collapsed(tiny_run):
    """The BatchNorm trap: after fine-tuning, different images must not share one embedding."""
    import keras

    from train.data import list_images, load_images

    run = open_run(tiny_run)
    encoder = keras.models.load_model(run.encoder_path)
    data_dir = run.metrics["data"]["data_dir"]
    records, classes = list_images(data_dir)
    loaded, _ = load_images(data_dir, records, classes, 32)
    embeddings = np.asarray(encoder.predict(loaded.clean.astype(np.float32), verbose=0))
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)
    cosine = embeddings @ embeddings.T
    off_diagonal = cosine[~np.eye(len(cosine), dtype=bool)]
    assert off_diagonal.min() < 0.99, "all embeddings nearly identical: BatchNorm collapse"


def test_saved_encoder_reproduces_metrics(tiny_run):
    metrics = json.loads((tiny_run / METRICS_FILE).read_text())
    report = evaluate_saved_run(tiny_run, None)
    assert report["retrieval"]["precision@5"] == pytest.approx(metrics["trained"]["retrieval"]["precision@5"], abs=0.04)


def test_incomplete_run_is_refused(tmp_path):
    (tmp_path / CONFIG_FILE).write_text("{}")
    with pytest.raises(RunFolderError, match="incomplete"):
        open_run(tmp_path)


def test_holdout_classes_are_reported_as_unseen(tmp_path):
    data = make_class_folder(tmp_path / "data", per_class=10, size=40)
    run = tmp_path / "run"
    argv = ["--data-dir", str(data), "--run-dir", str(run), "--holdout-classes", "stripes", *TINY]
    assert train_main(argv) == 0
    metrics = json.loads((run / METRICS_FILE).read_text())
    assert metrics["trained"]["unseen_classes"]["classes"] == ["stripes"]
    assert metrics["trained"]["unseen_classes"]["num_queries"] == 2
    assert metrics["data"]["num_trained_on"] == 16
    comparison = metrics["unseen_vs_baseline"]["full_gallery"]  # one unseen class: no unseen-only gallery
    assert set(metrics["unseen_vs_baseline"]) == {"full_gallery"} and comparison["queries"] == 2
    low, high = comparison["ci95"]
    assert low <= comparison["difference"] <= high
    assert comparison["difference"] == pytest.approx(
        comparison["trained_precision@5"] - comparison["baseline_precision@5"])


def test_unknown_holdout_class_is_a_clear_error(tmp_path, capsys):
    data = make_class_folder(tmp_path / "data", per_class=4, size=40)
    argv = ["--data-dir", str(data), "--run-dir", str(tmp_path / "run"), "--holdout-classes", "tulips", *TINY]
    assert train_main(argv) == 2
    assert "not in" in capsys.readouterr().err


EXTRA_ARGS = {
    "softmax-distill": ["--loss", "softmax", "--distill-weight", "1"],
    "bce-head-only": ["--loss", "bce", "--generic-share", "0"],  # reuses the pair head bce trained
}


@pytest.mark.parametrize("loss", ["triplet", "contrastive", "bce", "bce-head-only", "softmax-distill"])
def test_every_loss_trains_end_to_end(tmp_path, tiny_data, loss):
    run = tmp_path / "run"
    extra = EXTRA_ARGS.get(loss, ["--loss", loss])
    argv = ["--data-dir", str(tiny_data), "--run-dir", str(run), *extra, "--pairs-per-epoch", "48", *TINY]
    assert train_main(argv) == 0
    history = json.loads((run / HISTORY_FILE).read_text())
    assert all(np.isfinite(history["stage 1"] + history["stage 2"]))
    metrics = json.loads((run / METRICS_FILE).read_text())
    assert 0.0 <= metrics["pair_head"]["roc_auc"] <= 1.0


def test_generic_branch_is_reported_and_can_be_turned_off(tiny_run, tiny_data, tmp_path):
    metrics = json.loads((tiny_run / METRICS_FILE).read_text())
    segments = metrics["embedding_segments"]
    assert [s["name"] for s in segments] == ["head", "generic"] and segments[0]["size"] == 16
    assert "trained_head_only" in metrics  # the head alone, beside the fused embedding

    run = tmp_path / "head-only"
    assert train_main(["--data-dir", str(tiny_data), "--run-dir", str(run), *TINY, "--generic-share", "0"]) == 0
    metrics = json.loads((run / METRICS_FILE).read_text())
    assert metrics["embedding_segments"] == [] and "trained_head_only" not in metrics
    assert metrics["encoder_check"]["max_abs_diff"] < 1e-3
