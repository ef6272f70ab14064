"""``make device-check``: the edge commands on an emulated 64-bit Raspberry Pi, compared with x86.

qemu-user runs Debian bookworm's arm64 Python with the aarch64 wheels from PyPI as a Cortex-A72
(Pi 4) and a Cortex-A76 (Pi 5), once with ai-edge-litert and once with tflite-runtime 2.14, and
the same commands run on this x86 machine with the x86-64 wheels of the same versions:

    python -m benchmarks.device_check --bundle artifacts/bundle --data-dir DATA --out artifacts/device-check

Modules: ``profiles`` (CPU profiles, /proc/cpuinfo), ``rootfs`` (the cached root file system),
``sites`` (wheels per architecture and interpreter), ``inputs`` (which images, pairs and video),
``prepare`` and ``probe`` (run on each side), ``runner`` (runs the commands), ``compare`` (the
verdict), ``report`` (JSON + markdown). Nothing here runs at import.
"""
