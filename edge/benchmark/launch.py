"""Runs a command and prints one JSON line: its peak RSS, wall seconds, exit code and output tails.

    python -m edge.benchmark.launch python -m edge.search --bundle B --image x.jpg --json

The cold-start measurement (edge.benchmark.coldstart) starts the command through this small
process rather than from the benchmark itself: a child created by fork/vfork counts the parent's
pages in its peak until it execs, and the benchmark holds an interpreter, OpenCV and a gallery.
The peak is ``ru_maxrss`` of RUSAGE_CHILDREN, which here covers exactly one child (the same
figure as benchmarks/peak_rss.py's wait4). Standard library only.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if not command:
        print("usage: python -m edge.benchmark.launch COMMAND [ARGS...]", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True)
    except OSError as error:
        print(json.dumps({"exit": 127, "seconds": 0.0, "peak_rss_kib": 0, "stdout": "", "stderr": str(error)}))
        return 0
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if sys.platform == "darwin":  # bytes there, KiB on Linux
        peak //= 1024
    print(json.dumps({"exit": done.returncode, "seconds": round(seconds, 4), "peak_rss_kib": int(peak),
                      "stdout": done.stdout.decode("utf-8", "replace")[-2000:],
                      "stderr": done.stderr.decode("utf-8", "replace")[-2000:]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
