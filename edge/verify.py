"""Pair verification on the device: do two images show the same thing?

    python -m edge.verify --bundle artifacts/bundle a.jpg b.jpg        # exit 0 same, 1 different, 2 error
    python -m edge.verify --bundle artifacts/bundle --pairs pairs.csv  # columns a,b[,same]

Same when the cosine distance (1 - cos) of the two embeddings is <= the threshold. The threshold
comes from the enrolled gallery's calibration when it has one (leave-one-out pairs of the user's own
images at the gallery's false-accept rate, compared the way the gallery compares), otherwise from
the manifest (calibrated at export on the training classes), or from --threshold; the output says
which. An image that looks like nothing at all (nearer to the gallery's "nothing" frames than to
the other image) is never "same".

A pairs CSV may be UTF-8 (Excel's BOM included) or Latin-1, with ``same`` one of 1/0, true/false,
yes/no, same/different or empty (edge.pairs). A short row, or one with another ``same``, is reported
on stderr and skipped, as is a pair whose images fail, and the run goes on; the exit code is then 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.cli import (EXIT_ERROR, add_bundle_arguments, expected_errors, finite_float, load_bundle, make_parser,
                      report, run_main, setup_logging)
from edge.encoder import Encoder
from edge.gallery.store import Gallery, GalleryError
from edge.images import ImageSource
from edge.pairs import Pair, read_pairs

EXIT_SAME, EXIT_DIFFERENT = 0, 1


@dataclass(frozen=True)
class Verdict:
    """The decision for one pair."""

    same: bool
    distance: float
    threshold: float
    source: str = "manifest"
    """Where the threshold came from: "gallery", "manifest" or "--threshold"."""
    reason: str = ""


@dataclass(frozen=True)
class Rule:
    """How pairs are decided: a distance threshold, its source, and the gallery whose comparison
    and "nothing" frames apply (None: plain cosine of the embeddings)."""

    threshold: float
    source: str
    gallery: Gallery | None = None


def verify(encoder: Encoder, first: ImageSource, second: ImageSource, threshold: float | Rule) -> Verdict:
    """Embeds both images and compares their cosine distance with the threshold."""
    rule = threshold if isinstance(threshold, Rule) else Rule(float(threshold), "manifest")
    a, b = encoder.embed(first), encoder.embed(second)
    compare = rule.gallery.compare if rule.gallery is not None and rule.source == "gallery" else (lambda v: v)
    # Clipped: float32 rounding makes an image against itself come out at +-1e-7.
    similarity = float(np.dot(compare(a), compare(b)))
    distance = float(np.clip(1.0 - similarity, 0.0, 2.0))
    if rule.gallery is not None:
        # "Nothing in view" is judged in the gallery's own space, whatever the threshold's source.
        compared = similarity if rule.source == "gallery" else float(np.dot(rule.gallery.compare(a),
                                                                             rule.gallery.compare(b)))
        if rule.gallery.is_background(a, compared) or rule.gallery.is_background(b, compared):
            return Verdict(False, distance, rule.threshold, rule.source, "nothing in view")
    same = distance <= rule.threshold
    return Verdict(same, distance, rule.threshold, rule.source, "within threshold" if same else "beyond threshold")


def decision_rule(bundle, override: float | None) -> Rule:
    """The gallery's calibrated pair threshold when it has one, else the manifest's; --threshold wins."""
    try:
        gallery = bundle.gallery()
    except GalleryError:
        gallery = None
    if override is not None:
        return Rule(float(override), "--threshold", gallery)
    calibration = gallery.calibration if gallery is not None else None
    if calibration is not None and calibration.source == "gallery" and calibration.pair_threshold is not None:
        return Rule(calibration.pair_threshold, "gallery", gallery)
    return Rule(bundle.manifest.verification.threshold, "manifest", gallery)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m edge.verify", __doc__)
    add_bundle_arguments(parser)
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="two images to compare")
    parser.add_argument("--pairs", type=Path, default=None, help="CSV with columns a,b and optionally same (1/0)")
    parser.add_argument("--threshold", type=finite_float(0.0, 2.0), default=None,
                        help="cosine-distance threshold in [0, 2] instead of the gallery's or the manifest's")
    parser.add_argument("--json", action="store_true", help="JSON output")
    return parser


def verify_pairs(encoder: Encoder, pairs: list[Pair], threshold: float | Rule, as_json: bool,
                 problems: Sequence[Exception] = ()) -> int:
    """Verifies every pair; bad rows (``problems``) and pairs whose images fail are reported and
    skipped. Returns 2 if anything was skipped, else 0."""
    for problem in problems:
        report(problem)
    failed, correct, labelled = len(problems), 0, 0
    writer = None if as_json else csv.writer(sys.stdout)
    if writer:
        writer.writerow(["a", "b", "same", "distance", "threshold", "source"])
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
            writer.writerow([pair.a, pair.b, int(verdict.same), f"{verdict.distance:.6f}",
                             f"{verdict.threshold:.6f}", verdict.source])
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
        rule = decision_rule(bundle, args.threshold)
        if args.pairs:
            pairs, problems = read_pairs(args.pairs)
            return verify_pairs(bundle.encoder, pairs, rule, args.json, problems)
        verdict = verify(bundle.encoder, args.images[0], args.images[1], rule)
        if args.json:
            print(json.dumps(asdict(verdict)))
        else:
            word = "same" if verdict.same else "different"
            print(f"{word} (distance {verdict.distance:.4f}, threshold {verdict.threshold:.4f} from the "
                  f"{verdict.source}; {verdict.reason})")
        return EXIT_SAME if verdict.same else EXIT_DIFFERENT

    return run_main(body, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
