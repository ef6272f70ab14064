"""Enrol images on the device: build, add to, remove from, or list a bundle's gallery.

    python -m edge.gallery build  --bundle B FOLDER                # replace with FOLDER/<label>/*
    python -m edge.gallery add    --bundle B FOLDER                # add FOLDER/<label>/*
    python -m edge.gallery add    --bundle B --label mug a.jpg b.jpg
    python -m edge.gallery remove --bundle B LABEL
    python -m edge.gallery list   --bundle B [--json]

Every change writes a new gallery version and switches to it atomically: an enrolment that is
interrupted (Ctrl-C, power loss, SIGKILL) leaves the previous gallery intact.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from edge.gallery import enrol
from edge.bundle import newest_bundle
from edge.cli import EXIT_ERROR, add_bundle_arguments, load_bundle, run_main, setup_logging
from edge.gallery.store import DEFAULT_TREES, load_gallery
from edge.manifest import read_manifest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge.gallery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="replace the gallery with FOLDER/<label>/ images")
    build.add_argument("folder", type=Path)
    build.add_argument("--trees", type=int, default=DEFAULT_TREES, help="Annoy trees")
    add = commands.add_parser("add", help="add FOLDER/<label>/ images, or files with --label")
    add.add_argument("paths", type=Path, nargs="+", help="a folder of <label>/ sub-folders, or image files")
    add.add_argument("--label", default=None, help="label for the image files given")
    remove = commands.add_parser("remove", help="remove every image of a label")
    remove.add_argument("label")
    listing = commands.add_parser("list", help="labels and counts")
    listing.add_argument("--json", action="store_true")
    for sub in (build, add, remove, listing):
        add_bundle_arguments(sub)
    return parser


def _items(args) -> tuple[list[tuple[Path, str]], Path | None]:
    if args.label is None:
        if len(args.paths) != 1 or not args.paths[0].is_dir():
            raise FileNotFoundError("give one folder of <label>/ sub-folders, or image files with --label NAME")
        return enrol.folder_items(args.paths[0]), args.paths[0]
    missing = [str(p) for p in args.paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such image file(s): {', '.join(missing)}")
    return [(p, args.label) for p in args.paths], None


def _report(action: str, report: enrol.EnrolReport) -> None:
    print(f"{action} {report.added} images; gallery now holds {report.total}")
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)

    def body() -> int:
        if args.command in ("list", "remove"):
            bundle_path = args.bundle if args.bundle is not None else newest_bundle()
            manifest = read_manifest(bundle_path)
            root = Path(bundle_path) / "gallery"
            if args.command == "remove":
                removed = enrol.remove_label(root, args.label, manifest.output.embedding_size, manifest.model_sha256)
                print(f"removed {removed} images of {args.label!r}")
                return 0
            gallery = load_gallery(root, manifest.output.embedding_size, manifest.model_sha256)
            counts = gallery.label_counts()
            if args.json:
                print(json.dumps({"count": len(gallery), "labels": counts}))
            else:
                for label, count in counts.items():
                    print(f"{label}\t{count}")
                print(f"total\t{len(gallery)}")
            return 0
        bundle = load_bundle(args)
        sha = bundle.manifest.model_sha256
        if args.command == "build":
            report = enrol.build(bundle.encoder, bundle.gallery_dir, sha, enrol.folder_items(args.folder),
                                 relative_to=args.folder, trees=args.trees)
            _report("built gallery from", report)
        else:
            items, root = _items(args)
            report = enrol.add(bundle.encoder, bundle.gallery_dir, sha, items, relative_to=root)
            _report("added", report)
        # Unreadable images are skipped and reported; only an enrolment that added nothing fails.
        return EXIT_ERROR if report.skipped and report.added == 0 else 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
