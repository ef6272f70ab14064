"""What machine a device benchmark ran on: CPU model, cores, clock, Python and package versions.

On a Raspberry Pi the board comes from the device tree (``/proc/device-tree/model``) and the core
from /proc/cpuinfo's "CPU part"; on x86 from /proc/cpuinfo's "model name".
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# ARM's "CPU part" numbers (implementer 0x41) of the cores single-board computers use.
ARM_CORES = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd0c": "Neoverse-N1"}
RUNTIME_DISTRIBUTIONS = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}
OPENCV_DISTRIBUTIONS = ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
                        "opencv-contrib-python")


def cpuinfo_fields(text: str) -> dict[str, str]:
    """The first processor block of /proc/cpuinfo plus the board-wide lines after it (Pi: Model)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def cpu_model(cpuinfo: str, device_tree_model: str | None = None) -> str:
    """A human name for the CPU: "Raspberry Pi 4 Model B Rev 1.4 (4x Cortex-A72)" or "AMD EPYC"."""
    fields = cpuinfo_fields(cpuinfo)
    core = ARM_CORES.get(fields.get("CPU part", "").lower())
    board = device_tree_model or fields.get("Model")
    name = fields.get("model name") or fields.get("Processor") or core or platform.processor() or platform.machine()
    if board:
        return f"{board} ({core or name})"
    if fields.get("vendor_id"):  # x86: the family and model tell CPU generations apart (Zen 3 / Zen 4)
        return f"{name} ({fields['vendor_id']} family {fields.get('cpu family', '?')} model {fields.get('model', '?')})"
    return name


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip() or None
    except OSError:
        return None


def clock_mhz(cpuinfo: str) -> float | None:
    """The maximum clock from cpufreq (what a Pi reports), else /proc/cpuinfo's current "cpu MHz"."""
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if khz and khz.isdigit():
        return int(khz) / 1000.0
    mhz = cpuinfo_fields(cpuinfo).get("cpu MHz")
    try:
        return float(mhz) if mhz else None
    except ValueError:
        return None


def package_version(*names: str) -> tuple[str, str] | None:
    """(distribution, version) of the first installed distribution among ``names``."""
    for name in names:
        try:
            return name, version(name)
        except PackageNotFoundError:
            continue
    return None


def machine_facts() -> dict:
    """Everything the report's machine lines show; imports numpy, OpenCV and the interpreter."""
    import cv2
    import numpy

    from edge.interpreter import find_runtime

    cpuinfo = _read("/proc/cpuinfo") or ""
    runtime = find_runtime()
    opencv = package_version(*OPENCV_DISTRIBUTIONS)
    annoy = package_version("annoy")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu_model(cpuinfo, _read("/proc/device-tree/model")),
        "machine": platform.machine(), "cores": os.cpu_count(), "usable_cores": usable, "mhz": clock_mhz(cpuinfo),
        "os": platform.platform(terse=True),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "interpreter": f"{runtime.name} {runtime.version}",
        "versions": {RUNTIME_DISTRIBUTIONS.get(runtime.name, runtime.name): runtime.version, "numpy": numpy.__version__,
                     (opencv[0] if opencv else "opencv"): opencv[1] if opencv else cv2.__version__,
                     "annoy": annoy[1] if annoy else "not installed"},
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
