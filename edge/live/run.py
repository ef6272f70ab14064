"""``edge.search --camera``'s loop: latest frames in, one answer per frame out (JSON line, text,
window and/or web view), the gallery reloaded when a new version goes live."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from contextlib import ExitStack

from edge.bundle import Bundle
from edge.camera import CameraError
from edge.cli import EXIT_ERROR, EXIT_TERMINATED, Terminated
from edge.gallery.store import Gallery
from edge.live.loop import LatestFrames, single_threaded_opencv
from edge.live.reload import GalleryWatcher
from edge.live.results import frame_line, frame_record, identify
from edge.live.server import LiveView, WebServer, parse_address, web_record
from edge.live.sources import open_source

log = logging.getLogger("edge.search")


def run_camera(bundle: Bundle, gallery: Gallery, args: argparse.Namespace) -> int:
    """Runs until the source ends, ``--max-frames``, q/Esc in the window, Ctrl-C (exit 130) or
    SIGTERM (exit 143), closing the camera, the web view and the gallery watcher either way."""
    from edge import display

    window = not args.headless and display.has_display()
    if not args.headless and not window:
        log.info("no display found; running headless")
    thumbnails = display.ThumbnailCache(gallery) if window else None
    source = open_source(args.camera, realtime=getattr(args, "realtime", False))
    single_threaded_opencv()
    meter = FpsMeter()
    processed = 0
    try:
        with ExitStack() as stack:
            watcher = stack.enter_context(GalleryWatcher(bundle.gallery_dir, bundle.gallery, gallery))
            view = None
            if getattr(args, "serve", None):
                view = LiveView(bundle.gallery_dir)
                stack.enter_context(WebServer(view, *parse_address(args.serve)))
            frames = stack.enter_context(LatestFrames(source, bundle.encoder.prepare_frame, args.every,
                                                      args.max_frames, args.retries))
            for frame in frames:
                current = watcher.gallery  # one reference per frame: a reload swaps it between frames
                answer = identify(current, bundle.encoder.embed_rgb(frame.prepared), args.k, args.search_k, args.exact)
                record = frame_record(frame.number, frame.captured, answer)
                processed += 1
                fps = meter.tick()
                if args.json:
                    print(frame_line(record), flush=True)
                elif not window:
                    shown = ", ".join(f"{m.label} {m.score:.3f}" for m in answer.matches)
                    decision = answer.label if answer.label is not None else f"unknown ({answer.reason})"
                    print(f"frame {frame.number}: {decision} | {shown} ({record['latency_ms']:.0f} ms)", flush=True)
                if view is not None:
                    view.publish(frame.image, web_record(record, answer.matches, fps, len(current)))
                if not args.quiet and meter.report_due():
                    log.info("frame %d, %.1f FPS, latency %.0f ms", frame.number, fps, record["latency_ms"])
                if window and not display.show(display.compose(frame.image, answer.matches, thumbnails, fps)):
                    break
    except CameraError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Terminated:  # systemctl stop: the camera, the web view and the watcher are closed by now
        log.info("stopped by SIGTERM after %d frames", processed)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        log.info("stopped by Ctrl-C after %d frames", processed)
        return 130
    finally:
        if window:
            display.close()
    log.info("%d frames processed, %.1f FPS", processed, meter.rate())
    return 0


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
