"""Manifest schema: round trip, version and field checks, hash checks against the model."""

import json
import logging

import pytest

from edge.layout import MANIFEST_FILE
from edge.manifest import (
    SCHEMA_VERSION,
    InputSpec,
    Manifest,
    ManifestError,
    OutputSpec,
    Verification,
    read_manifest,
)


def _manifest(**changes) -> Manifest:
    values = dict(
        model_sha256="ab" * 32, quantization="int8",
        input=InputSpec(height=224, width=224, dtype="uint8", scale=1.0, zero_point=0),
        output=OutputSpec(embedding_size=128, dtype="int8", scale=0.01, zero_point=3),
        verification=Verification(threshold=0.31, method="eer", details={"pairs": 10}),
        metrics={"device": {"precision@5": 0.95}},
    )
    values.update(changes)
    return Manifest(**values)


def test_round_trip_through_json(tmp_path):
    manifest = _manifest()
    (tmp_path / MANIFEST_FILE).write_text(manifest.to_json())
    loaded = read_manifest(tmp_path)
    assert loaded == manifest
    assert loaded.schema_version == SCHEMA_VERSION and loaded.input.color_order == "RGB"


def test_unknown_schema_version_is_refused():
    values = _manifest().to_dict() | {"schema_version": 99}
    with pytest.raises(ManifestError, match="schema_version 99 is not supported"):
        Manifest.from_dict(values)


def test_version_1_manifest_reads_as_one_segment():
    values = _manifest().to_dict() | {"schema_version": 1}
    del values["output"]["segments"]
    manifest = Manifest.from_dict(values)
    assert manifest.schema_version == 1 and manifest.output.segments == ()


def test_segments_must_cover_the_output_with_unit_weights():
    good = [{"name": "head", "size": 96, "weight": 0.6}, {"name": "generic", "size": 32, "weight": 0.8}]
    manifest = _manifest(output=OutputSpec(embedding_size=128, dtype="int8", segments=tuple(good)))
    assert Manifest.from_dict(json.loads(manifest.to_json())) == manifest
    values = manifest.to_dict()
    values["output"]["segments"][1]["size"] = 40
    with pytest.raises(ManifestError, match=r"sizes \[96, 40\] do not add up to embedding_size 128"):
        Manifest.from_dict(values)
    values["output"]["segments"][1].update(size=32, weight=0.5)
    with pytest.raises(ManifestError, match="squares sum to 1"):
        Manifest.from_dict(values)
    values["output"]["segments"] = [{"size": 128}]
    with pytest.raises(ManifestError, match="expected objects with size and weight"):
        Manifest.from_dict(values)


def test_missing_field_is_named():
    values = _manifest().to_dict()
    del values["output"]
    with pytest.raises(ManifestError, match=r"missing field\(s\) output"):
        Manifest.from_dict(values)


def test_bad_values_are_listed():
    values = _manifest().to_dict()
    values["input"]["dtype"] = "float64"
    values["model_sha256"] = "xyz"
    with pytest.raises(ManifestError) as error:
        Manifest.from_dict(values)
    assert "input.dtype 'float64'" in str(error.value) and "not a sha256" in str(error.value)


def test_missing_and_broken_manifest_files(tmp_path):
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ManifestError, match="format is 'other'"):
        read_manifest(tmp_path)


def test_unknown_keys_are_kept_and_warned_about(tmp_path, caplog):
    """An optional field added by a newer exporter must not break a deployed device."""
    values = _manifest().to_dict() | {"added_later": {"x": 1}}
    values["input"]["antialias"] = True
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(values))
    with caplog.at_level(logging.WARNING):
        manifest = read_manifest(tmp_path)
    assert manifest == _manifest()
    assert "added_later" in caplog.text and "input.antialias" in caplog.text
    written = json.loads(manifest.to_json())  # kept: written back where they were
    assert written["added_later"] == {"x": 1} and written["input"]["antialias"] is True


@pytest.mark.parametrize("where, value, message", [
    (("input", "height"), "224", "input.height must be an integer, got str '224'"),
    (("input", "height"), 224.5, "input.height must be an integer"),
    (("input", "height"), True, "input.height must be an integer, got bool"),
    (("input",), [224, 224], "input must be a JSON object, got list"),
    (("output", "segments"), {"size": 1}, "output.segments must be a JSON list"),
    (("verification", "threshold"), float("nan"), "verification.threshold must be a number, got float nan"),
    (("verification", "threshold"), float("inf"), "verification.threshold must be a number, got float inf"),
    (("output", "scale"), "0.1", "output.scale must be a number"),
    (("model_sha256",), 12, "model_sha256 must be a string"),
    (("metrics",), [1, 2], "metrics must be a JSON object"),
    (("forced",), "no", "forced must be true or false"),
])
def test_wrong_types_are_refused_naming_the_field(tmp_path, where, value, message):
    values = _manifest().to_dict()
    target = values
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(values))  # NaN/Infinity as Python's json writes them
    with pytest.raises(ManifestError) as error:
        read_manifest(tmp_path)
    assert message in str(error.value) and str(tmp_path) in str(error.value)


def test_non_utf8_and_non_object_manifests(tmp_path):
    (tmp_path / MANIFEST_FILE).write_bytes(_manifest().to_json().replace('"eer"', '"\xe9"').encode("latin-1"))
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("[1, 2]")
    with pytest.raises(ManifestError, match="expected a JSON object, got list"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_utf8_bom_is_accepted(tmp_path):
    (tmp_path / MANIFEST_FILE).write_bytes(b"\xef\xbb\xbf" + _manifest().to_json().encode())
    assert read_manifest(tmp_path) == _manifest()


@pytest.mark.parametrize("model_file", ["/etc/passwd", "../outside.tflite", "a/../../x.tflite", ""])
def test_model_file_must_stay_inside_the_bundle(model_file):
    values = _manifest().to_dict() | {"model_file": model_file}
    with pytest.raises(ManifestError, match="model_file .* must be a relative path inside the bundle"):
        Manifest.from_dict(values)
