"""Train the Siamese MobileNetV2 embedding and evaluate it against the frozen ImageNet baseline.

Offline, with the local copies beside the repository::

    python -m train --data-dir ../shared/data/flower_photos \
        --weights ../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5 \
        --run-dir /tmp/run

Online, ``python -m train`` downloads tf_flowers (tensorflow-datasets) and the ImageNet weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import Sequence

from edge.cli import make_parser, run_main
from train.config import LOSSES, PRECISIONS, STRATEGIES, TrainConfig

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = make_parser("python -m train", __doc__, defaults=True)
    add = parser.add_argument
    add("--data-dir", default=defaults.data_dir, help="folder of <class>/<image>; default: download tf_flowers")
    add("--dataset-cache", default=defaults.dataset_cache, help="where a downloaded data set is unpacked")
    add("--weights", default=defaults.weights, help="'imagenet' (download), a local .h5 file, or 'none'")
    add("--run-dir", default=defaults.run_dir, help="output folder of the run")
    add("--input-size", type=int, default=defaults.input_size, help="square input side in pixels")
    add("--alpha", type=float, default=defaults.alpha, help="MobileNetV2 width multiplier")
    add("--embedding-size", type=int, default=defaults.embedding_size, help="embedding dimension")
    add("--test-fraction", type=float, default=defaults.test_fraction, help="share of each class for testing")
    add("--split-salt", default=defaults.split_salt, help="salt of the split hash")
    add("--holdout-classes", default="", help="comma-separated classes left out of training (unseen)")
    add("--loss", choices=LOSSES, default=defaults.loss, help="training signal")
    add("--margin", type=float, default=defaults.margin, help="triplet/contrastive margin")
    add("--cosine-scale", type=float, default=defaults.cosine_scale, help="cosine-softmax logit scale")
    add("--cosine-margin", type=float, default=defaults.cosine_margin, help="CosFace margin (softmax loss)")
    add("--distill-weight", type=float, default=defaults.distill_weight,
        help="similarity distillation toward frozen ImageNet features (0 = off)")
    add("--generic-share", type=float, default=defaults.generic_share,
        help="cosine share of the fixed generic branch beside the trained head (0 = head only)")
    add("--generic-size", type=int, default=defaults.generic_size, help="generic branch dimensions")
    add("--generic-power", type=float, default=defaults.generic_power,
        help="generic branch whitening: component / singular value ** power")
    add("--head-epochs", type=int, default=defaults.head_epochs, help="stage 1 epochs (frozen backbone)")
    add("--head-learning-rate", type=float, default=defaults.head_learning_rate, help="stage 1 learning rate")
    add("--fine-tune-epochs", type=int, default=defaults.fine_tune_epochs, help="stage 2 epochs (0 = none)")
    add("--fine-tune-from-block", type=int, default=defaults.fine_tune_from_block, help="first trained block (1-16)")
    add("--fine-tune-learning-rate", type=float, default=defaults.fine_tune_learning_rate, help="stage 2 peak LR")
    add("--augmented-views", type=int, default=defaults.augmented_views, help="cached augmented views per image")
    add("--batch-size", type=int, default=defaults.batch_size, help="batch size")
    add("--pairs-per-epoch", type=int, default=defaults.pairs_per_epoch, help="pairs per epoch (pair losses)")
    add("--strategy", choices=STRATEGIES, default=defaults.strategy, help="tf.distribute strategy")
    add("--precision", choices=PRECISIONS, default=defaults.precision,
        help="float32, or mixed (float16 arithmetic, float32 weights); auto = mixed when a GPU is visible")
    add("--cache-dir", default=None,
        help="keep the frozen-feature caches here, reused by later runs with the same inputs "
             "(default: scratch shards in <run-dir>/shards, deleted when the run ends)")
    add("--backup-dir", default=None,
        help="per-epoch backups to resume a killed run from (default <run-dir>/backup; 'none' = off); "
             "with several workers the chief uses DIR and worker i DIR-worker<i>")
    add("--seed", type=int, default=defaults.seed, help="random seed")
    add("--max-images-per-class", type=int, default=None, help="cap per class, for quick experiments")
    add("--eval-pairs", type=int, default=defaults.eval_pairs, help="balanced verification test pairs")
    add("--no-progress", action="store_true", help="no progress bars")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    values["holdout_classes"] = tuple(c.strip() for c in args.holdout_classes.split(",") if c.strip())
    values["progress"] = not args.no_progress
    return TrainConfig(**values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:  # TrainConfig checks its values: a bad argument, exit 2
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_main(lambda: _train(config))


def _train(config: TrainConfig) -> int:
    from train.evaluate import summary_line
    from train.run import BASELINE_KEY, train

    metrics = train(config)
    print(summary_line("baseline", metrics[BASELINE_KEY]))
    print(summary_line("trained", metrics["trained"]))
    if "unseen_classes" in metrics["trained"]:
        for key, name in (("trained", "trained"), (BASELINE_KEY, "baseline")):
            unseen = metrics[key]["unseen_classes"]
            print(f"unseen {name}: P@5 {unseen['precision@5']:.3f} ({', '.join(unseen['classes'])})")
    print(f"run folder: {config.run_dir} ({metrics['timing']['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
