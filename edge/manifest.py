"""The bundle manifest: the JSON contract between the workstation and the device.

A bundle folder holds ``encoder.tflite``, ``manifest.json`` and ``gallery/``. The manifest says
how to feed the model (size, colour order, resize rule, dtype and quantisation), what comes out
(embedding size and quantisation; L2 normalisation happens on the device, segment by segment
when the output is made of several), the metric, the
calibrated verification threshold, the model's sha256 and the metrics measured at export.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
"""Version 2 added ``output.segments``; a version 1 manifest reads as one unsegmented output."""
FORMAT = "siamese-edge-bundle"
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "encoder.tflite"
COLOR_ORDERS = ("RGB",)
RESIZE_RULES = ("squash",)
DTYPES = ("float32", "uint8", "int8")
METRICS = ("cosine",)


class ManifestError(ValueError):
    """A manifest is missing, malformed or does not match its model."""


@dataclass(frozen=True)
class InputSpec:
    """What the encoder takes: one RGB image of height x width pixel values 0..255."""

    height: int
    width: int
    dtype: str
    scale: float = 0.0
    zero_point: int = 0
    channels: int = 3
    color_order: str = "RGB"
    resize: str = "squash"


@dataclass(frozen=True)
class OutputSpec:
    """What the encoder returns: an embedding, normalised to unit length on the device."""

    embedding_size: int
    dtype: str
    scale: float = 0.0
    zero_point: int = 0
    l2_normalize: str = "device"
    segments: tuple = ()
    """Consecutive parts of the output, ``{"name", "size", "weight"}`` each: the device scales every
    part to unit length times its weight (edge.metrics.segment_normalize). Empty: one part."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.segments or ()))


@dataclass(frozen=True)
class Verification:
    """Pair verification rule: same when cosine distance (1 - cos) <= threshold."""

    threshold: float
    method: str
    target_far: float | None = None
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """Everything a device needs to know about a bundle."""

    model_sha256: str
    quantization: str
    input: InputSpec
    output: OutputSpec
    verification: Verification
    metric: str = "cosine"
    model_file: str = MODEL_FILE
    schema_version: int = SCHEMA_VERSION
    format: str = FORMAT
    metrics: dict = field(default_factory=dict)
    interpreters: dict = field(default_factory=dict)
    edgetpu: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    created: str = ""
    source_commit: str = ""
    forced: bool = False
    package_version: str = ""
    """siamese-edge version that exported the bundle (optional; empty in older bundles)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, values: dict, source: str = "manifest") -> "Manifest":
        """Builds and validates a manifest; raises ManifestError naming the bad field."""
        if not isinstance(values, dict):
            raise ManifestError(f"{source}: expected a JSON object, got {type(values).__name__}")
        if values.get("format") != FORMAT:
            raise ManifestError(f"{source}: format is {values.get('format')!r}, expected {FORMAT!r}")
        version = values.get("schema_version")
        if version not in READABLE_SCHEMA_VERSIONS:
            raise ManifestError(
                f"{source}: schema_version {version!r} is not supported (this runtime reads "
                f"{list(READABLE_SCHEMA_VERSIONS)}); "
                "re-export the bundle with the matching siamese-edge version"
            )
        try:
            nested = {
                "input": InputSpec(**values["input"]),
                "output": OutputSpec(**values["output"]),
                "verification": Verification(**values["verification"]),
            }
            manifest = cls(**{**values, **nested})
        except (KeyError, TypeError) as error:
            raise ManifestError(f"{source}: missing or unexpected field ({error})") from error
        manifest.validate(source)
        return manifest

    def validate(self, source: str = "manifest") -> None:
        """Checks field values; raises ManifestError with what arrived and what was expected."""
        checks = [
            (self.input.dtype in DTYPES, f"input.dtype {self.input.dtype!r} not in {DTYPES}"),
            (self.output.dtype in DTYPES, f"output.dtype {self.output.dtype!r} not in {DTYPES}"),
            (self.input.color_order in COLOR_ORDERS, f"input.color_order {self.input.color_order!r} not in {COLOR_ORDERS}"),
            (self.input.resize in RESIZE_RULES, f"input.resize {self.input.resize!r} not in {RESIZE_RULES}"),
            (self.input.channels == 3, f"input.channels is {self.input.channels}, expected 3"),
            (self.input.height >= 8 and self.input.width >= 8, f"input size {self.input.height}x{self.input.width} too small"),
            (self.output.embedding_size >= 1, f"output.embedding_size is {self.output.embedding_size}"),
            *self._segment_checks(),
            (self.metric in METRICS, f"metric {self.metric!r} not in {METRICS}"),
            (len(self.model_sha256) == 64, f"model_sha256 {self.model_sha256!r} is not a sha256 hex digest"),
            (0.0 <= self.verification.threshold <= 2.0, f"verification.threshold {self.verification.threshold} outside [0, 2]"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ManifestError(f"{source}: " + "; ".join(problems))

    def _segment_checks(self) -> list[tuple[bool, str]]:
        segments = self.output.segments
        if not segments:
            return []
        try:
            sizes = [int(segment["size"]) for segment in segments]
            weights = [float(segment["weight"]) for segment in segments]
        except (TypeError, KeyError, ValueError):
            return [(False, f"output.segments {segments!r}: expected objects with size and weight")]
        return [
            (sum(sizes) == self.output.embedding_size and min(sizes) >= 1,
             f"output.segments sizes {sizes} do not add up to embedding_size {self.output.embedding_size}"),
            (min(weights) > 0 and abs(sum(w * w for w in weights) - 1.0) < 1e-3,
             f"output.segments weights {weights}: expected positive weights whose squares sum to 1"),
        ]


def read_manifest(bundle_dir: Path) -> Manifest:
    """Reads and validates ``bundle_dir/manifest.json``."""
    path = Path(bundle_dir) / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"no manifest at {path}; is {bundle_dir} a bundle made by `make export`?")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path}: not valid JSON ({error})") from error
    return Manifest.from_dict(values, source=str(path))


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
