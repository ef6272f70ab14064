"""Shared benchmark fixtures: the exported bundle, its encoder in other precisions, real images.

Run with ``make bench`` (needs ``make train export`` first). Variants of the encoder are converted
once from the bundle's training run and cached under ``artifacts/bench_models/<model sha>/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# As the edge commands run (edge/__init__.py): one OpenBLAS thread, set before numpy loads it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE = Path(os.environ.get("BENCH_BUNDLE", REPO_ROOT / "artifacts" / "bundle"))
SMALL_SIZE = 160  # the trade-off point below the bundle's input size


@pytest.fixture(scope="session")
def bundle_dir() -> Path:
    if not (BUNDLE / "manifest.json").is_file():
        pytest.exit(f"no bundle at {BUNDLE}; run `make train export` first (or set BENCH_BUNDLE)", returncode=2)
    return BUNDLE


@pytest.fixture(scope="session")
def manifest(bundle_dir):
    from edge.manifest import read_manifest

    return read_manifest(bundle_dir)


@pytest.fixture(scope="session")
def run_dir(bundle_dir) -> Path:
    return Path(json.loads((bundle_dir / "fidelity.json").read_text())["run"])


@pytest.fixture(scope="session")
def model_variants(bundle_dir, manifest, run_dir) -> dict[str, Path]:
    """name -> .tflite path: the bundle's own model plus float32, float16 and a smaller input."""
    cache = REPO_ROOT / "artifacts" / "bench_models" / manifest.model_sha256[:16]
    cache.mkdir(parents=True, exist_ok=True)
    size = manifest.input.height
    variants = {f"{manifest.quantization}@{size}": bundle_dir / manifest.model_file}
    wanted = {f"float32@{size}": ("float32", size), f"float16@{size}": ("float16", size),
              f"int8@{SMALL_SIZE}": ("int8", SMALL_SIZE)}
    for name, (mode, side) in wanted.items():
        path = cache / f"{name.replace('@', '_')}.tflite"
        if not path.is_file():
            path.write_bytes(_convert(run_dir, mode, side))
        variants[name] = path
    return variants


def _convert(run_dir: Path, mode: str, size: int) -> bytes:
    import keras

    from export.convert import fixed_batch_model, to_tflite
    from train.data import load_images
    from train.model import export_encoder, rebuild_encoder
    from train.run_folder import data_dir_of, open_run

    run = open_run(run_dir)
    trained = keras.models.load_model(run.encoder_path)
    if size != run.config.input_size:  # same weights, another input size
        trained = rebuild_encoder(trained, size, run.config.alpha)
    images = None
    if mode == "int8":
        loaded, _ = load_images(data_dir_of(run, None), run.train_records[::10][:200], run.class_names, size)
        images = lambda: iter(loaded.clean.astype(np.float32))  # noqa: E731
    return to_tflite(fixed_batch_model(export_encoder(trained)), mode, images)


@pytest.fixture(scope="session")
def test_image_paths(bundle_dir, manifest) -> list[Path]:
    data_dir = Path(manifest.data["data_dir"])
    if not data_dir.is_absolute():
        data_dir = (REPO_ROOT / data_dir).resolve()
    lines = (bundle_dir / "split" / "test.txt").read_text().splitlines()
    return [data_dir / line.split("\t")[0] for line in lines]


@pytest.fixture(scope="session")
def video_frames(test_image_paths) -> list[np.ndarray]:
    """Real frames: test photos written to an MJPG video and read back through cv2.VideoCapture."""
    import tempfile

    import cv2

    from edge.camera import read_frames

    folder = Path(tempfile.mkdtemp(prefix="bench-video-"))
    video = folder / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (640, 480))
    for path in test_image_paths[:40]:
        writer.write(cv2.resize(cv2.imread(str(path)), (640, 480)))
    writer.release()
    return [frame for _, frame in read_frames(str(video))]


def pytest_benchmark_update_machine_info(config, machine_info):
    """Records what the report needs: cores, frequency, FP32 FLOPs/cycle, versions, venv size."""
    machine_info["siamese_edge"] = {**cpu_facts(), "versions": _versions(), "edge_venv_mib": venv_breakdown()}


def cpu_facts() -> dict:
    """Cores, clock and FP32 FLOPs per cycle per core from /proc/cpuinfo (Linux x86-64).

    FLOPs/cycle: AMD Zen 4 (family 0x19 with AVX-512) executes AVX-512 on two 256-bit FMA pipes:
    2 x 8 lanes x 2 = 32. Other x86 with AVX-512: two 512-bit FMA units, 64. AVX2 + FMA: two 256-bit
    FMA units, 32. Otherwise SSE: 8.
    """
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    first = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        first[key.strip()] = value.strip()
    flags = set(first.get("flags", "").split())
    vendor, family = first.get("vendor_id", ""), int(first.get("cpu family", "0") or 0)
    if "avx512f" in flags and vendor == "AuthenticAMD" and family == 0x19:
        per_cycle, reason = 32, "Zen 4: AVX-512 on 2x256-bit FMA pipes"
    elif "avx512f" in flags:
        per_cycle, reason = 64, "AVX-512: 2x512-bit FMA units"
    elif {"avx2", "fma"} <= flags:
        per_cycle, reason = 32, "AVX2: 2x256-bit FMA units"
    else:
        per_cycle, reason = 8, "SSE"
    mhz = float(first.get("cpu MHz", "0") or 0)
    return {"cores": os.cpu_count(), "ghz": mhz / 1000.0, "fp32_flops_per_cycle": per_cycle, "flops_reason": reason,
            "cpu_detail": f"{vendor} family {family} model {first.get('model', '?')}"}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("ai-edge-litert", "numpy", "opencv-python", "annoy", "tensorflow"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def venv_breakdown(venv: Path = REPO_ROOT / ".venv-edge") -> dict | None:
    """Size of the edge venv and of its largest site-packages entries, in MiB."""
    if not venv.is_dir():
        return None

    def size(path: Path) -> float:
        if path.is_file():
            return path.stat().st_size / 2**20
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20

    site = next(venv.glob("lib/python*/site-packages"), None)
    parts = sorted(((p.name, size(p)) for p in site.iterdir()), key=lambda item: -item[1]) if site else []
    return {"total": size(venv), "parts": [(name, round(mib, 1)) for name, mib in parts if mib >= 1.0]}
