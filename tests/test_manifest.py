"""Manifest schema: round trip, version and field checks, hash checks against the model."""

import json

import pytest

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
    (tmp_path / "manifest.json").write_text(manifest.to_json())
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
    with pytest.raises(ManifestError, match="missing or unexpected field"):
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
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ManifestError, match="format is 'other'"):
        read_manifest(tmp_path)
