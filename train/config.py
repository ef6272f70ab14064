"""Training configuration: one frozen dataclass, filled from the command line."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN_DIR = REPO_ROOT / "artifacts" / "run"
LOSSES = ("softmax", "triplet", "contrastive", "bce")
STRATEGIES = ("default", "mirrored", "multiworker")
PRECISIONS = ("auto", "float32", "mixed")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run does; saved as config.json in the run."""

    data_dir: str | None = None
    """Folder of <class>/<image> sub-folders; None downloads tf_flowers through tensorflow-datasets."""
    dataset_cache: str = str(REPO_ROOT / "artifacts" / "datasets")
    """Where a downloaded data set is unpacked (only without data_dir)."""
    weights: str = "imagenet"
    """MobileNetV2 weights: "imagenet" (Keras download), a local .h5 file, or "none" (random)."""
    run_dir: str = str(DEFAULT_RUN_DIR)
    """Output folder of the run (encoder, metrics, pictures, split lists)."""
    input_size: int = 224
    """Square input side in pixels; images are squashed to it (as on the device)."""
    alpha: float = 1.0
    """MobileNetV2 width multiplier (only 1.0 has offline ImageNet weights)."""
    embedding_size: int = 128
    """Size of the L2-normalised embedding."""
    test_fraction: float = 0.2
    """Share of every class held out for testing (hash of the relative path decides)."""
    split_salt: str = "siamese-edge-v1"
    """Salt of the split hash; change it to draw a different split."""
    holdout_classes: tuple[str, ...] = ()
    """Classes left out of training entirely, evaluated by enrolment as unseen classes."""
    loss: str = "softmax"
    """Training signal: softmax (cosine classifier), triplet (semi-hard), contrastive, bce (pair head)."""
    margin: float = 0.5
    """Margin of the triplet and contrastive losses (in embedding distance)."""
    cosine_scale: float = 16.0
    """Scale of the cosine-softmax logits."""
    cosine_margin: float = 0.15
    """Additive cosine margin (CosFace) subtracted from the true class's cosine during training."""
    distill_weight: float = 0.0
    """Weight of the similarity-distillation term toward the frozen ImageNet features (softmax and
    triplet losses); keeps classes never trained on retrievable. 0 turns it off."""
    generic_share: float = 0.4
    """Share of the cosine similarity given to the generic branch: a fixed whitened-PCA projection
    of the fine-tuned backbone's last bottleneck, fitted after training, concatenated with the
    trained head. Keeps classes never trained on retrievable. 0 leaves the head alone."""
    generic_size: int = 256
    """Dimensions of the generic branch (at most the bottleneck's 320 and the training images)."""
    generic_power: float = 0.5
    """Whitening of the generic branch: component i divided by singular value ** power."""
    head_epochs: int = 10
    """Stage 1: epochs of the projection head on cached frozen features."""
    head_learning_rate: float = 1e-3
    """Stage 1 learning rate (Adam)."""
    fine_tune_epochs: int = 16
    """Stage 2: epochs of fine-tuning the top backbone blocks (0 skips stage 2)."""
    fine_tune_from_block: int = 7
    """First MobileNetV2 block (1-16) trained in stage 2; everything below stays frozen."""
    fine_tune_learning_rate: float = 3e-4
    """Stage 2 peak learning rate (Adam, cosine decay)."""
    augmented_views: int = 8
    """Augmented views of every training image whose frozen lower-block features are cached."""
    batch_size: int = 64
    """Images per batch (classes_per_batch x images_per_class for class-balanced batches)."""
    pairs_per_epoch: int = 4096
    """Pairs per epoch for the pair losses (contrastive, bce)."""
    strategy: str = "default"
    """tf.distribute strategy: default (one device), mirrored (all GPUs, or all logical CPUs), or
    multiworker (MultiWorkerMirroredStrategy over the workers in TF_CONFIG; train.distribute)."""
    precision: str = "auto"
    """float32, or mixed (float16 arithmetic, float32 weights, loss scaling; train.precision); auto
    picks mixed when TensorFlow sees a GPU. The run's config.json records what was used."""
    cache_dir: str | None = None
    """Folder of the frozen-feature caches (clean images' lower-block maps, augmented views), keyed
    by what made them and reused by later runs with the same inputs; None writes them as scratch
    shards in <run_dir>/shards, deleted when the run ends (a killed run started again finds them)."""
    backup_dir: str | None = None
    """Per-epoch backups for resuming a killed run: None = <run_dir>/backup, "none" = off."""
    seed: int = 0
    """Seed for augmentation, sampling and initialisation."""
    max_images_per_class: int | None = None
    """Cap on images per class (quick experiments); None uses all."""
    progress: bool = True
    """Show progress bars."""
    eval_pairs: int = 10000
    """Balanced verification pairs drawn from the test split."""
    grid_queries: int = 8
    """Queries shown in the retrieval picture."""
    extra: dict = field(default_factory=dict)
    """Free-form notes recorded with the run."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 1 <= self.fine_tune_from_block <= 16:
            raise ValueError(f"fine_tune_from_block must be 1..16, got {self.fine_tune_from_block}")
        if self.input_size < 32:
            raise ValueError(f"input_size must be at least 32, got {self.input_size}")
        if not 0.0 <= self.generic_share < 1.0:
            raise ValueError(f"generic_share must be in [0, 1), got {self.generic_share}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.augmented_views < 1:
            raise ValueError(f"augmented_views must be >= 1, got {self.augmented_views}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        values = json.loads(text)
        values["holdout_classes"] = tuple(values.get("holdout_classes", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})
