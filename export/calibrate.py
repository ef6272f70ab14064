"""Verification threshold calibration on held-out pairs.

The test split is cut in two by a hash of each file's path: pairs from the *calibration* half set
the threshold, pairs from the *evaluation* half measure it. Same = 1 means same class; a pair is
accepted as same when its cosine distance (1 - cos) <= threshold.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edge.metrics import equal_error_rate, false_accept_reject, threshold_at_far
from train.data import split_fraction

CALIBRATION_SALT = "siamese-edge-calibration"


def calibration_mask(paths: Sequence[str]) -> np.ndarray:
    """True for the images whose pairs calibrate; False for those that evaluate (about half each)."""
    return np.array([split_fraction(p, CALIBRATION_SALT) < 0.5 for p in paths], dtype=bool)


def calibrate_threshold(distances: np.ndarray, same: np.ndarray, method: str = "eer", target_far: float | None = None) -> dict:
    """Picks the threshold: at the equal error rate, or the largest with FAR <= target_far."""
    if method == "eer":
        rates = equal_error_rate(distances, same)
        return {"threshold": rates.threshold, "method": "eer", "calibration_eer": rates.eer}
    if method == "far":
        if target_far is None:
            raise ValueError("method 'far' needs target_far")
        return {"threshold": threshold_at_far(distances, same, target_far), "method": "far", "target_far": target_far}
    raise ValueError(f"method must be 'eer' or 'far', got {method!r}")


def rates_at(distances: np.ndarray, same: np.ndarray, threshold: float) -> dict:
    """FAR, FRR and accuracy of one threshold on pairs."""
    far, frr = false_accept_reject(distances, same, np.array([threshold]))
    same = np.asarray(same).astype(bool)
    accepted = np.asarray(distances) <= threshold
    return {"far": float(far[0]), "frr": float(frr[0]), "accuracy": float((accepted == same).mean()),
            "pairs": int(len(same))}
