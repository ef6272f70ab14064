"""The bundle manifest: the JSON contract between the workstation and the device.

A bundle folder holds ``encoder.tflite``, ``manifest.json`` and ``gallery/``. The manifest says
how to feed the model (size, colour order, resize rule, dtype and quantisation), what comes out
(embedding size and quantisation; L2 normalisation happens on the device, segment by segment
when the output is made of several), the metric, the
calibrated verification threshold, the model's sha256 and the metrics measured at export.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from edge.json_fields import FieldError, build, json_number, to_plain
from edge.layout import MANIFEST_FILE, MODEL_FILE, UnsafePathError, confined

__all__ = ["MANIFEST_FILE", "MODEL_FILE", "Manifest", "ManifestError", "InputSpec", "OutputSpec", "Verification",
           "read_manifest", "file_sha256"]

SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
"""Version 2 added ``output.segments``; a version 1 manifest reads as one unsegmented output."""
FORMAT = "siamese-edge-bundle"
MAX_MANIFEST_BYTES = 16 * 2**20
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
    unknown: dict = field(default_factory=dict, compare=False, repr=False)
    """Fields this runtime does not know (written by a newer exporter): kept, written back, unused."""


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
    unknown: dict = field(default_factory=dict, compare=False, repr=False)
    """Fields this runtime does not know (written by a newer exporter): kept, written back, unused."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.segments or ()))


@dataclass(frozen=True)
class Verification:
    """Pair verification rule: same when cosine distance (1 - cos) <= threshold."""

    threshold: float
    method: str
    target_far: float | None = None
    details: dict = field(default_factory=dict)
    unknown: dict = field(default_factory=dict, compare=False, repr=False)
    """Fields this runtime does not know (written by a newer exporter): kept, written back, unused."""


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
    unknown: dict = field(default_factory=dict, compare=False, repr=False)
    """Fields this runtime does not know (written by a newer exporter): kept, written back, unused."""

    def to_dict(self) -> dict:
        return to_plain(self)

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
        nested = {"input": InputSpec, "output": OutputSpec, "verification": Verification}
        values = dict(values)
        try:
            for name, spec in nested.items():
                if name in values:
                    values[name] = build(spec, values[name], f"{name}.", source)
            manifest = build(cls, values, "", source)
        except FieldError as error:
            raise ManifestError(str(error)) from error
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
            (_plain_file_name(self.model_file),
             f"model_file {self.model_file!r} must be a relative path inside the bundle, without '..'"),
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
            sizes = [json_number(segment["size"], int) for segment in segments]
            weights = [json_number(segment["weight"], float) for segment in segments]
        except (TypeError, KeyError, ValueError):
            return [(False, f"output.segments {segments!r}: expected objects with size and weight")]
        return [
            (sum(sizes) == self.output.embedding_size and min(sizes) >= 1,
             f"output.segments sizes {sizes} do not add up to embedding_size {self.output.embedding_size}"),
            (min(weights) > 0 and abs(sum(w * w for w in weights) - 1.0) < 1e-3,
             f"output.segments weights {weights}: expected positive weights whose squares sum to 1"),
        ]


def read_manifest(bundle_dir: Path) -> Manifest:
    """Reads and validates ``bundle_dir/manifest.json``.

    Raises:
      ManifestError: missing, a symlink, too large, not UTF-8, not JSON, or a bad field (named).
    """
    try:
        path = confined(Path(bundle_dir), MANIFEST_FILE, "manifest")
    except UnsafePathError as error:
        raise ManifestError(str(error)) from error
    if not path.is_file():
        raise ManifestError(f"no manifest at {path}; is {bundle_dir} a bundle made by `make export`?")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: {size:,} bytes, more than a manifest's limit of {MAX_MANIFEST_BYTES:,}")
    try:
        values = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise ManifestError(f"{path}: not UTF-8 text ({error}); re-export the bundle") from error
    except (json.JSONDecodeError, RecursionError) as error:
        raise ManifestError(f"{path}: not valid JSON ({error})") from error
    return Manifest.from_dict(values, source=str(path))


def _plain_file_name(text: str) -> bool:
    parts = Path(text).parts
    return bool(text) and "\x00" not in text and not Path(text).is_absolute() and ".." not in parts


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
