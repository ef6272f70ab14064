"""Runs the edge commands on one side (x86, or arm64 under qemu-user) and keeps what they print.

Each side is a Python with ``-S`` (no site-packages: only the side's wheels and this repository
on PYTHONPATH). An arm64 side is ``qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.11``: qemu
looks every absolute path up inside ROOT first and falls back to the host, so the repository, the
bundle and the images are read from their host paths on both sides, and ``ROOT/proc/cpuinfo``
(the CPU profile) hides the host's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.device_check.sites import REPO_ROOT, installed_versions

TIMEOUT_S = 1200  # one command; emulation is ~1 s per image
# Which kernels the x86 side of each interpreter runs (every emulated side runs the default ones, as a
# Pi would). tflite-runtime's x86 side runs its reference kernels (OpResolverType.BUILTIN_REF, the
# arithmetic the interpreter specifies): arm64 tflite-runtime's optimised int8 kernels compute exactly
# that, x86's optimised ones round differently (up to 4 steps on the tf_flowers bundle), so x86's
# default kernels are no stand-in for a Pi. LiteRT's x86 default kernels match arm64's bit for bit.
X86_KERNELS = {"litert": "default", "tflite-runtime": "reference"}


@dataclass
class Side:
    """Where and how the commands run."""

    key: str                   # folder name: "x86-litert", "a72-tflite-runtime"
    arch: str                  # "x86_64" or "aarch64"
    interpreter: str           # "litert" or "tflite-runtime"
    site: Path
    profile: str | None = None  # CPU profile name on arm64
    prefix: list[str] = field(default_factory=list)  # the Python to run, with qemu in front on arm64
    env: dict[str, str] = field(default_factory=dict)
    kernels: str = "default"   # "default", or "reference": every edge command and the probe get --reference-kernels

    def python(self) -> list[str]:
        return self.prefix + ["-S"]

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "QEMU_"))}
        env.update({"PYTHONPATH": f"{self.site}{os.pathsep}{REPO_ROOT}", "PYTHONNOUSERSITE": "1"})
        env.update(self.env)
        return env


def x86_side(site: Path, interpreter: str) -> Side:
    return Side(f"x86-{interpreter}", "x86_64", interpreter, site, None, [sys.executable],
                kernels=X86_KERNELS.get(interpreter, "default"))


def arm_side(site: Path, interpreter: str, root: Path, profile) -> Side:
    prefix = ["qemu-aarch64-static", "-L", str(root), str(root / "usr/bin/python3.11")]
    return Side(f"{profile.name}-{interpreter}", "aarch64", interpreter, site, profile.name, prefix,
                {"QEMU_CPU": profile.qemu_cpu})


def edge_commands(bundle: Path, inputs: Path, images: list[str], frames: int) -> dict[str, list[str]]:
    """The commands each side runs, by result name (stdout goes to ``<name>.out``)."""
    return {
        "list": ["-m", "edge.gallery", "list", "--bundle", str(bundle), "--json"],
        "search": ["-m", "edge.search", "--bundle", str(bundle), "--k", "5", "--json", "--image", *images],
        "verify": ["-m", "edge.verify", "--bundle", str(bundle), "--pairs", str(inputs / "pairs.csv"), "--json"],
        # --max-frames above the video's length: the frame count is the decoder's, not the cap's
        "video": ["-m", "edge.search", "--bundle", str(bundle), "--camera", str(inputs / "video.avi"), "--json",
                  "--headless", "--quiet", "--k", "5", "--max-frames", str(frames + 5)],
    }


def run_side(side: Side, commands: dict[str, list[str]], probe: list[str], out: Path, log=print) -> dict:
    """Runs every command and the probe (each with ``--reference-kernels`` when the side runs those);
    writes ``side.json`` with the arguments, exit codes and times; returns it."""
    out.mkdir(parents=True, exist_ok=True)
    record = {"key": side.key, "arch": side.arch, "interpreter": side.interpreter, "profile": side.profile,
              "python": side.python(), "qemu_cpu": side.env.get("QEMU_CPU"), "kernels": side.kernels,
              "versions": installed_versions(side.site), "commands": {}}
    flag = ["--reference-kernels"] if side.kernels == "reference" else []
    for name, arguments in [*commands.items(), ("probe", probe)]:
        arguments = arguments + flag
        record["commands"][name] = {"argv": arguments}
        started = time.monotonic()
        with open(out / f"{name}.out", "w") as stdout:
            try:
                result = subprocess.run(side.python() + arguments, stdout=stdout, stderr=subprocess.PIPE,
                                        text=True, env=side.environment(), cwd=REPO_ROOT, timeout=TIMEOUT_S)
                code, stderr = result.returncode, result.stderr
            except subprocess.TimeoutExpired as error:
                code, stderr = "timeout", str(error.stderr or "")
        seconds = round(time.monotonic() - started, 1)
        record["commands"][name].update(rc=code, seconds=seconds, stderr_tail=stderr.strip().splitlines()[-3:])
        log(f"device-check: {side.key:>20} {name:<6} exit {code} in {seconds} s")
    (out / "side.json").write_text(json.dumps(record, indent=1))
    return record
