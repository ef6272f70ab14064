"""Per-epoch backups of the training stages, so a killed run started again with the same command
resumes where it stopped and ends with the same metrics as an uninterrupted run.

``keras.callbacks.BackupAndRestore`` restores the epoch of *one* ``fit`` call. Training here is two
stages on cached features, each epoch its own ``fit`` on freshly drawn batches, so this saves the
same things at the same moment (the end of every epoch) plus what BackupAndRestore cannot know:
which stage the epoch belongs to, the losses so far, and the random state the next epoch's batches
are drawn from (the run's numpy Generator and Python's ``random``, which seeds Keras initialisers).

    <backup>/state.json                  stage, epochs done, losses, random states, weights file,
                                         and the same for the epoch before ("previous")
    <backup>/<stage>-epoch-<n>.weights.h5 model + optimizer state (``Model.save_weights``), the last two

state.json is replaced atomically after its weights file is complete, so a kill at any moment
leaves the previous epoch's backup usable. A backup made by another configuration or data split
(its fingerprint differs) is ignored and overwritten. The folder is deleted when the run finishes.

Several workers (train.distribute) each keep a backup of their own, and a cluster killed together
may leave them one epoch apart: the all-reduce of epoch n+1 needs every worker, so none can be
further ahead than that, but one may die between finishing epoch n and writing it. Before
resuming, the workers exchange which epochs their backups can restore (their latest and the one
before; ``gather_progress``, a collective) and all take the furthest epoch every one of them has,
or start again when there is none: the same decision on every worker. A worker that goes back an
epoch rewrites its state.json to that epoch and deletes the newer weights at once, so a later
save never overwrites the file its state.json names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from edge.atomic import write_text_atomic

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
STAGES = ("stage 1", "stage 2")
"""The checkpointed stages in the order they run."""
PROGRESS_PER_STAGE = 100_000
"""More epochs than any stage has: ``progress`` counts a stage as this many."""


def fingerprint(*parts: str) -> str:
    """sha256 over what decides a run's result (its configuration, its split lists)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()


class EpochBackup:
    """Saves after every epoch; on a restart, skips finished stages and restores the epoch reached."""

    def __init__(self, folder: Path | None, run_fingerprint: str,
                 gather_progress: Callable[[list[int]], list[list[int]]] | None = None):
        """``folder`` None turns backups off (nothing is saved or restored). ``gather_progress``
        (several workers only) takes the :func:`progress` of the epochs this worker can restore
        and returns every worker's; every worker must call it, so it is called even without a
        backup to resume."""
        self.folder = Path(folder) if folder else None
        self.fingerprint = run_fingerprint
        self.state = self._read_state()
        if gather_progress is not None and self.folder is not None:
            offered = gather_progress(self._restorable())
            self.state = self._agreed_state(max(set.intersection(*({0, *epochs} for epochs in offered))))
        if self.state is not None:
            log.info("resuming from %s: %s, %d epoch(s) done", self.folder, self.state["stage"],
                     self.state["epochs_done"])

    def _read_state(self) -> dict | None:
        if self.folder is None or not (self.folder / STATE_FILE).is_file():
            return None
        path = self.folder / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if state.get("fingerprint") != self.fingerprint:
                log.warning("ignoring the backup in %s: made by another configuration or data split", self.folder)
                return None
            progress(state)  # a known stage and an epoch count
            if not (self.folder / state["weights"]).is_file():
                raise FileNotFoundError(f"{state['weights']} is missing")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("ignoring the backup in %s, which cannot be resumed (%s): training from the start",
                        path, error)
            return None
        return state

    def _previous(self) -> dict | None:
        """The epoch before the latest, when its weights are still there."""
        previous = (self.state or {}).get("previous")
        if isinstance(previous, dict) and previous.get("weights") and (self.folder / previous["weights"]).is_file():
            return previous
        return None

    def _restorable(self) -> list[int]:
        """The progress of the backed-up epochs this worker can restore (none: [0])."""
        previous = self._previous()
        return [progress(self.state)] + ([progress(previous)] if previous is not None else [])

    def _agreed_state(self, agreed: int) -> dict | None:
        """The backed-up epoch ``agreed`` (every worker has it): this backup's latest, or the one
        before it, made the latest on disk first; None (and no backup left) for 0."""
        if agreed == progress(self.state):
            return self.state
        previous = self._previous()
        if previous is not None and agreed == progress(previous):
            log.info("another worker's backup ends an epoch earlier: going back to the epoch before the last")
            state = {**previous, "fingerprint": self.fingerprint, "previous": None}
            self._write_state(state)
            return state
        log.warning("the workers' backups share no epoch: every worker trains from the start")
        shutil.rmtree(self.folder, ignore_errors=True)
        return None

    def resume(self, stage: str, model, rng: np.random.Generator) -> list[float]:
        """The losses of the epochs of ``stage`` already done (all of them when a later stage was
        reached). When the backup ends inside ``stage``, loads its weights and optimizer state into
        ``model`` and puts the random states back as they were after that epoch."""
        if self.state is None or STAGES.index(self.state["stage"]) < STAGES.index(stage):
            return []
        losses = list(self.state["history"].get(stage, []))
        if self.state["stage"] == stage:
            # The optimizer's variables exist only after its first step; create them to load into.
            model.optimizer.build(model.trainable_variables)
            model.load_weights(self.folder / self.state["weights"])
            rng.bit_generator.state = self.state["numpy_rng"]
            version, internal, gauss = self.state["python_random"]
            random.setstate((version, tuple(internal), gauss))
        return losses

    def save(self, stage: str, model, rng: np.random.Generator, history: dict[str, list[float]]) -> None:
        """Backs up the end of the epoch just finished (``len(history[stage])`` epochs done)."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        done = len(history[stage])
        weights = f"{stage.replace(' ', '-')}-epoch-{done:04d}.weights.h5"
        model.save_weights(self.folder / weights)
        previous = {k: v for k, v in self.state.items() if k != "previous"} if self.state else None
        state = {
            "fingerprint": self.fingerprint,
            "stage": stage,
            "epochs_done": done,
            "history": history,
            "weights": weights,
            "numpy_rng": rng.bit_generator.state,
            "python_random": random.getstate(),
            "previous": previous,
        }
        self._write_state(state)

    def _write_state(self, state: dict) -> None:
        """Replaces state.json atomically, then deletes the weights files it no longer names."""
        # Through JSON now: the state kept for the next epoch must not share the history's lists.
        text = json.dumps(state, default=_jsonable) + "\n"
        write_text_atomic(self.folder / STATE_FILE, text)
        kept = {state["weights"], (state.get("previous") or {}).get("weights")}
        for old in self.folder.glob("*.weights.h5"):
            if old.name not in kept:
                old.unlink()
        self.state = json.loads(text)

    def finish(self) -> None:
        """The run is complete: the backup is no longer needed."""
        if self.folder is not None and self.folder.exists():
            shutil.rmtree(self.folder)


def progress(state: dict | None) -> int:
    """How far a backup goes, as one number that orders backups: 0 for none."""
    if state is None:
        return 0
    return STAGES.index(state["stage"]) * PROGRESS_PER_STAGE + int(state["epochs_done"])


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in a backup's state.json")
