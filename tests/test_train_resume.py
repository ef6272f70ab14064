"""A training run SIGKILLed after an epoch and started again with the same command resumes from
its per-epoch backup and ends with exactly the metrics of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, TINY_TRAIN_ARGS, make_class_folder
from tiny_train_metrics import comparable

# Longer stages than the smoke tests' so that the kill lands inside stage 2, not after it.
ARGS = [*TINY_TRAIN_ARGS, "--head-epochs", "2", "--fine-tune-epochs", "4", "--batch-size", "6"]


def _command(data: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "train", "--data-dir", str(data), "--run-dir", str(run), *ARGS, *extra]


def _result(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {"metrics": comparable(metrics), "history": json.loads((run / "history.json").read_text())}


def _state(backup: Path) -> dict | None:
    try:
        return json.loads((backup / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet (it is replaced atomically)
        return None


def _kill_after_first_stage_2_epoch(command: list[str], backup: Path, timeout: float = 240.0) -> dict:
    """Starts ``command``, waits until its backup holds a stage-2 epoch, SIGKILLs it; the state seen."""
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            state = _state(backup)
            if state and state["stage"] == "stage 2":
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                return _state(backup)  # read again: an epoch may have ended before the signal landed
            time.sleep(0.01)  # polling interval, not synchronisation: the state file decides
        pytest.fail(f"no stage-2 backup in {backup} (exit {process.poll()}): {process.stderr.read()[-2000:]!r}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


# Mixed precision adds the loss-scale optimizer's state (scale, good steps) to what must come back.
@pytest.mark.parametrize("precision", ["float32", "mixed"])
def test_killed_run_resumes_to_the_same_metrics(tmp_path, precision):
    data = make_class_folder(tmp_path / "data", per_class=12, size=48)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    uninterrupted = subprocess.Popen(_command(data, whole, "--precision", precision), cwd=REPO_ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # alongside: half the wall time
    try:
        seen = _kill_after_first_stage_2_epoch(_command(data, resumed, "--precision", precision), resumed / "backup")
        assert uninterrupted.wait(timeout=300) == 0
    finally:
        if uninterrupted.poll() is None:
            uninterrupted.kill()
            uninterrupted.wait()
    assert not (whole / "backup").exists(), "a finished run deletes its backup"
    assert not (resumed / "metrics.json").exists(), "killed before it finished"
    assert seen["stage"] == "stage 2" and 1 <= seen["epochs_done"] < 4, seen["epochs_done"]
    assert len(seen["history"]["stage 1"]) == 2

    again = subprocess.run(_command(data, resumed, "--precision", precision), cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"stage 2, {seen['epochs_done']} epoch(s) done" in again.stderr
    assert _result(resumed) == _result(whole)  # bit-identical: every loss and metric
    assert not (resumed / "backup").exists()


def test_backup_of_another_configuration_is_not_resumed(tmp_path):
    data = make_class_folder(tmp_path / "data", per_class=12, size=48)
    run = tmp_path / "run"
    seen = _kill_after_first_stage_2_epoch(_command(data, run), run / "backup")
    assert seen is not None
    command = [*_command(data, run), "--seed", "1"]
    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ignoring the backup" in again.stderr and "resuming from" not in again.stderr
    assert "stage 1 epoch 1/2" in again.stderr  # trained from the start
