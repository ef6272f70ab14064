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
