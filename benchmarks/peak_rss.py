"""Runs a command and prints its peak RSS in KiB (``ru_maxrss`` from wait4) and wall seconds.

Used by the cold-start benchmark. Measuring from the benchmark process itself would count the
parent's pages the child holds between fork and exec (over 1 GB with TensorFlow loaded); this
launcher is a small process, so its children start small.

    python benchmarks/peak_rss.py python -m edge.search --bundle B --image x.jpg
"""

import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    output = process.stdout.read()
    process.stdout.close()
    seconds = time.perf_counter() - started
    sys.stdout.write(output.decode("utf-8", "replace"))
    print(f"PEAK_RSS_KIB {usage.ru_maxrss} SECONDS {seconds:.4f} EXIT {os.waitstatus_to_exitcode(status)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
