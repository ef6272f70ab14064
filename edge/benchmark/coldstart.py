"""Cold start: fresh processes timed from start to result, and their peak RSS.

Two commands, each in a new process so that the imports count:

- ``python -m edge.search --bundle B --image X --json``: the definition of benchmarks/RESULTS.md
  ("Cold start and memory", benchmarks/test_bench_pipeline.py): imports, ``open_bundle``
  (manifest, model hash, interpreter), the gallery load, the first embedding and a search;
- ``open_bundle(B).encoder.embed(X)`` alone: what a program embedding images pays before its first
  vector, without the gallery.

One warm-up start (edge.search) fills the page cache first; it is reported apart, not in a median.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import edge

EMBED_CODE = ("import json, sys; from edge.bundle import open_bundle; "
              "v = open_bundle(sys.argv[1]).encoder.embed(sys.argv[2]); print(json.dumps({'embedding_size': len(v)}))")


class ColdStartError(RuntimeError):
    """A fresh edge process did not print its result."""


def edge_search_command(bundle: Path, image: Path, python: str = sys.executable) -> list[str]:
    """What a user runs, with the benchmark's own interpreter."""
    return [python, "-m", "edge.search", "--bundle", str(bundle), "--image", str(image), "--json"]


def embed_command(bundle: Path, image: Path, python: str = sys.executable) -> list[str]:
    return [python, "-c", EMBED_CODE, str(bundle), str(image)]


def launch_once(command: list[str], expected: str, python: str = sys.executable) -> dict:
    """Runs ``command`` through edge.benchmark.launch; returns its exit, seconds and peak RSS (KiB).

    Raises:
      ColdStartError: the command failed or its output lacks ``expected``.
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
    if result["exit"] != 0 or expected not in result["stdout"]:
        last = (result["stderr"].strip().splitlines() or ["no output"])[-1]
        raise ColdStartError(f"cold start of `{' '.join(command[1:3])} ...` failed (exit {result['exit']}): {last}")
    return result


def _summary(runs: list[dict]) -> dict:
    seconds = [r["seconds"] for r in runs]
    return {"median_s": statistics.median(seconds), "min_s": min(seconds),
            "peak_rss_mib": max(r["peak_rss_kib"] for r in runs) / 1024.0}


def cold_start(bundle: Path, image: Path, starts: int, python: str = sys.executable) -> dict:
    """One warm-up start, then ``starts`` timed ones of each command.

    Returns edge.search's median and min seconds and peak RSS (MiB, warm-up included, as
    RESULTS.md counts it) at the top level, the warm-up's seconds, and ``open_and_embed``.
    """
    search = edge_search_command(bundle, image, python)
    first = launch_once(search, '"matches"', python)
    searches = [launch_once(search, '"matches"', python) for _ in range(starts)]
    embeds = [launch_once(embed_command(bundle, image, python), "embedding_size", python) for _ in range(starts)]
    return {"command": "python -m edge.search --bundle B --image <one image> --json", "starts": starts,
            **_summary([first, *searches]), "median_s": _summary(searches)["median_s"],
            "min_s": _summary(searches)["min_s"], "first_start_s": first["seconds"],
            "open_and_embed": {"command": "open_bundle(B).encoder.embed(<one image>)", **_summary(embeds)},
            "python": python}
