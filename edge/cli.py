"""The command-line skeleton of every entry point (train, export, edge.search, edge.verify, edge.gallery).

    parser = make_parser("python -m edge.search", __doc__)
    parser.add_argument("--k", type=positive_int, default=5)
    args = parser.parse_args(argv)                   # bad arguments: parser.error, exit 2
    return run_main(lambda: body(args), verbose=args.verbose)

``run_main`` is the one place that turns what a user can cause into one ``error: ...`` line on
stderr and exit 2: OSError (a missing file, a name over 255 bytes, a full disk), ValueError (and
UnicodeError, and the project's own errors built on it), csv.Error, cv2.error, ImportError (no
interpreter installed) and the project's RuntimeError families (camera, interpreter, export).
Anything else is a bug and keeps its traceback. A closed output pipe (``| head -n 1``) ends quietly
with 141 (as a program killed by SIGPIPE); Ctrl-C ends with 130; SIGTERM (``systemctl stop``) ends
with 143 after the same clean-up as Ctrl-C (the camera stopped and closed, a half-done enrolment's
files removed), where the default action would kill the process on the spot.

Only the standard library is imported here: train/ and export/ use this module too.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import sys
from pathlib import Path
from typing import Callable

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_TERMINATED = 143
MAX_THREADS = 64
"""Interpreter threads accepted; far above any Pi's cores, far below what crashes LiteRT (100000)."""

# Raised by project modules and not built on ValueError/OSError: (module, class) looked up only
# when that module is loaded (an error from a module never imported cannot have been raised).
_RUNTIME_ERRORS = (("edge.camera", "CameraError"), ("edge.interpreter", "InterpreterError"),
                   ("export.pipeline", "ExportError"), ("cv2", "error"))

log = logging.getLogger("edge.cli")


def expected_errors() -> tuple[type[BaseException], ...]:
    """The error families a user can cause: reported as one line, never as a traceback."""
    found: list[type[BaseException]] = [OSError, ValueError, csv.Error, ImportError]
    for module_name, name in _RUNTIME_ERRORS:
        module = sys.modules.get(module_name)
        error = getattr(module, name, None) if module is not None else None
        if isinstance(error, type) and issubclass(error, BaseException):
            found.append(error)
    return tuple(found)


def __getattr__(name: str):
    if name == "USER_ERRORS":  # the former constant; computed now so cli.py imports nothing heavy
        return expected_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def error_line(error: BaseException) -> str:
    """``error: ...`` on one line (OpenCV's messages span several)."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, UnicodeDecodeError):
        text = f"{text}; the file is not UTF-8 text"
    return f"error: {text}"


def report(error: BaseException) -> None:
    """Prints one error line for an item a loop skips (an image, a CSV row) and goes on."""
    if isinstance(error, BrokenPipeError):
        raise error  # the reader went away: not an item's fault, end the command
    print(error_line(error), file=sys.stderr, flush=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C so every ``finally`` and context manager runs."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _handle_sigterm() -> Callable[[], None]:
    """Installs the SIGTERM handler when this is the main thread and nobody else set one;
    returns what puts the previous handler back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None
    signal.signal(signal.SIGTERM, _raise_terminated)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_main(body: Callable[[], int], verbose: bool = False) -> int:
    """Runs a command body and maps how it ends to an exit code (see the module docstring)."""
    restore = _handle_sigterm()
    try:
        code = body()
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except expected_errors() as error:
        if verbose:
            log.debug("details", exc_info=True)
        print(error_line(error), file=sys.stderr)
        return EXIT_ERROR
    finally:
        restore()


def _silence_stdout() -> None:
    """Points stdout at /dev/null so the interpreter's final flush does not complain again
    (what the Python docs recommend for SIGPIPE: "Note on SIGPIPE", signal module)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def make_parser(prog: str, doc: str | None, defaults: bool = False) -> argparse.ArgumentParser:
    """An ArgumentParser with the module docstring as help (``defaults``: show each default)."""
    formatter = argparse.ArgumentDefaultsHelpFormatter if defaults else argparse.RawDescriptionHelpFormatter
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=formatter)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return int_in_range(1, None)(text)


def int_in_range(low: int | None, high: int | None) -> Callable[[str], int]:
    """argparse type: an integer in [low, high] (None: unbounded)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def finite_float(low: float | None = None, high: float | None = None) -> Callable[[str], float]:
    """argparse type: a finite number in [low, high] (refuses nan and inf)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
            bounds = "" if low is None and high is None else (
                f" >= {low}" if high is None else f" <= {high}" if low is None else f" in [{low}, {high}]")
            raise argparse.ArgumentTypeError(f"must be a finite number{bounds}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def add_bundle_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=None,
                        help="bundle folder (default: the newest bundle under artifacts/)")
    parser.add_argument("--threads", type=int_in_range(1, MAX_THREADS), default=None,
                        help=f"interpreter CPU threads (1-{MAX_THREADS})")
    parser.add_argument("--delegate", choices=("edgetpu",), default=None, help="hardware delegate")
    parser.add_argument("--no-xnnpack", action="store_true", help="run without the XNNPACK CPU delegate")
    parser.add_argument("--reference-kernels", action="store_true",
                        help="run the interpreter's reference kernels (its specified arithmetic; slow): for checks")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_version_argument(parser)


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    """``--version``: prints the package version (edge.__version__) and exits."""
    from edge import __version__
    parser.add_argument("--version", action="version", version=f"siamese-edge {__version__}")


def load_bundle(args: argparse.Namespace):
    """Opens ``--bundle`` (or the newest bundle) with the interpreter options of the command line."""
    from edge.bundle import newest_bundle, open_bundle

    path = args.bundle if args.bundle is not None else newest_bundle()
    return open_bundle(path, args.threads, args.delegate, use_xnnpack=not args.no_xnnpack,
                       reference_kernels=args.reference_kernels)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
