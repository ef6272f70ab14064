"""Evaluation: gallery = train split, queries = test split, cosine similarity.

Reports P@1/5/10, Recall@K, mAP@R, and verification (ROC AUC, EER, threshold at EER) on balanced
test pairs; with held-out classes, also the queries of unseen classes (enrolled in the gallery
but never trained on).

Re-evaluate a finished run with its saved encoder::

    python -m train.evaluate --run artifacts/run --data-dir ../shared/data/flower_photos
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.metrics import cosine_similarity_matrix, ranked_gallery_labels, retrieval_report, verification_report
from train.run_folder import RunFolderError, data_dir_of, open_run
from train.sampling import balanced_pairs

log = logging.getLogger(__name__)


def pair_cosine_distances(embeddings: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine distance (1 - cos) of every ``[a, b, same]`` row."""
    a = embeddings[pairs[:, 0]].astype(np.float64)
    b = embeddings[pairs[:, 1]].astype(np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return 1.0 - cos


def evaluate_embeddings(
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    queries: np.ndarray,
    query_labels: np.ndarray,
    class_names: Sequence[str],
    holdout_classes: Sequence[str] = (),
    num_pairs: int = 10000,
    seed: int = 0,
) -> dict:
    """All metrics of one embedding, as a JSON-ready dict."""
    report = {"retrieval": retrieval_report(queries, query_labels, gallery, gallery_labels)}
    pairs = balanced_pairs(query_labels, num_pairs, np.random.default_rng(seed))
    report["verification"] = verification_report(pair_cosine_distances(queries, pairs), pairs[:, 2])
    if holdout_classes:
        unseen_ids = [class_names.index(name) for name in holdout_classes]
        unseen = np.isin(query_labels, unseen_ids)
        seen_report = retrieval_report(queries[~unseen], query_labels[~unseen], gallery, gallery_labels)
        unseen_report = retrieval_report(queries[unseen], query_labels[unseen], gallery, gallery_labels)
        report["seen_classes"] = seen_report
        report["unseen_classes"] = {"classes": list(holdout_classes), **unseen_report}
        if len(unseen_ids) >= 2:
            in_gallery = np.isin(gallery_labels, unseen_ids)
            report["unseen_only"] = retrieval_report(
                queries[unseen], query_labels[unseen], gallery[in_gallery], gallery_labels[in_gallery]
            )
    return report


def per_query_precision(
    queries: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray, k: int = 5
) -> np.ndarray:
    """(Q,) precision@k of every query; its mean is retrieval_report's ``precision@k``."""
    ranked = ranked_gallery_labels(queries, gallery, np.asarray(gallery_labels), k)
    return (ranked[:, :k] == np.asarray(query_labels)[:, None]).mean(axis=1)


def paired_bootstrap(trained: np.ndarray, baseline: np.ndarray, rounds: int = 10000, seed: int = 0) -> dict:
    """Mean per-query difference ``trained - baseline`` and its 95 % percentile-bootstrap interval
    (queries resampled with replacement, the same queries for both embeddings)."""
    difference = np.asarray(trained, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.array([difference[rng.integers(0, len(difference), len(difference))].mean() for _ in range(rounds)])
    return {
        "difference": float(difference.mean()),
        "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))],
        "queries": int(len(difference)),
        "rounds": rounds,
    }


def unseen_against_baseline(
    trained: tuple[np.ndarray, np.ndarray],
    baseline: tuple[np.ndarray, np.ndarray],
    gallery_labels: np.ndarray,
    query_labels: np.ndarray,
    unseen_ids: Sequence[int],
    k: int = 5,
    seed: int = 0,
) -> dict:
    """P@k of the unseen-class queries, trained minus baseline, with bootstrap intervals: against
    the full gallery, and against the unseen classes' gallery items only."""
    unseen = np.isin(query_labels, unseen_ids)
    galleries = {"full_gallery": np.ones(len(gallery_labels), dtype=bool)}
    if len(unseen_ids) >= 2:
        galleries["unseen_only"] = np.isin(gallery_labels, unseen_ids)
    report = {}
    for name, rows in galleries.items():
        scores = [
            per_query_precision(test[unseen], query_labels[unseen], train[rows], gallery_labels[rows], k)
            for train, test in (trained, baseline)
        ]
        report[name] = {f"trained_precision@{k}": float(scores[0].mean()), f"baseline_precision@{k}": float(scores[1].mean()),
                        **paired_bootstrap(scores[0], scores[1], seed=seed)}
    return report


def nearest_neighbours(queries: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the ``k`` most similar gallery items per query."""
    similarity = cosine_similarity_matrix(queries, gallery)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(similarity, order, axis=1)


def summary_line(name: str, report: dict) -> str:
    """One human line: P@1/P@5/P@10, mAP@R, AUC, EER."""
    r, v = report["retrieval"], report["verification"]
    return (
        f"{name:>9}: P@1 {r['precision@1']:.3f}  P@5 {r['precision@5']:.3f}  P@10 {r['precision@10']:.3f}  "
        f"mAP@R {r['map@r']:.3f}  ROC AUC {v['roc_auc']:.4f}  EER {v['eer']:.3f}"
    )


def evaluate_saved_run(path: Path, data_dir: Path | None, batch_size: int = 32) -> dict:
    """Embeds the run's split with its saved Keras encoder and recomputes the metrics."""
    import keras

    from train.data import scan_images
    from train.features import embed_image_list

    run = open_run(path)
    root = data_dir_of(run, data_dir)
    size = run.config.input_size
    train_set, _ = scan_images(root, run.train_records, run.class_names, size)
    test_set, _ = scan_images(root, run.test_records, run.class_names, size)
    encoder = keras.models.load_model(run.encoder_path)
    gallery = embed_image_list(encoder, train_set, batch_size)
    queries = embed_image_list(encoder, test_set, batch_size)
    return evaluate_embeddings(
        gallery, train_set.labels, queries, test_set.labels, run.class_names,
        run.config.holdout_classes, run.config.eval_pairs, run.config.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Re-evaluates a run's saved encoder on its own split lists."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="training run folder")
    parser.add_argument("--data-dir", type=Path, default=None, help="data folder (default: the run's)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = evaluate_saved_run(args.run, args.data_dir, args.batch_size)
    except (RunFolderError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary_line("trained", report))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
