"""train.checkpoint.EpochBackup without a training run: what it keeps, and which epoch several
workers agree to restore when their backups end one epoch apart."""

from __future__ import annotations

import json

import numpy as np
import pytest

from train.checkpoint import STATE_FILE, EpochBackup, progress


def _model():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _train_and_back_up(folder, epochs: list[tuple[str, int]]) -> dict:
    """Backs up the given (stage, epochs done) one after another; the weights of each, by epoch."""
    backup, model, rng = EpochBackup(folder, "fp"), _model(), np.random.default_rng(0)
    history: dict[str, list[float]] = {}
    weights = {}
    for stage, done in epochs:
        model.layers[0].kernel.assign(np.full((3, 2), float(len(weights) + 1), dtype=np.float32))
        history.setdefault(stage, []).append(float(done))
        rng.random()  # the next epoch's draws
        backup.save(stage, model, rng, history)
        weights[(stage, done)] = model.layers[0].kernel.numpy().copy()
    return weights


def test_keeps_the_last_two_epochs(tmp_path):
    _train_and_back_up(tmp_path, [("stage 1", 1), ("stage 1", 2), ("stage 2", 1)])
    assert sorted(p.name for p in tmp_path.glob("*.weights.h5")) == [
        "stage-1-epoch-0002.weights.h5", "stage-2-epoch-0001.weights.h5"]
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert (state["stage"], state["epochs_done"]) == ("stage 2", 1)
    assert (state["previous"]["stage"], state["previous"]["epochs_done"]) == ("stage 1", 2)
    assert "previous" not in state["previous"], "one epoch back, not a chain"
    assert state["previous"]["history"] == {"stage 1": [1.0, 2.0]}


def test_progress_orders_stages_then_epochs():
    assert progress(None) == 0
    assert 0 < progress({"stage": "stage 1", "epochs_done": 10}) < progress({"stage": "stage 2", "epochs_done": 1})


@pytest.mark.parametrize("others_lag", [False, True])
def test_workers_restore_the_epoch_they_all_have(tmp_path, others_lag):
    weights = _train_and_back_up(tmp_path, [("stage 1", 1), ("stage 1", 2), ("stage 2", 1)])
    latest = progress({"stage": "stage 2", "epochs_done": 1})
    before = progress({"stage": "stage 1", "epochs_done": 2})
    offered = []

    def gather(value: int) -> list[int]:
        offered.append(value)
        return [value, before if others_lag else value]  # worker 1 died before backing up its last epoch

    backup = EpochBackup(tmp_path, "fp", gather)
    assert offered == [latest]
    expected = ("stage 1", 2) if others_lag else ("stage 2", 1)
    assert (backup.state["stage"], backup.state["epochs_done"]) == expected

    model, rng = _model(), np.random.default_rng(0)
    history = {"stage 1": backup.resume("stage 1", model, rng)}
    if others_lag:  # stage 1 resumes at its last epoch, then stage 2 starts from nothing
        assert history["stage 1"] == [1.0, 2.0]
        np.testing.assert_array_equal(model.layers[0].kernel.numpy(), weights[("stage 1", 2)])
        assert backup.resume("stage 2", _model(), rng) == []
    else:
        assert history["stage 1"] == [1.0, 2.0] and backup.resume("stage 2", model, rng) == [1.0]
        np.testing.assert_array_equal(model.layers[0].kernel.numpy(), weights[("stage 2", 1)])


def test_workers_without_a_shared_epoch_start_again(tmp_path):
    _train_and_back_up(tmp_path, [("stage 1", 1), ("stage 1", 2), ("stage 2", 1)])
    assert EpochBackup(tmp_path, "fp", lambda value: [value, 0]).state is None  # worker 1 has no backup
    assert EpochBackup(tmp_path, "fp", lambda value: [value, 1]).state is None  # two epochs behind


def test_every_worker_joins_the_exchange_even_without_a_backup(tmp_path):
    offered = []
    backup = EpochBackup(tmp_path / "empty", "fp", lambda value: offered.append(value) or [value, 5])
    assert offered == [0] and backup.state is None
    assert EpochBackup(None, "fp", lambda value: pytest.fail("no backups: nothing to agree on")).state is None
