"""Two local workers train together under ``--strategy multiworker`` (MultiWorkerMirroredStrategy
configured by TF_CONFIG on loopback ports): both end with the same weights, only the chief keeps a
run folder, and the loss matches a one-worker run of the same global batch."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, TINY_TRAIN_ARGS, make_class_folder
from tiny_train_metrics import comparable
from train.checkpoint import progress

TIMEOUT = 300.0
DIGEST = re.compile(r"encoder weights sha256 ([0-9a-f]{64})")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env(tf_config: dict | None) -> dict:
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", CUDA_VISIBLE_DEVICES="-1")
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "train", *argv], cwd=REPO_ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _wait_all(processes: list[subprocess.Popen], logs: list[Path]) -> None:
    """Waits for every process within TIMEOUT; on a failure or timeout kills them all."""
    deadline = time.monotonic() + TIMEOUT
    try:
        for process, log in zip(processes, logs):
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
            assert code == 0, f"{log.name} exited {code}:\n{log.read_text()[-3000:]}"
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_two_workers_train_together(tmp_path):
    data = make_class_folder(tmp_path / "data", per_class=12, size=48)
    run = tmp_path / "run"
    argv = ["--data-dir", str(data), "--run-dir", str(run), *TINY_TRAIN_ARGS, "--fine-tune-epochs", "2"]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log", tmp_path / "single.log"]
    tasks = [{"cluster": cluster, "task": {"type": "worker", "index": i}} for i in range(2)]
    single_run = tmp_path / "single"
    single_argv = ["--data-dir", str(data), "--run-dir", str(single_run), *TINY_TRAIN_ARGS, "--fine-tune-epochs", "2"]
    processes = [_start([*argv, "--strategy", "multiworker"], _env(tasks[i]), logs[i]) for i in range(2)]
    processes.append(_start(single_argv, _env(None), logs[2]))  # alongside: the 3 use 1 thread each
    _wait_all(processes, logs)

    texts = [log.read_text() for log in logs]
    assert "task worker 0 of 2 replicas" in texts[0] and "task worker 1 of 2 replicas" in texts[1]
    digests = [DIGEST.findall(text) for text in texts]
    assert len(digests[0]) == 1 and digests[0] == digests[1], "the two workers ended with different weights"
    assert (run / "metrics.json").is_file() and (run / "encoder.keras").is_file()
    assert not list(run.glob("workertemp_*")), "worker 1 deletes its temporary folder"

    together = json.loads((run / "history.json").read_text())
    alone = json.loads((single_run / "history.json").read_text())
    # Same global batch, same batches: only the order of the cross-worker sums differs (float32).
    for stage in ("stage 1", "stage 2"):
        assert together[stage] == pytest.approx(alone[stage], rel=1e-3), stage
    metrics = json.loads((run / "metrics.json").read_text())
    single = json.loads((single_run / "metrics.json").read_text())
    # Same frozen features (predict splits each batch between the workers: float32 rounding only).
    baseline, baseline_alone = metrics["baseline_frozen_imagenet"], single["baseline_frozen_imagenet"]
    assert baseline["retrieval"] == baseline_alone["retrieval"]
    assert baseline["verification"] == pytest.approx(baseline_alone["verification"], rel=1e-6)
    assert metrics["encoder_check"]["max_abs_diff"] < 1e-3


# Long enough stages that the kill lands inside stage 2 (as tests/test_train_resume.py).
RESUME_ARGS = [*TINY_TRAIN_ARGS, "--head-epochs", "2", "--fine-tune-epochs", "4", "--batch-size", "6"]


def _cluster(run: Path, data: Path, ports: list[int], logs: list[Path], *extra: str) -> list[subprocess.Popen]:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    argv = ["--data-dir", str(data), "--run-dir", str(run), *RESUME_ARGS, "--strategy", "multiworker", *extra]
    return [_start(argv, _env({"cluster": cluster, "task": {"type": "worker", "index": i}}), logs[i]) for i in range(2)]


def _read_state(backup: Path) -> dict | None:
    try:
        return json.loads((backup / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet (replaced atomically)
        return None


def _roll_back_one_epoch(backup: Path) -> None:
    """What a worker killed between finishing its last epoch and backing it up leaves on disk."""
    state = _read_state(backup)
    (backup / state["weights"]).unlink()
    (backup / "state.json").write_text(json.dumps({**state["previous"], "previous": None}))


def test_two_killed_workers_resume_to_the_same_metrics(tmp_path):
    """Both workers SIGKILLed inside stage 2, their backups one epoch apart (as a worker killed
    before writing its last backup leaves them), the same commands started again: they agree on
    the epoch both have and end exactly as an uninterrupted two-worker run."""
    data = make_class_folder(tmp_path / "data", per_class=12, size=48)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    ports = _free_ports(4)
    whole_logs = [tmp_path / "whole0.log", tmp_path / "whole1.log"]
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    uninterrupted = _cluster(whole, data, ports[:2], whole_logs)  # alongside, to save wall time
    backup_arg = ("--backup-dir", str(tmp_path / "bk"))  # the chief's; worker 1 uses bk-worker1
    killed = _cluster(resumed, data, ports[2:], logs, *backup_arg)
    backups = [tmp_path / "bk", tmp_path / "bk-worker1"]
    deadline = time.monotonic() + TIMEOUT
    try:
        while (_read_state(backups[0]) or {}).get("stage") != "stage 2":
            assert time.monotonic() < deadline and all(p.poll() is None for p in killed), logs[0].read_text()[-3000:]
            time.sleep(0.01)
        for process in killed:
            process.kill()
        for process in killed:
            process.wait(timeout=30)
    finally:
        for process in killed:
            if process.poll() is None:
                process.kill()
                process.wait()
    _wait_all(uninterrupted, whole_logs)
    assert not (resumed / "metrics.json").exists(), "killed before it finished"

    states = [_read_state(folder) for folder in backups]
    if progress(states[0]) == progress(states[1]):
        _roll_back_one_epoch(backups[1])
    ahead = 0 if progress(states[0]) >= progress(_read_state(backups[1])) else 1
    _wait_all(_cluster(resumed, data, ports[2:], logs, *backup_arg), logs)

    assert "going back to the epoch before the last" in logs[ahead].read_text()
    assert "resuming from" in logs[1 - ahead].read_text()
    for name in ("history.json", "metrics.json"):
        again, alone = (json.loads((run / name).read_text()) for run in (resumed, whole))
        if name == "metrics.json":
            again, alone = comparable(again), comparable(alone)
        assert again == alone, name  # bit-identical: every loss and metric
    assert not any(folder.exists() for folder in backups) and not (resumed / "workertemp_1").exists()
