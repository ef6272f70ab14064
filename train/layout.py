"""The training run folder on disk, spelled once: what `python -m train` writes, and what
re-evaluation (train.evaluate) and export (export.pipeline, through train.run_folder) read.

    <run>/
      config.json          the TrainConfig of the run
      encoder.keras        the embedding tower (what export converts)
      siamese.keras        the two-branch pair model (training only)
      classes.json         {"classes": [...]} in label order
      metrics.json         baseline and trained metrics, timing, data
      history.json         per-epoch losses
      loss.png, retrieval_grid.png
      split/train.txt      <relative image path>\t<class> per line
      split/test.txt
      backup/              per-epoch backups while the run is going (deleted when it ends)
      shards/              feature shards without --cache-dir (train.cache; deleted when it ends)
"""

from __future__ import annotations

CONFIG_FILE = "config.json"
ENCODER_FILE = "encoder.keras"
SIAMESE_FILE = "siamese.keras"
CLASSES_FILE = "classes.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.json"
LOSS_PLOT = "loss.png"
GRID_PLOT = "retrieval_grid.png"
SPLIT_DIR = "split"
TRAIN_LIST = f"{SPLIT_DIR}/train.txt"
TEST_LIST = f"{SPLIT_DIR}/test.txt"
BACKUP_DIR = "backup"
SHARDS_DIR = "shards"

REQUIRED_FILES = (CONFIG_FILE, ENCODER_FILE, CLASSES_FILE, METRICS_FILE, TRAIN_LIST, TEST_LIST)
"""What a finished run holds and later steps need (checked by train.run_folder.open_run)."""
