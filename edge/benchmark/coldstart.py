"""Cold start: ``python -m edge.search --image`` in a fresh process, timed and its peak RSS taken.

The same definition as benchmarks/test_bench_pipeline.py's cold start (benchmarks/RESULTS.md,
"Cold start and memory"): process start to the first result printed, which covers the imports,
``open_bundle`` (manifest, model hash, interpreter), the gallery load, the first embedding and a
search. The first start warms the page cache and is reported apart, not in the median.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import edge


class ColdStartError(RuntimeError):
    """The fresh edge process did not print a result."""


def edge_search_command(bundle: Path, image: Path, python: str = sys.executable) -> list[str]:
    """The command whose start-up is measured (what a user runs, same interpreter as the benchmark)."""
    return [python, "-m", "edge.search", "--bundle", str(bundle), "--image", str(image), "--json"]


def launch_once(command: list[str], python: str = sys.executable) -> dict:
    """Runs ``command`` through edge.benchmark.launch; returns its exit, seconds and peak RSS (KiB).

    Raises:
      ColdStartError: the command failed or printed no search result.
    """
    env = dict(os.environ)
    package_root = str(Path(edge.__file__).resolve().parent.parent)  # the child runs this same edge code
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    done = subprocess.run([python, "-m", "edge.benchmark.launch", *command], capture_output=True, text=True,
                          env=env, timeout=600)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise ColdStartError(f"the cold-start launcher printed no result (exit {done.returncode}): "
                             f"{done.stderr.strip()[-300:]}") from None
    if result["exit"] != 0 or '"matches"' not in result["stdout"]:
        last = (result["stderr"].strip().splitlines() or ["no output"])[-1]
        raise ColdStartError(f"cold start of `{' '.join(command[1:4])} ...` failed (exit {result['exit']}): {last}")
    return result


def cold_start(bundle: Path, image: Path, starts: int, python: str = sys.executable) -> dict:
    """One warm-up start, then ``starts`` timed ones: median seconds, first start, peak RSS (MiB)."""
    command = edge_search_command(bundle, image, python)
    first = launch_once(command, python)
    runs = [launch_once(command, python) for _ in range(starts)]
    seconds = [r["seconds"] for r in runs]
    return {
        "command": "python -m edge.search --bundle B --image <one image> --json",
        "starts": starts,
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "first_start_s": first["seconds"],
        "peak_rss_mib": max(r["peak_rss_kib"] for r in [first, *runs]) / 1024.0,
        "python": python,
    }
