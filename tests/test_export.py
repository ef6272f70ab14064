"""Export: a real int8 conversion of a tiny tower, the bundle contract, refusals that leave nothing."""

import json
import shutil

import pytest

from edge.bundle import open_bundle
from edge.layout import FIDELITY_FILE, GALLERY_DIR, MANIFEST_FILE, MODEL_FILE, SPLIT_DIR
from edge.manifest import Manifest, ManifestError, read_manifest
from export.__main__ import main as export_main
from train.layout import ENCODER_FILE


def test_bundle_has_everything_a_device_needs(tiny_bundle):
    names = sorted(p.name for p in tiny_bundle.iterdir())
    assert names == sorted([MODEL_FILE, FIDELITY_FILE, GALLERY_DIR, MANIFEST_FILE, SPLIT_DIR])
    manifest = read_manifest(tiny_bundle)
    assert manifest.quantization == "int8" and manifest.input.dtype == "uint8" and manifest.output.dtype == "int8"
    segments = manifest.output.segments
    assert [s["name"] for s in segments] == ["head", "generic"] and segments[0]["size"] == 16
    assert manifest.output.embedding_size == sum(s["size"] for s in segments) and manifest.input.height == 32
    assert manifest.verification.method == "eer" and 0.0 <= manifest.verification.threshold <= 2.0
    assert manifest.interpreters["checked"][0]["name"] == "ai_edge_litert"
    assert not manifest.forced
    assert Manifest.from_dict(json.loads((tiny_bundle / MANIFEST_FILE).read_text())) == manifest


def test_int8_model_is_full_integer(tiny_bundle):
    report = json.loads((tiny_bundle / FIDELITY_FILE).read_text())
    readiness = report["edgetpu_readiness"]
    assert readiness["float_ops"] == [] and readiness["unsupported_ops"] == [] and readiness["dynamic_shapes"] == []
    assert readiness["io_dtypes"] == ["uint8", "int8"] and readiness["ready"] is True
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN"} <= set(readiness["ops"])
    manifest = read_manifest(tiny_bundle)
    # uint8 pixels in with scale 1, zero point 0: the device feeds camera bytes unchanged.
    assert (manifest.input.scale, manifest.input.zero_point) == (1.0, 0)


def test_float32_export_reproduces_keras_through_the_device_path(tiny_run, tmp_path):
    """Decode -> resize -> interpreter -> L2 on the device equals the Keras encoder on the
    training pipeline's inputs: the preprocessing contract holds exactly."""
    bundle = tmp_path / "f32"
    argv = ["--run", str(tiny_run), "--bundle", str(bundle), "--mode", "float32", "--pairs", "100", "--trees", "4"]
    assert export_main(argv) == 0
    fidelity = json.loads((bundle / FIDELITY_FILE).read_text())["fidelity"]
    assert fidelity["cosine_min"] > 0.99999 and fidelity["centred_cosine_min"] > 0.9999
    assert fidelity["top5_neighbour_agreement"] == 1.0
    assert read_manifest(bundle).input.dtype == "float32"


def test_device_gallery_is_built_with_the_exported_model(tiny_bundle):
    bundle = open_bundle(tiny_bundle)
    gallery = bundle.gallery()
    train_lines = (tiny_bundle / SPLIT_DIR / "train.txt").read_text().splitlines()
    assert len(gallery) == len(train_lines)
    assert gallery.info["model_sha256"] == bundle.manifest.model_sha256


def test_tampered_model_is_refused(bundle_copy):
    with open(bundle_copy / MODEL_FILE, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ManifestError, match="sha256"):
        open_bundle(bundle_copy)


def test_wrong_embedding_size_is_refused(bundle_copy):
    values = json.loads((bundle_copy / MANIFEST_FILE).read_text())
    real_size = values["output"]["embedding_size"]
    values["output"]["embedding_size"] = 7
    values["output"]["segments"] = [{"name": "a", "size": 3, "weight": 0.6}, {"name": "b", "size": 4, "weight": 0.8}]
    (bundle_copy / MANIFEST_FILE).write_text(json.dumps(values))
    with pytest.raises(ManifestError, match=f"embedding size {real_size} != manifest 7"):
        open_bundle(bundle_copy)


def test_missing_run_fails_clearly_and_writes_nothing(tmp_path, capsys):
    assert export_main(["--run", str(tmp_path / "no_run"), "--bundle", str(tmp_path / "bundle")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_half_written_run_leaves_previous_bundle_intact(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / ENCODER_FILE).unlink()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "marker").write_text("previous bundle")
    assert export_main(["--run", str(run), "--bundle", str(bundle)]) == 2
    assert f"incomplete (missing {ENCODER_FILE})" in capsys.readouterr().err
    assert (bundle / "marker").read_text() == "previous bundle"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "run"]


def test_quality_drop_beyond_tolerance_is_refused_then_forced(tiny_run, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    common = ["--run", str(tiny_run), "--bundle", str(bundle), "--calibration-images", "8", "--pairs", "100",
              "--trees", "4"]
    # A negative tolerance demands int8 beat float by 100 points: impossible, so export must refuse.
    assert export_main(common + ["--tolerance", "-100"]) == 2
    err = capsys.readouterr().err
    assert "points below float" in err and "--force" in err
    assert not bundle.exists() and [p.name for p in tmp_path.iterdir()] == []
    assert export_main(common + ["--tolerance", "-100", "--force"]) == 0
    assert read_manifest(bundle).forced is True


def test_duplicate_training_images_are_enrolled_once_and_export_still_measures(tiny_run, tmp_path):
    """tf_flowers holds byte-identical photos under two names; the gallery skips the second copy,
    and export must line its float rows up with the enrolled images (it crashed with IndexError)."""
    from edge.gallery.store import load_gallery
    from train.layout import TRAIN_LIST

    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(tiny_run, run)
    shutil.copytree(tiny_run.parent / "data", data)
    train_list = run / TRAIN_LIST
    lines = train_list.read_text().splitlines()
    first_path, first_class = lines[0].split("\t")[:2]
    copy = f"{first_class}/copy-of-{first_path.split('/')[-1]}"
    shutil.copyfile(data / first_path, data / copy)
    train_list.write_text("\n".join([*lines, f"{copy}\t{first_class}"]) + "\n")
    bundle = tmp_path / "bundle"
    argv = ["--run", str(run), "--bundle", str(bundle), "--data-dir", str(data), "--calibration-images", "8",
            "--pairs", "100", "--tolerance", "100", "--trees", "4"]
    assert export_main(argv) == 0
    paths = load_gallery(bundle / GALLERY_DIR).items.paths
    assert len(paths) == len(lines) and copy not in paths and first_path in paths
