"""Open-set answers: accept the nearest enrolled label, or say "unknown".

Two rules, both fitted to the enrolled gallery when it changes:

1. **Nothing in view.** A fixed set of synthetic "nothing" frames (flat colours, gradients, sensor
   noise, dark and blurred frames: :func:`background_frames`) is embedded with the bundle's own
   encoder and kept with the gallery. A query whose nearest background frame is closer than its
   nearest enrolled image is unknown, whatever its similarity.
2. **Too far from everything enrolled.** Leave-one-out over the gallery: a *genuine* score is an
   item's similarity to the nearest other item of its own label; an *impostor* score is its
   similarity to the nearest item of any other label (as if its label had never been enrolled).
   The acceptance threshold is the top-1 similarity that impostors exceed at most ``far`` of the
   time, and at least the one that GENUINE_REFUSED of the genuine scores fall below: a query
   must be as close to an enrolled label as most of the label's own images are to each other.
   The second bound matters when the enrolled labels are easy to tell apart (daisies and roses):
   their impostors are then far apart, the first bound lets in anything of the same kind that was
   not enrolled (without it, 2-12 % of such flowers were rejected at FAR 0.1; with it 83-86 %,
   while 80-83 % of enrolled queries stay accepted, README "Unknown"). Similarities here are the gallery's ranking scores (with the label prototype vote when
   the gallery fitted one, the item's own label's prototype computed without it). The same
   leave-one-out pairs, as plain cosines, give the pair-verification threshold at the same rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from edge.gallery.prototypes import blended, label_sums, leave_one_out_prototype_similarity

# Chosen on the held-out splits (README, "Unknown"): at 0.01 roses+tulips accepted only 36 % of
# its enrolled queries; at 0.1, 77-83 % on four splits, with 83-94 % of the flowers that were not
# enrolled rejected. Leave-one-out impostors are the other *enrolled* labels, so this is a rate
# among enrolled look-alikes, not among everything a camera sees.
DEFAULT_FAR = 0.1
# Share of leave-one-out genuine scores below the acceptance threshold at least. Chosen on the
# roses+tulips, dandelion+sunflowers, daisy+roses and daisy+tulips held-out splits (0.1 left
# daisy+X rejecting 62 % of not-enrolled flowers, 0.3 accepted only 69-71 % of enrolled queries).
GENUINE_REFUSED = 0.2
BACKGROUND_SIZE = 160
MIN_IMPOSTORS = 20
PAIR_SAMPLES_PER_CHUNK = 20_000


@dataclass(frozen=True)
class Calibration:
    """Acceptance threshold on top-1 similarity, and how it was estimated."""

    threshold: float
    far: float
    source: str
    """"gallery" (leave-one-out on the enrolled images) or "bundle" (the manifest's verification
    threshold, used when the gallery has too few labels to estimate one)."""
    estimated_far: float | None = None
    estimated_frr: float | None = None
    genuine: int = 0
    impostors: int = 0
    pair_threshold: float | None = None
    """Cosine *distance* below which ``edge.verify`` calls two images the same, at ``far``."""
    pair_far: float | None = None
    pair_frr: float | None = None

    def to_json(self) -> dict:
        return dict(self.__dict__)  # thresholds unrounded: rounding could let tied impostors in

    @classmethod
    def from_json(cls, values: dict, source: str = "gallery.json") -> "Calibration":
        try:
            calibration = cls(**values)
            numbers = [calibration.threshold, calibration.far]
            numbers += [v for v in (calibration.pair_threshold,) if v is not None]
            if not all(isinstance(v, (int, float)) and np.isfinite(v) for v in numbers):
                raise ValueError("non-finite threshold")
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: calibration {values!r} is malformed ({error})") from error
        if not -1.0 <= calibration.threshold <= 1.01 or not 0.0 < calibration.far < 1.0:
            raise ValueError(f"{source}: calibration threshold {calibration.threshold} or far {calibration.far} "
                             "out of range")
        return calibration


def bundle_calibration(manifest_distance_threshold: float, far: float = DEFAULT_FAR) -> Calibration:
    """The fallback: the manifest's pair threshold (calibrated at export on the training classes)."""
    return Calibration(threshold=1.0 - float(manifest_distance_threshold), far=far, source="bundle",
                       pair_threshold=float(manifest_distance_threshold))


@dataclass(frozen=True)
class Scores:
    """What a calibration is fitted on: top-1 scores of enrolled images queried as if new."""

    genuine: np.ndarray
    """Each query's best score among items of its own label."""
    impostor: np.ndarray
    """Each query's best score among items of other labels (as if its label were not enrolled)."""
    pair_same: np.ndarray
    """Cosines (in the gallery's compared space, without the vote) of same-label pairs (a sample),
    for the pair-verification threshold."""
    pair_diff: np.ndarray
    """The same for different-label pairs (a sample)."""


def calibrate(vectors: np.ndarray, labels: Sequence[str], far: float, fallback: Calibration,
              queries: np.ndarray | None, prototype_weight: float = 0.0) -> Calibration:
    """Fits the acceptance and pair thresholds on compared gallery vectors, leave-one-out (module doc).

    Args:
      vectors: (N, D) gallery vectors as the gallery compares them (Comparison.apply'd).
      labels: their labels.
      far: target false-accept rate, in (0, 1).
      fallback: returned (with ``far``) when there are too few labels or images.
      queries: the leave-one-out query indices (comparison.loo_queries), or None.
      prototype_weight: the gallery's prototype vote (Comparison.prototype_weight).
    """
    _check_far(far)
    label_ids = np.unique(np.asarray(list(labels)), return_inverse=True)[1].reshape(-1)
    if queries is None or len(np.unique(label_ids)) < 2:
        return _with_far(fallback, far)
    return calibration_from_scores(leave_one_out_scores(vectors, label_ids, queries, prototype_weight), far, fallback)


def leave_one_out_scores(vectors: np.ndarray, label_ids: np.ndarray, queries: np.ndarray,
                         prototype_weight: float = 0.0) -> Scores:
    """Scores of gallery items ``queries`` against the rest of the gallery, each left out of its
    own ranking (and out of its own label's prototype)."""
    genuine, impostor, pair_same, pair_diff = [], [], [], []
    rng = np.random.default_rng(0)
    sums, counts = label_sums(vectors, label_ids, int(label_ids.max()) + 1)
    for start in range(0, len(queries), 256):
        rows = queries[start : start + 256]
        similarity = vectors[rows] @ vectors.T
        similarity[np.arange(len(rows)), rows] = -np.inf
        same = label_ids[None, :] == label_ids[rows][:, None]
        scores = similarity
        if prototype_weight > 0:
            vote = leave_one_out_prototype_similarity(vectors, rows, label_ids, sums, counts)
            scores = blended(similarity, vote, label_ids, prototype_weight)
        genuine.append(np.where(same, scores, -np.inf).max(1))
        impostor.append(np.where(same, -np.inf, scores).max(1))
        pair_same.append(sample_pairs(similarity[same & np.isfinite(similarity)], rng))
        pair_diff.append(sample_pairs(similarity[~same], rng))
    return Scores(*(np.concatenate(v) for v in (genuine, impostor, pair_same, pair_diff)))


def calibration_from_scores(scores: Scores, far: float, fallback: Calibration) -> Calibration:
    """The acceptance threshold (the higher of: impostors reach it at most ``far`` of the time;
    GENUINE_REFUSED of the genuine scores fall below it) and the pair threshold at ``far``."""
    _check_far(far)
    genuine, impostor = scores.genuine, scores.impostor
    if len(impostor) < MIN_IMPOSTORS or len(genuine) == 0 or len(scores.pair_diff) == 0:
        return _with_far(fallback, far)
    threshold = max(_threshold_at_far(impostor, far), _threshold_at_frr(genuine, GENUINE_REFUSED))
    pair_threshold = _threshold_at_far(scores.pair_diff, far)
    return Calibration(
        threshold=threshold, far=far, source="gallery",
        estimated_far=float((impostor >= threshold).mean()), estimated_frr=float((genuine < threshold).mean()),
        genuine=int(len(genuine)), impostors=int(len(impostor)),
        pair_threshold=float(1.0 - pair_threshold),
        pair_far=float((scores.pair_diff >= pair_threshold).mean()),
        pair_frr=float((scores.pair_same < pair_threshold).mean()) if len(scores.pair_same) else None,
    )


def sample_pairs(values: np.ndarray, rng: np.random.Generator, limit: int = PAIR_SAMPLES_PER_CHUNK) -> np.ndarray:
    """At most ``limit`` of ``values`` (pair scores grow as N squared; a sample sets a quantile)."""
    return values if len(values) <= limit else rng.choice(values, limit, replace=False)


def _check_far(far: float) -> None:
    if not 0.0 < far < 1.0:
        raise ValueError(f"far must be in (0, 1), got {far}")


def _threshold_at_far(impostor_scores: np.ndarray, far: float) -> float:
    """Smallest similarity that at most ``far`` of the impostor scores reach."""
    scores = np.sort(np.asarray(impostor_scores, dtype=np.float32))[::-1]
    allowed = int(np.floor(far * len(scores)))  # impostors that may reach the threshold
    if allowed >= len(scores):
        return float(scores[-1])
    # Just above the first impostor that must be refused (ties included), in the scores' own
    # float32 so that no impostor equal to it can round its way in.
    return float(np.nextafter(scores[allowed], np.float32(np.inf)))


def _threshold_at_frr(genuine_scores: np.ndarray, frr: float) -> float:
    """Largest similarity that at most ``frr`` of the genuine scores fall below."""
    scores = np.sort(np.asarray(genuine_scores, dtype=np.float32))
    return float(scores[min(int(np.floor(frr * len(scores))), len(scores) - 1)])


def _with_far(calibration: Calibration, far: float) -> Calibration:
    return Calibration(**{**calibration.__dict__, "far": far})


def background_frames(size: int = BACKGROUND_SIZE) -> list[np.ndarray]:
    """Deterministic RGB frames with nothing in them: what a camera sees of a wall, a covered lens,
    a dark room or its own sensor noise. Used only as references of "nothing", never as queries of
    the accuracy reported in README (those are drawn from other generators and seeds)."""
    rng = np.random.default_rng(20261203)
    frames = []
    for level in (0, 40, 90, 128, 170, 215, 255):
        frames.append(np.full((size, size, 3), level, np.uint8))
    for colour in ((200, 40, 40), (40, 160, 60), (50, 70, 200), (220, 200, 60), (150, 120, 100)):
        frames.append(np.tile(np.array(colour, np.uint8), (size, size, 1)))
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    frames.append(np.repeat(np.tile(ramp, (size, 1))[..., None], 3, axis=2).astype(np.uint8))
    frames.append(np.repeat(np.tile(ramp[:, None], (1, size))[..., None], 3, axis=2).astype(np.uint8))
    for mean, sigma in ((128, 12), (128, 40), (128, 80), (20, 8), (60, 25), (200, 30)):
        frames.append(np.clip(rng.normal(mean, sigma, (size, size, 1)), 0, 255).repeat(3, axis=2).astype(np.uint8))
        frames.append(np.clip(rng.normal(mean, sigma, (size, size, 3)), 0, 255).astype(np.uint8))
    for kernel in (9, 31):
        noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        frames.append(cv2.GaussianBlur(noise, (kernel, kernel), 0))
    frames.append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return frames
