"""A bundle on the device: manifest + checked model + gallery, loaded together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.encoder import Encoder
from edge.gallery.openset import bundle_calibration
from edge.gallery.store import Gallery, load_gallery
from edge.interpreter import Runtime
from edge.layout import GALLERY_DIR, MANIFEST_FILE, confined
from edge.manifest import Manifest, ManifestError, file_sha256, read_manifest

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ARTIFACTS = REPO_ROOT / "artifacts"


@dataclass
class Bundle:
    """What ``python -m edge.search`` works with."""

    path: Path
    manifest: Manifest
    encoder: Encoder

    @property
    def gallery_dir(self) -> Path:
        """``<bundle>/gallery``, refused (UnsafePathError) when it is a symlink out of the bundle."""
        return confined(self.path, GALLERY_DIR, "gallery folder")

    def gallery(self) -> Gallery:
        """Loads the gallery, refusing one made by another model."""
        return load_gallery(self.gallery_dir, self.manifest.output.embedding_size, self.manifest.model_sha256,
                            bundle_calibration(self.manifest.verification.threshold))


def open_bundle(
    path: Path,
    num_threads: int | None = None,
    delegate: str | None = None,
    use_xnnpack: bool = True,
    runtime: Runtime | None = None,
    reference_kernels: bool = False,
) -> Bundle:
    """Reads the manifest, checks the model's sha256 against it, and starts the interpreter.

    Raises:
      FileNotFoundError: no bundle folder or no model file.
      ManifestError: bad manifest, or a model whose hash or shapes differ from it.
      UnsafePathError: the manifest's model_file leads outside the bundle (absolute, '..', symlink).
      InterpreterError: the interpreter cannot run the model.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no bundle at {path}; make one with `make export BUNDLE={path}`")
    manifest = read_manifest(path)
    model_path = confined(path, manifest.model_file, "manifest model_file")  # before anything is read
    if not model_path.is_file():
        raise FileNotFoundError(f"bundle {path} has no model file {manifest.model_file}")
    actual = file_sha256(model_path)
    if actual != manifest.model_sha256:
        raise ManifestError(
            f"{model_path} has sha256 {actual[:12]}..., {MANIFEST_FILE} expects {manifest.model_sha256[:12]}...; "
            "the model was replaced or corrupted. Copy the bundle again or re-export it"
        )
    encoder = Encoder(model_path, manifest, num_threads, delegate, use_xnnpack, runtime,
                      reference_kernels=reference_kernels)
    return Bundle(path, manifest, encoder)


def newest_bundle(artifacts: Path = DEFAULT_ARTIFACTS) -> Path:
    """The most recently written bundle below ``artifacts`` (a folder holding manifest.json)."""
    candidates = [p.parent for p in Path(artifacts).glob(f"*/{MANIFEST_FILE}")]
    if not candidates:
        raise FileNotFoundError(f"no bundle found in {artifacts}; pass --bundle DIR or run `make export`")
    return max(candidates, key=lambda p: (p / MANIFEST_FILE).stat().st_mtime)
