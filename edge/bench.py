"""Device benchmark: how fast this machine runs the bundle, in benchmarks/RESULTS.md's rows.

    python -m edge.bench --bundle artifacts/bundle                 # Markdown report on stdout
    python -m edge.bench --bundle artifacts/bundle --threads 1 2 4 --json
    python -m edge.bench --bundle artifacts/bundle --images photos/ --repeats 50

Measures, with only the device package (no TensorFlow, no pytest): encoder latency (interpreter
only, XNNPACK on) for each --threads count; a 640x480 BGR frame -> prepare -> encoder -> gallery
top-K as edge.search does, against the encoder alone; the bundle gallery's search latency (exact,
and Annoy when installed and the gallery has an index); cold start and peak RSS of
``python -m edge.search --image`` and of open_bundle + one embedding, each in fresh processes.
Inputs are seeded synthetic frames unless --images gives a folder of photos. Each row: --warmup
untimed runs, then --repeats timed ones (time.perf_counter), median. The defaults took 11-14 s on
a busy 2-core x86 and are meant to stay under a minute on a Raspberry Pi 4. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from edge.cli import (EXIT_ERROR, MAX_THREADS, add_version_argument, error_line, int_in_range, make_parser,
                      positive_int, run_main, setup_logging)

log = logging.getLogger("edge.bench")


def default_threads() -> list[int]:
    """1, 2, 4, ... up to the usable cores, and the core count itself (2 cores: 1 2; Pi 4: 1 2 4)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    counts = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= cores]
    return counts + ([cores] if cores not in counts and cores <= MAX_THREADS else [])


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m edge.bench", __doc__)
    parser.add_argument("--bundle", type=Path, default=None,
                        help="bundle folder (default: the newest bundle under artifacts/)")
    parser.add_argument("--threads", type=int_in_range(1, MAX_THREADS), nargs="+", default=None, metavar="N",
                        help="interpreter thread counts to measure (default: 1, 2, 4, ... up to the cores)")
    parser.add_argument("--images", type=Path, default=None, metavar="DIR",
                        help="photos to use as camera frames (default: seeded synthetic frames)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout instead of Markdown")
    parser.add_argument("--repeats", type=positive_int, default=30, help="timed runs per row (default 30)")
    parser.add_argument("--warmup", type=int_in_range(0, None), default=5, help="untimed runs first (default 5)")
    parser.add_argument("--search-repeats", type=positive_int, default=100,
                        help="timed queries per search row (default 100)")
    parser.add_argument("--cold-starts", type=int_in_range(0, None), default=3,
                        help="fresh processes timed per cold-start command, after one warm-up; 0 skips (default 3)")
    parser.add_argument("--k", type=positive_int, default=5, help="matches per frame end to end (default 5)")
    parser.add_argument("--xnnpack-off", action="store_true", help="also measure 1 thread without XNNPACK")
    parser.add_argument("--seed", type=int_in_range(0, None), default=0, help="seed of the synthetic inputs (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_version_argument(parser)
    return parser


def _frames(args: argparse.Namespace) -> tuple[list, list[Path], dict]:
    """The camera frames to feed, the photo files they came from (none: synthetic), and what they are."""
    from edge.benchmark.inputs import frames_from_folder, synthetic_frames

    if args.images is not None:
        frames, used, skipped = frames_from_folder(args.images)
        text = f"{len(frames)} photos from {args.images} as 640x480 BGR frames"
        return frames, used, {"inputs": text + (f" ({skipped} unreadable, skipped)" if skipped else ""),
                              "skipped_images": skipped}
    frames = synthetic_frames(seed=args.seed)
    return frames, [], {"inputs": f"{len(frames)} seeded synthetic 640x480 BGR frames (seed {args.seed})",
                        "skipped_images": 0}


def run_benchmark(args: argparse.Namespace, command: str) -> dict:
    """Every measurement, as the dict --json prints."""
    from edge.benchmark.coldstart import cold_start
    from edge.benchmark.inputs import write_query_image
    from edge.benchmark.machine import machine_facts
    from edge.benchmark.measure import encoder_rows, end_to_end, search_rows, variant_name
    from edge.bundle import newest_bundle, open_bundle

    started, clock = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    path = args.bundle if args.bundle is not None else newest_bundle()
    threads = args.threads or default_threads()
    bundle = open_bundle(path, num_threads=max(threads))  # refuses a broken bundle before any timing
    gallery = bundle.gallery()
    machine = machine_facts()
    frames, used, described = _frames(args)
    progress = (lambda _: None) if args.quiet else (lambda text: log.info("measuring %s", text))
    repeats, warmup = args.repeats, args.warmup
    result: dict = {"command": command, "started": started, "machine": machine,
                    "bundle": {"path": str(path), "variant": variant_name(bundle),
                               "embedding_size": bundle.manifest.output.embedding_size, "gallery_items": len(gallery)},
                    "settings": {"repeats": repeats, "warmup": warmup, "search_repeats": args.search_repeats,
                                 "threads": threads, "seed": args.seed, **described}}
    result["encoder"] = encoder_rows(path, threads, repeats, warmup, args.xnnpack_off, args.seed, progress)
    progress(f"frame -> top-{args.k}, {max(threads)} thread(s)")
    result["end_to_end"] = end_to_end(bundle, gallery, frames, args.k, repeats, warmup, max(threads), args.seed)
    progress("gallery search")
    result["search"] = search_rows(gallery, 100, args.search_repeats, warmup, args.seed)
    if args.cold_starts:
        progress(f"cold start, {2 * args.cold_starts + 1} fresh processes")
        with tempfile.TemporaryDirectory(prefix="edge-bench-") as folder:
            image = used[0] if used else write_query_image(frames[0], Path(folder))
            result["cold_start"] = cold_start(Path(path), image, args.cold_starts)
    result["seconds"] = time.perf_counter() - clock
    return result


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    command = shlex.join(["python", "-m", "edge.bench", *argv])

    def body() -> int:
        from edge.benchmark.coldstart import ColdStartError
        from edge.benchmark.report import markdown

        try:
            result = run_benchmark(args, command)
        except ColdStartError as error:  # the fresh process's own error, already one line
            print(error_line(error), file=sys.stderr)
            return EXIT_ERROR
        print(json.dumps(result) if args.json else markdown(result), flush=True)
        return EXIT_ERROR if result["settings"]["skipped_images"] else 0  # as every edge loop past a bad item

    return run_main(body, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
