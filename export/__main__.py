"""Export a training run to a device bundle (int8 TFLite encoder + manifest + Annoy gallery).

    python -m export --run artifacts/run --bundle artifacts/bundle

The bundle folder is all a device needs: copy it over and run ``python -m edge.search``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from edge.cli import MAX_THREADS, finite_float, int_in_range, make_parser, positive_int, run_main

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m export", __doc__, defaults=True)
    parser.add_argument("--run", default="artifacts/run", help="training run folder")
    parser.add_argument("--bundle", default="artifacts/bundle", help="bundle folder to write (replaced)")
    parser.add_argument("--data-dir", default=None, help="data folder (default: the run's)")
    parser.add_argument("--mode", choices=("int8", "float16", "float32", "dynamic"), default="int8",
                        help="quantisation of the encoder")
    parser.add_argument("--edgetpu", action="store_true", help="uint8 in/out int8 model for edgetpu_compiler")
    parser.add_argument("--calibration-images", type=positive_int, default=300,
                        help="train images for int8 calibration")
    parser.add_argument("--tolerance", type=finite_float(), default=1.0,
                        help="max P@5 drop vs float, in points")
    parser.add_argument("--force", action="store_true", help="write the bundle even beyond the tolerance")
    parser.add_argument("--threshold-method", choices=("eer", "far"), default="eer", help="verification threshold rule")
    parser.add_argument("--target-far", type=finite_float(0.0, 1.0), default=None,
                        help="false accept rate for --threshold-method far")
    parser.add_argument("--trees", type=int_in_range(1, 1000), default=32, help="Annoy trees")
    parser.add_argument("--pairs", type=positive_int, default=10000, help="balanced pairs per verification set")
    parser.add_argument("--threads", type=int_in_range(1, MAX_THREADS), default=None, help="interpreter threads")
    parser.add_argument("--check-python", default=None,
                        help="a Python with tflite-runtime (numpy<2 venv) to also run the model in")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threshold_method == "far" and args.target_far is None:
        parser.error("--threshold-method far needs --target-far")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_main(lambda: _export(args))


def _export(args) -> int:
    from export.pipeline import ExportOptions, export_run

    options = ExportOptions(
        mode=args.mode, edgetpu=args.edgetpu, data_dir=args.data_dir, calibration_images=args.calibration_images,
        tolerance_points=args.tolerance, force=args.force, threshold_method=args.threshold_method,
        target_far=args.target_far, trees=args.trees, pairs=args.pairs, num_threads=args.threads, check_python=args.check_python,
    )
    report = export_run(args.run, args.bundle, options)
    f, d = report["float_keras"]["retrieval"], report["device"]["gallery_search"]
    print(f"float Keras : P@1 {f['precision@1']:.4f}  P@5 {f['precision@5']:.4f}  ROC AUC {report['float_keras']['roc_auc']:.4f}")
    print(f"{report['mode']:>5} device: P@1 {d['precision@1']:.4f}  P@5 {d['precision@5']:.4f}  ROC AUC {report['device']['roc_auc']:.4f}")
    print(f"P@5 change {-report['p5_drop_points']:+.2f} points; threshold {report['verification']['threshold']:.4f} "
          f"({report['verification']['method']}); Edge TPU ready: {report['edgetpu_readiness']['ready']}")
    print(f"bundle: {args.bundle} ({report['model_bytes'] / 1e6:.1f} MB model, {report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
