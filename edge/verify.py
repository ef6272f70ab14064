"""Pair verification on the device: do two images show the same thing?

    python -m edge.verify --bundle artifacts/bundle a.jpg b.jpg        # exit 0 same, 1 different, 2 error
    python -m edge.verify --bundle artifacts/bundle --pairs pairs.csv  # columns a,b[,same]

A pairs CSV may be UTF-8 (with or without Excel's BOM) or Latin-1; ``same`` is one of
1/0, true/false, yes/no, same/different (any case) or empty. A row that is short or has another
``same`` is reported on stderr and left out (of the run, or of the accuracy), and the run goes on;
the exit code is then 2.

Same when the cosine distance (1 - cos) of the two embeddings is <= the threshold calibrated at
export (manifest "verification"), or --threshold.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.cli import (EXIT_ERROR, add_bundle_arguments, expected_errors, finite_float, load_bundle, make_parser,
                      report, run_main, setup_logging)
from edge.encoder import Encoder
from edge.images import ImageSource

EXIT_SAME, EXIT_DIFFERENT = 0, 1
SAME_WORDS = {"1": True, "true": True, "yes": True, "same": True,
              "0": False, "false": False, "no": False, "different": False}
log = logging.getLogger("edge.verify")


class PairsError(ValueError):
    """A pairs CSV, or one of its rows, that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Pair:
    """One usable row of a pairs CSV."""

    line: int
    a: str
    b: str
    same: bool | None


@dataclass(frozen=True)
class Verdict:
    """The decision for one pair."""

    same: bool
    distance: float
    threshold: float


def verify(encoder: Encoder, first: ImageSource, second: ImageSource, threshold: float) -> Verdict:
    """Embeds both images and compares their cosine distance with the threshold."""
    # Clipped: float32 rounding makes an image against itself come out at +-1e-7.
    distance = float(np.clip(1.0 - np.dot(encoder.embed(first), encoder.embed(second)), 0.0, 2.0))
    return Verdict(same=distance <= threshold, distance=distance, threshold=threshold)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m edge.verify", __doc__)
    add_bundle_arguments(parser)
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="two images to compare")
    parser.add_argument("--pairs", type=Path, default=None, help="CSV with columns a,b and optionally same (1/0)")
    parser.add_argument("--threshold", type=finite_float(0.0, 2.0), default=None,
                        help="override the manifest's threshold (a cosine distance in [0, 2])")
    parser.add_argument("--json", action="store_true", help="JSON output")
    return parser


def read_pairs(path: Path) -> tuple[list[Pair], list[PairsError]]:
    """Usable rows of a pairs CSV, and an error for each row that is not; paths are relative to the
    CSV's folder unless absolute.

    Raises:
      PairsError: no such file, or no header with columns a and b.
    """
    if not path.is_file():
        raise PairsError(f"no pairs file {path}")
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    header = [name.strip().lower() for name in next(reader, [])]
    if "a" not in header or "b" not in header:
        raise PairsError(f"{path}: expected a CSV header with columns a,b[,same], got {header}")
    columns = {name: header.index(name) for name in ("a", "b", "same") if name in header}
    pairs, problems = [], []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        try:
            pairs.append(_pair(path, line, row, columns))
        except PairsError as error:
            problems.append(error)
    return pairs, problems


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError:
        log.warning("%s is not UTF-8; reading it as Latin-1", path)
        return data.decode("latin-1")


def _pair(path: Path, line: int, row: list[str], columns: dict[str, int]) -> Pair:
    where = f"{path} line {line}"
    needed = max(columns["a"], columns["b"]) + 1
    if len(row) < needed or not row[columns["a"]].strip() or not row[columns["b"]].strip():
        raise PairsError(f"{where}: expected values for a and b, got {row}; row skipped")
    a, b = (row[columns[key]].strip() for key in ("a", "b"))
    same = None
    if "same" in columns and len(row) > columns["same"] and row[columns["same"]].strip():
        word = row[columns["same"]].strip().lower()
        if word not in SAME_WORDS:
            raise PairsError(f"{where}: same is {row[columns['same']]!r}, expected one of "
                             f"{'/'.join(SAME_WORDS)} or empty; row skipped")
        same = SAME_WORDS[word]
    resolve = lambda name: name if Path(name).is_absolute() else str(path.parent / name)  # noqa: E731
    return Pair(line, resolve(a), resolve(b), same)


def verify_pairs(encoder: Encoder, pairs: list[Pair], threshold: float, as_json: bool,
                 problems: Sequence[Exception] = ()) -> int:
    """Verifies every pair; a pair whose images fail is reported and skipped. Exit 2 if any failed."""
    for problem in problems:
        report(problem)
    failed, correct, labelled = len(problems), 0, 0
    writer = None if as_json else csv.writer(sys.stdout)
    if writer:
        writer.writerow(["a", "b", "same", "distance", "threshold"])
    for pair in pairs:
        try:
            verdict = verify(encoder, pair.a, pair.b, threshold)
        except expected_errors() as error:
            failed += 1
            report(error)
            continue
        if pair.same is not None:
            labelled += 1
            correct += int(verdict.same == pair.same)
        if writer:
            writer.writerow([pair.a, pair.b, int(verdict.same), f"{verdict.distance:.6f}", f"{threshold:.6f}"])
        else:
            print(json.dumps({"a": pair.a, "b": pair.b, **asdict(verdict)}))
    if labelled:
        print(f"accuracy {correct / labelled:.4f} on {labelled} labelled pairs", file=sys.stderr)
    if failed:
        print(f"{failed} pair(s) reported above were skipped", file=sys.stderr)
    return EXIT_ERROR if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.pairs) == bool(args.images) or (args.images and len(args.images) != 2):
        parser.error("give exactly two images, or --pairs CSV")
    setup_logging(args.verbose)

    def body() -> int:
        bundle = load_bundle(args)
        threshold = args.threshold if args.threshold is not None else bundle.manifest.verification.threshold
        if args.pairs:
            pairs, problems = read_pairs(args.pairs)
            return verify_pairs(bundle.encoder, pairs, threshold, args.json, problems)
        verdict = verify(bundle.encoder, args.images[0], args.images[1], threshold)
        if args.json:
            print(json.dumps(asdict(verdict)))
        else:
            word = "same" if verdict.same else "different"
            print(f"{word} (distance {verdict.distance:.4f}, threshold {verdict.threshold:.4f})")
        return EXIT_SAME if verdict.same else EXIT_DIFFERENT

    return run_main(body, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
