"""Top-K similar gallery images for camera frames or image files, on the device.

    python -m edge.search --bundle artifacts/bundle --camera            # live, window if a display exists
    python -m edge.search --bundle artifacts/bundle --camera clip.mp4 --headless --json
    python -m edge.search --bundle artifacts/bundle --image a.jpg b.jpg --k 5 --json

    python -m edge.search --bundle artifacts/bundle --camera picam --headless --serve 8080

With --json, one line per query image or processed frame:
``{"query": <path or frame number>, "label": <accepted label or null for unknown>, "reason": ...,
"score": <top-1 similarity>, "threshold": ..., "matches": [{"label", "path", "distance", "similarity"}, ...]}``,
best first (distance = 1 - cosine similarity). The label is null when nothing enrolled is close
enough (the gallery's calibrated threshold) or the frame looks like nothing at all (edge.gallery.openset).
A frame's line also has ``"captured"`` (unix time the frame was grabbed) and ``"latency_ms"`` (capture
to result). Cameras run the latest-frame loop (edge.live.loop): results are for the newest frame,
frames the encoder has no time for are skipped without decoding. Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

from edge.bundle import Bundle
from edge.cli import (EXIT_ERROR, add_bundle_arguments, expected_errors, int_in_range, load_bundle, make_parser,
                      positive_int, report, run_main, setup_logging)
from edge.gallery.store import Gallery, Identification
from edge.live.run import FpsMeter, run_camera  # noqa: F401 (FpsMeter: its old home)
from edge.live.server import parse_address

log = logging.getLogger("edge.search")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m edge.search", __doc__)
    add_bundle_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--camera", nargs="?", const="0", metavar="INDEX|DEVICE|picam|VIDEO",
                        help="camera index (default 0), /dev/videoN, picam (Raspberry Pi camera through picamera2), "
                             "or a video file standing in for a camera")
    source.add_argument("--image", nargs="+", metavar="PATH", help="image files to search with")
    parser.add_argument("--k", type=positive_int, default=5, help="matches per query (default 5)")
    parser.add_argument("--json", action="store_true", help="one JSON line per query on stdout")
    parser.add_argument("--headless", action="store_true", help="never open a window")
    parser.add_argument("--every", type=positive_int, default=1, help="process every N-th frame (default 1)")
    parser.add_argument("--max-frames", type=positive_int, default=None, help="stop after this many processed frames")
    parser.add_argument("--search-k", type=int_in_range(-1, None), default=None,
                        help="Annoy nodes to inspect (default: the gallery's, 4000; -1: Annoy's trees*k)")
    method = parser.add_mutually_exclusive_group()
    method.add_argument("--exact", dest="exact", action="store_const", const=True, default=None,
                        help="always exact numpy search (default: exact up to 10,000 items, Annoy above)")
    method.add_argument("--annoy", dest="exact", action="store_const", const=False, help="always Annoy search")
    parser.add_argument("--retries", type=int_in_range(0, None), default=3,
                        help="reopen attempts when a live camera stalls")
    parser.add_argument("--realtime", action="store_true",
                        help="play a --camera video file at its own frame rate, dropping frames like a camera")
    parser.add_argument("--serve", metavar="[HOST:]PORT", default=None,
                        help="web view with the live stream on HOST:PORT (HOST defaults to 127.0.0.1)")
    parser.add_argument("--quiet", action="store_true", help="no per-second FPS line on stderr")
    return parser


def match_line(query, result: Identification) -> str:
    return json.dumps({"query": query, **result.to_json()})


def human_line(query, result: Identification) -> str:
    shown = ", ".join(f"{m.label} {m.score:.3f}" for m in result.matches)
    decision = result.label if result.label is not None else f"unknown ({result.reason})"
    return f"{query}: {decision} | {shown}"


def process_frame(bundle: Bundle, gallery: Gallery, frame_bgr, k: int, search_k: int | None = None,
                  exact: bool | None = None) -> Identification:
    """One camera frame -> its decision and top-k gallery matches (the live loop's per-frame work)."""
    return gallery.identify(bundle.encoder.embed_frame(frame_bgr), k, search_k, exact)


def search_images(bundle: Bundle, gallery: Gallery, args: argparse.Namespace) -> int:
    failed = 0
    for path in args.image:
        try:
            vector = bundle.encoder.embed(path)
        except expected_errors() as error:
            failed += 1
            report(error)
            if args.json:
                print(json.dumps({"query": path, "error": str(error)}), flush=True)
            continue
        result = gallery.identify(vector, args.k, args.search_k, args.exact)
        print(match_line(path, result) if args.json else human_line(path, result), flush=True)
    return EXIT_ERROR if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.serve is not None:
        try:
            parse_address(args.serve)
        except ValueError as error:
            parser.error(str(error))
    setup_logging(args.verbose)

    def body() -> int:
        bundle = load_bundle(args)
        gallery = bundle.gallery()
        if args.image:
            return search_images(bundle, gallery, args)
        return run_camera(bundle, gallery, args)

    return run_main(body, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
