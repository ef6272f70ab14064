"""``make device-check``: set up (cached), run the edge commands on x86 and emulated arm64, compare.

    python -m benchmarks.device_check --bundle artifacts/bundle --data-dir DATA --out artifacts/device-check

Needs root once (debootstrap) and the host tools qemu-user-static, debootstrap and dpkg; the root
file system and the wheels are cached under ``--cache`` (default
``~/.cache/siamese-edge/device-check``), the results go to ``--out``. Runs with the standard
library only; each side's Python gets its own wheels. Exit 0 when every check passes, 1 when one
fails, 2 when the set-up cannot be made.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.device_check import inputs, rootfs, runner, sites
from benchmarks.device_check.profiles import parse_profiles
from benchmarks.device_check.rootfs import SetupError

REPO_ROOT = sites.REPO_ROOT


def build_parser() -> argparse.ArgumentParser:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "siamese-edge" / "device-check"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=REPO_ROOT / "artifacts" / "bundle",
                        help="bundle to check (copied)")
    parser.add_argument("--data-dir", type=Path, help="folder of the test images (default: the manifest's data_dir)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "artifacts" / "device-check", help="results folder")
    parser.add_argument("--cache", type=Path, default=cache, help="root file system and wheels")
    parser.add_argument("--mirror", default=rootfs.DEFAULT_MIRROR, help="Debian mirror for debootstrap")
    parser.add_argument("--profiles", default="a72,a76", help="CPU profiles: a72 (Pi 4), a76 (Pi 5)")
    parser.add_argument("--interpreters", default="litert,tflite-runtime", help="interpreters to check")
    parser.add_argument("--images", type=_positive, default=16, help="test images searched with --image")
    parser.add_argument("--pairs", type=_positive, default=4, help="pairs checked with edge.verify")
    parser.add_argument("--frames", type=_positive, default=8, help="frames of the video used as the camera")
    parser.add_argument("--tensors", type=_positive, default=4, help="identical tensors fed to the interpreter")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def default_data_dir(bundle: Path) -> Path:
    """The manifest's ``data.data_dir``, relative to the repository as export writes it."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    data_dir = (manifest.get("data") or {}).get("data_dir")
    if not data_dir:
        raise SetupError(f"{bundle}/manifest.json names no data_dir; pass DATA_DIR=<the data folder>")
    return (REPO_ROOT / data_dir).resolve()


def set_up(args, log) -> tuple[Path, dict, dict]:
    """The root file system and the four sites; returns them with the set-up's times."""
    started = time.monotonic()
    was_cached = (args.cache / "rootfs" / rootfs.STAMP).is_file()
    root = rootfs.ensure_rootfs(args.cache, args.mirror, log)
    interpreters = [name.strip() for name in args.interpreters.split(",") if name.strip()]
    for name in interpreters:
        sites.requirements(name)  # refuses an unknown name before anything downloads
    x86_python = f"{sys.version_info.major}.{sys.version_info.minor}"
    site_paths = {(arch, name): sites.ensure_site(args.cache, arch, name, python, log)
                  for name in interpreters for arch, python in (("x86_64", x86_python), ("aarch64", "3.11"))}
    timing = {"setup_seconds": round(time.monotonic() - started, 1), "rootfs_was_cached": was_cached}
    return root, site_paths, timing


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    started = time.monotonic()
    try:
        profiles = parse_profiles(args.profiles)
        if not (args.bundle / "manifest.json").is_file():
            raise FileNotFoundError(f"no bundle at {args.bundle} (no manifest.json); pass BUNDLE=<an exported bundle>")
        data_dir = args.data_dir or default_data_dir(args.bundle)
        root, site_paths, timing = set_up(args, log)
        for stale in ("sides", "inputs", "bundle", "report.json", "report.md"):
            subprocess.run(["rm", "-rf", str(args.out / stale)], check=True)
        bundle = args.out / "bundle"
        shutil.copytree(args.bundle, bundle, symlinks=True)
        rows = inputs.read_split(args.bundle, data_dir)
        plan = inputs.make_plan(rows, args.images, args.pairs, args.frames, args.tensors)
        inputs.write_plan(plan, args.out / "inputs")
    except (SetupError, FileNotFoundError, ValueError, OSError) as error:
        log(f"error: {error}")
        return 2
    sides = [runner.x86_side(site_paths[("x86_64", name)], name) for name in _names(site_paths)]
    prepared = subprocess.run(sides[0].python() + ["-m", "benchmarks.device_check.prepare", "--bundle", str(bundle),
                              "--plan", str(args.out / "inputs")], env=sides[0].environment(), cwd=REPO_ROOT)
    if prepared.returncode != 0:
        log("error: preparing the video and tensors on x86 failed (see above)")
        return 2
    commands = runner.edge_commands(bundle, args.out / "inputs", [path for path, _ in plan.images], len(plan.frames))
    for side in sides:
        _run(side, bundle, args.out, commands, log)
    for profile in profiles:
        rootfs.write_cpuinfo(root, profile)
        for name in _names(site_paths):
            _run(runner.arm_side(site_paths[("aarch64", name)], name, root, profile), bundle, args.out, commands, log)
    timing["total_seconds_before_report"] = round(time.monotonic() - started, 1)
    _write_run_record(args, timing, plan)
    report = subprocess.run(sides[0].python() + ["-m", "benchmarks.device_check.report", "--out", str(args.out)],
                            env=sides[0].environment(), cwd=REPO_ROOT)
    return report.returncode


def _names(site_paths: dict) -> list[str]:
    return list(dict.fromkeys(name for _, name in site_paths))


def _run(side, bundle: Path, out: Path, commands: dict, log) -> None:
    folder = out / "sides" / side.key
    probe = ["-m", "benchmarks.device_check.probe", "--bundle", str(bundle), "--inputs", str(out / "inputs"),
             "--out", str(folder / "probe")]
    # x86 saves both kernel sets' outputs for the report; so does an emulated tflite-runtime side, which
    # shows whether arm64 computes the reference kernels as x86 does and how far its default ones are from them
    probe += ["--both-kernels"] if side.arch == "x86_64" or side.interpreter == "tflite-runtime" else []
    runner.run_side(side, commands, probe, folder, log)


def _write_run_record(args, timing: dict, plan) -> None:
    qemu = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True).stdout.splitlines()
    record = {**timing, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "host": platform.machine(), "host_cpu": _host_cpu(), "cpus": os.cpu_count(),
              "qemu": qemu[0] if qemu else None, "bundle": str(args.bundle), "images": len(plan.images),
              "pairs": len(plan.pairs), "frames": len(plan.frames), "tensors": len(plan.tensors),
              "annoy": "not installed on either side: galleries up to 10,000 items are searched exactly anyway"}
    (args.out / "run.json").write_text(json.dumps(record, indent=1))


def _host_cpu() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


if __name__ == "__main__":
    sys.exit(main())
