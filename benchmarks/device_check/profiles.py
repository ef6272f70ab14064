"""The emulated CPUs: what ``QEMU_CPU`` selects and the ARM ``/proc/cpuinfo`` that matches it.

LiteRT's cpuinfo library parses ``/proc/cpuinfo``; under qemu-user it would read the host's x86
one and crash (``uncaught target signal 11``). With ``qemu -L ROOT`` qemu serves
``ROOT/proc/cpuinfo`` when that file exists, so each profile writes an ARM one there, one entry
per host CPU (qemu runs guest threads on host CPUs, and /sys still lists the host's).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuProfile:
    """One Raspberry Pi CPU as qemu and /proc/cpuinfo present it."""

    name: str          # short key used in reports: "a72", "a76"
    qemu_cpu: str      # value of QEMU_CPU
    board: str         # the Pi it stands for
    part: str          # MIDR part number, as /proc/cpuinfo prints it
    variant: str
    revision: int
    features: str      # the Features line of that Pi's kernel
    board_revision: str


PROFILES = {
    "a72": CpuProfile("a72", "cortex-a72", "Raspberry Pi 4 Model B Rev 1.4", "0xd08", "0x0", 3,
                      "fp asimd evtstrm crc32 cpuid", "d03114"),
    "a76": CpuProfile("a76", "cortex-a76", "Raspberry Pi 5 Model B Rev 1.0", "0xd0b", "0x4", 1,
                      "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                      "asimdrdm lrcpc dcpop asimddp", "d04170"),
}


def cpuinfo_text(profile: CpuProfile, cpus: int | None = None) -> str:
    """The /proc/cpuinfo of ``profile`` with ``cpus`` entries (default: this host's CPU count)."""
    cpus = cpus or os.cpu_count() or 1
    entries = [
        f"processor\t: {index}\nBogoMIPS\t: 108.00\nFeatures\t: {profile.features}\n"
        f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: {profile.variant}\n"
        f"CPU part\t: {profile.part}\nCPU revision\t: {profile.revision}\n"
        for index in range(cpus)
    ]
    tail = f"Revision\t: {profile.board_revision}\nModel\t\t: {profile.board}\n"
    return "\n".join(entries) + "\n" + tail


def parse_profiles(text: str) -> list[CpuProfile]:
    """``"a72,a76"`` -> profiles; raises ValueError naming the known ones."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PROFILES]
    if unknown or not names:
        raise ValueError(f"unknown CPU profile(s) {unknown or text!r}; expected a comma list of {sorted(PROFILES)}")
    return [PROFILES[name] for name in names]
