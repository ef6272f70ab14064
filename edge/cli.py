"""Pieces every edge command shares: bundle options, logging, and errors as messages, not tracebacks."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable

from edge.bundle import Bundle, newest_bundle, open_bundle
from edge.gallery.store import GalleryError
from edge.images import ImageError
from edge.interpreter import InterpreterError
from edge.layout import UnsafePathError
from edge.manifest import ManifestError

# What a user can cause (bad file, missing bundle...). Anything else is a bug and keeps its traceback.
USER_ERRORS = (FileNotFoundError, ManifestError, GalleryError, UnsafePathError, InterpreterError, ImageError, ImportError,
               PermissionError)
EXIT_ERROR = 2


def add_bundle_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=None,
                        help="bundle folder (default: the newest bundle under artifacts/)")
    parser.add_argument("--threads", type=int, default=None, help="interpreter CPU threads")
    parser.add_argument("--delegate", choices=("edgetpu",), default=None, help="hardware delegate")
    parser.add_argument("--no-xnnpack", action="store_true", help="run without the XNNPACK CPU delegate")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_version_argument(parser)


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    """``--version``: prints the package version (edge.__version__) and exits."""
    from edge import __version__
    parser.add_argument("--version", action="version", version=f"siamese-edge {__version__}")


def load_bundle(args: argparse.Namespace) -> Bundle:
    path = args.bundle if args.bundle is not None else newest_bundle()
    return open_bundle(path, args.threads, args.delegate, use_xnnpack=not args.no_xnnpack)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def run_main(body: Callable[[], int]) -> int:
    """Runs a command body; user errors become one ``error: ...`` line on stderr and exit code 2."""
    try:
        return body()
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
