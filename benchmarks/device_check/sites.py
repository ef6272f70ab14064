"""The Python packages of each side: one ``pip install --target`` folder per architecture and interpreter.

The host's pip installs the aarch64 wheels too (``--platform`` with every manylinux tag up to
bookworm's glibc 2.36, since pip takes only the tags it is given: ai-edge-litert 2.3.0's arm64
wheel is ``manylinux_2_27``), so no pip runs under emulation. Annoy is left out on both sides: it
has no arm64 wheel, and galleries up to 10,000 items are searched exactly with numpy anyway (the
device runtime says so and falls back to exact search without it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.device_check.rootfs import SetupError

REPO_ROOT = Path(__file__).resolve().parents[2]
INTERPRETERS = ("litert", "tflite-runtime")
# tflite-runtime 2.14 is the last release: numpy < 2, so OpenCV 4 (OpenCV 5 needs numpy 2).
TFLITE_RUNTIME_PINS = ("tflite-runtime==2.14.0", "numpy==1.26.4", "opencv-python-headless==4.11.0.86")
STAMP = ".siamese-device-check.json"


def requirements(interpreter: str) -> list[str]:
    """The pins of one interpreter's side: requirements-edge.txt for LiteRT, fixed ones for tflite-runtime."""
    if interpreter == "litert":
        lines = (REPO_ROOT / "requirements-edge.txt").read_text().splitlines()
        return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    if interpreter == "tflite-runtime":
        return list(TFLITE_RUNTIME_PINS)
    raise ValueError(f"unknown interpreter {interpreter!r}; expected one of {INTERPRETERS}")


def platform_tags(arch: str) -> list[str]:
    """manylinux tags pip may take for ``arch`` ("aarch64" or "x86_64") on a glibc 2.36 system."""
    return [f"manylinux2014_{arch}"] + [f"manylinux_2_{minor}_{arch}" for minor in range(17, 37)]


def ensure_site(cache: Path, arch: str, interpreter: str, python_version: str, log=print) -> Path:
    """Returns ``<cache>/sites/<arch>-<interpreter>``, installing the wheels first when needed.

    Raises:
      SetupError: pip failed (no network and nothing cached, or no wheel for a pin).
    """
    site = cache / "sites" / f"{arch}-{interpreter}"
    recipe = {"arch": arch, "python": python_version, "requirements": requirements(interpreter)}
    stamp = site / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe:
        return site
    partial = site.with_name(site.name + ".partial")
    subprocess.run(["rm", "-rf", str(partial), str(site)], check=True)
    log(f"device-check: pip install {arch} wheels for {interpreter} into {site}")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--target", str(partial), "--only-binary=:all:", "--implementation", "cp",
               "--python-version", python_version]
    for tag in platform_tags(arch):
        command += ["--platform", tag]
    result = subprocess.run(command + recipe["requirements"], capture_output=True, text=True)
    if result.returncode != 0:
        raise SetupError(f"pip could not install {recipe['requirements']} for {arch}: "
                         + " | ".join(result.stderr.strip().splitlines()[-4:]))
    (partial / STAMP).write_text(json.dumps(recipe))
    partial.rename(site)
    return site


def installed_versions(site: Path) -> dict[str, str]:
    """{distribution name: version} read from the site's ``*.dist-info`` folders."""
    versions = {}
    for info in site.glob("*.dist-info"):
        match = re.fullmatch(r"(.+)-([^-]+)\.dist-info", info.name)
        if match:
            versions[match.group(1).lower().replace("_", "-")] = match.group(2)
    return dict(sorted(versions.items()))
