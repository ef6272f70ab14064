"""Enrol images on the device: build, add to, remove from, calibrate or list a bundle's gallery.

    python -m edge.gallery build     --bundle B FOLDER              # replace with FOLDER/<label>/*
    python -m edge.gallery add       --bundle B FOLDER              # add FOLDER/<label>/*
    python -m edge.gallery add       --bundle B --label mug a.jpg b.jpg
    python -m edge.gallery remove    --bundle B LABEL
    python -m edge.gallery calibrate --bundle B --far 0.01          # refit "unknown" at another rate
    python -m edge.gallery list      --bundle B [--json]            # labels, counts, calibration

Every change takes the gallery's writer lock (a second writer waits, or fails with --no-wait),
refits how the gallery compares and when it answers "unknown" to what is enrolled, and switches
to a new version atomically: an enrolment that is interrupted (Ctrl-C, power loss, SIGKILL) leaves
the previous gallery intact.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from edge.bundle import newest_bundle
from edge.cli import EXIT_ERROR, add_bundle_arguments, load_bundle, run_main, setup_logging
from edge.gallery import enrol
from edge.gallery.openset import DEFAULT_FAR
from edge.gallery.store import DEFAULT_TREES, Gallery, load_gallery
from edge.layout import GALLERY_DIR
from edge.manifest import read_manifest


def _far(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"--far must be a rate between 0 and 1 (e.g. 0.01), got {text}")
    return value


def _trees(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"--trees must be 1..1024, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge.gallery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="replace the gallery with FOLDER/<label>/ images")
    build.add_argument("folder", type=Path)
    build.add_argument("--trees", type=_trees, default=DEFAULT_TREES, help="Annoy trees")
    add = commands.add_parser("add", help="add FOLDER/<label>/ images, or files with --label")
    add.add_argument("paths", type=Path, nargs="+", help="a folder of <label>/ sub-folders, or image files")
    add.add_argument("--label", default=None, help="label for the image files given")
    remove = commands.add_parser("remove", help="remove every image of a label")
    remove.add_argument("label")
    calibrate = commands.add_parser("calibrate", help="refit the comparison and the 'unknown' threshold")
    listing = commands.add_parser("list", help="labels, counts and the calibration report")
    listing.add_argument("--json", action="store_true")
    for sub in (build, add, remove, calibrate):
        sub.add_argument("--far", type=_far, default=DEFAULT_FAR,
                         help=f"false-accept rate the 'unknown' threshold is set at (default {DEFAULT_FAR})")
        sub.add_argument("--no-wait", action="store_true", help="fail at once if another enrolment is running")
        sub.add_argument("--quiet", action="store_true", help="no progress output")
    for sub in (build, remove):
        sub.add_argument("--allow-empty", action="store_true", help="allow a change that leaves the gallery empty")
    for sub in (build, add, remove, calibrate, listing):
        add_bundle_arguments(sub)
    return parser


def _items(args) -> tuple[list[tuple[Path, str]], Path | None]:
    if args.label is None:
        if len(args.paths) != 1 or not args.paths[0].is_dir():
            raise FileNotFoundError("give one folder of <label>/ sub-folders, or image files with --label NAME")
        return enrol.folder_items(args.paths[0]), args.paths[0]
    if not args.label.strip() or "\n" in args.label:
        raise ValueError(f"--label {args.label!r} must be a non-empty single-line name")
    missing = [str(p) for p in args.paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such image file(s): {', '.join(missing)}")
    return [(p, args.label) for p in args.paths], None


class Progress:
    """A bar on a terminal, a line every ``every`` images otherwise (stderr either way)."""

    def __init__(self, stream=sys.stderr, every: int = 100):
        self.stream, self.every = stream, every
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            filled = int(30 * done / max(total, 1))
            end = "\n" if done == total else ""
            self.stream.write(f"\rembedding [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}{end}")
            self.stream.flush()
        elif done % self.every == 0 or done == total:
            print(f"embedded {done}/{total} images", file=self.stream, flush=True)


def _report(action: str, report: enrol.EnrolReport) -> None:
    print(f"{action} {report.added} images; skipped {len(report.duplicates)} duplicates, {len(report.skipped)} "
          f"failed; gallery now holds {report.total}")
    for path, reason in report.skipped:
        print(f"failed {path}: {reason}", file=sys.stderr)
    for path in report.duplicates[:20]:
        print(f"duplicate {path}: the same bytes are already enrolled", file=sys.stderr)
    if report.calibration is not None:
        print(_calibration_line(report.comparison.to_json() if report.comparison else {},
                                report.calibration.to_json()))


def _calibration_line(comparison: dict, calibration: dict) -> str:
    weights = comparison.get("weights")
    share = f"generic share {weights[-1] ** 2:.1f}" if weights and len(weights) == 2 else "one segment"
    centred = ", centred" if comparison.get("centred") else ""
    if comparison.get("prototype_weight"):
        centred += f", label vote {comparison['prototype_weight']:g}"
    if comparison.get("whitening") is not None:
        centred += f", whitened (strength {comparison['whitening']:g})"
    text = f"comparison: {comparison.get('source', 'bundle')} ({share}{centred}); unknown below score " \
           f"{calibration['threshold']:.3f} ({calibration['source']}, target FAR {calibration['far']:.3g}"
    if calibration.get("estimated_frr") is not None:
        text += f", leave-one-out FAR {calibration['estimated_far']:.3f} FRR {calibration['estimated_frr']:.3f}"
    return text + ")"


def _list(gallery: Gallery, as_json: bool) -> None:
    counts = gallery.label_counts()
    comparison = gallery.info.get("comparison") or {"source": "bundle"}
    calibration = gallery.calibration.to_json() if gallery.calibration else None
    if as_json:
        print(json.dumps({"count": len(gallery), "labels": counts, "version": gallery.version,
                          "comparison": comparison, "calibration": calibration}))
        return
    for label, count in counts.items():
        print(f"{label}\t{count}")
    print(f"total\t{len(gallery)}")
    if calibration:
        print(_calibration_line(comparison, calibration))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    progress = None if getattr(args, "quiet", True) else Progress()

    def body() -> int:
        if args.command in ("list", "remove", "calibrate"):  # no interpreter needed
            bundle_path = args.bundle if args.bundle is not None else newest_bundle()
            manifest = read_manifest(bundle_path)
            root = Path(bundle_path) / GALLERY_DIR
            if args.command == "list":
                fallback = enrol.bundle_calibration(manifest.verification.threshold)
                _list(load_gallery(root, manifest.output.embedding_size, manifest.model_sha256, fallback), args.json)
                return 0
            settings = enrol.GallerySettings.of(manifest, args.far)
            if args.command == "remove":
                removed = enrol.remove_label(root, args.label, settings, args.allow_empty, not args.no_wait,
                                             manifest.output.embedding_size)
                print(f"removed {removed} images of {args.label!r}")
                return 0
            report = enrol.recalibrate(root, settings, not args.no_wait)
            print(_calibration_line(report.comparison.to_json(), report.calibration.to_json()))
            return 0
        bundle = load_bundle(args)
        settings = enrol.GallerySettings.of(bundle.manifest, args.far)
        if args.command == "build":
            report = enrol.build(bundle.encoder, bundle.gallery_dir, settings, enrol.folder_items(args.folder),
                                 args.folder, args.trees, args.allow_empty, not args.no_wait, progress)
            _report("built gallery from", report)
        else:
            items, root = _items(args)
            report = enrol.add(bundle.encoder, bundle.gallery_dir, settings, items, root, not args.no_wait, progress)
            _report("added", report)
        # Unreadable images are skipped and reported; only an enrolment that added nothing fails.
        return EXIT_ERROR if report.skipped and report.added == 0 else 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
