"""Top-K similar gallery images for camera frames or image files, on the device.

    python -m edge.search --bundle artifacts/bundle --camera            # live, window if a display exists
    python -m edge.search --bundle artifacts/bundle --camera clip.mp4 --headless --json
    python -m edge.search --bundle artifacts/bundle --image a.jpg b.jpg --k 5 --json

With --json, one line per query image or processed frame:
``{"query": <path or frame number>, "matches": [{"label", "path", "distance", "similarity"}, ...]}``,
best first (distance = 1 - cosine similarity). Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Sequence

from edge.bundle import Bundle
from edge.camera import CameraError, parse_source, read_frames
from edge.cli import (EXIT_ERROR, EXIT_INTERRUPTED, add_bundle_arguments, expected_errors, int_in_range, load_bundle,
                      make_parser, positive_int, report, run_main, setup_logging)
from edge.gallery.store import Gallery, Match

log = logging.getLogger("edge.search")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m edge.search", __doc__)
    add_bundle_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--camera", nargs="?", const="0", metavar="INDEX|DEVICE|VIDEO",
                        help="camera index (default 0), /dev/videoN, or a video file standing in for a camera")
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
    parser.add_argument("--quiet", action="store_true", help="no per-second FPS line on stderr")
    return parser


def match_line(query, matches: Sequence[Match]) -> str:
    return json.dumps({"query": query, "matches": [m.to_json() for m in matches]})


def human_line(query, matches: Sequence[Match]) -> str:
    shown = ", ".join(f"{m.label} {m.similarity:.3f}" for m in matches)
    return f"{query}: {shown}"


def process_frame(bundle: Bundle, gallery: Gallery, frame_bgr, k: int, search_k: int | None = None,
                  exact: bool | None = None) -> list[Match]:
    """One camera frame -> its top-k gallery matches (the live loop's per-frame work)."""
    return gallery.search(bundle.encoder.embed_frame(frame_bgr), k, search_k, exact)


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
        matches = gallery.search(vector, args.k, args.search_k, args.exact)
        print(match_line(path, matches) if args.json else human_line(path, matches), flush=True)
    return EXIT_ERROR if failed else 0


def search_camera(bundle: Bundle, gallery: Gallery, args: argparse.Namespace) -> int:
    from edge import display

    window = not args.headless and display.has_display()
    if not args.headless and not window:
        log.info("no display found; running headless")
    thumbnails = display.ThumbnailCache(gallery) if window else None
    source = parse_source(args.camera)
    meter = FpsMeter()
    processed, interrupted = 0, False
    try:
        for number, frame in read_frames(source, args.every, args.max_frames, args.retries):
            matches = process_frame(bundle, gallery, frame, args.k, args.search_k, args.exact)
            processed += 1
            fps = meter.tick()
            if args.json:
                print(match_line(number, matches), flush=True)
            elif not window:
                print(human_line(f"frame {number}", matches), flush=True)
            if not args.quiet and meter.report_due():
                log.info("frame %d, %.1f FPS", number, fps)
            if window and not display.show(display.compose(frame, matches, thumbnails, fps)):
                break
    except CameraError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        log.info("stopped by Ctrl-C")
        interrupted = True
    finally:
        if window:
            display.close()
    log.info("%d frames processed, %.1f FPS", processed, meter.rate())
    return EXIT_INTERRUPTED if interrupted else 0


class FpsMeter:
    """Frames per second over a sliding second; no globals."""

    def __init__(self):
        self.started = time.monotonic()
        self.frames = 0
        self.recent: list[float] = []
        self.last_report = self.started

    def tick(self) -> float:
        now = time.monotonic()
        self.frames += 1
        self.recent = [t for t in self.recent if now - t < 1.0] + [now]
        return float(len(self.recent))

    def report_due(self) -> bool:
        now = time.monotonic()
        if now - self.last_report >= 1.0:
            self.last_report = now
            return True
        return False

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.frames / elapsed if elapsed > 0 else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)

    def body() -> int:
        bundle = load_bundle(args)
        gallery = bundle.gallery()
        if args.image:
            return search_images(bundle, gallery, args)
        return search_camera(bundle, gallery, args)

    return run_main(body, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
