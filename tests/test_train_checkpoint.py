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


LATEST = progress({"stage": "stage 2", "epochs_done": 1})
BEFORE = progress({"stage": "stage 1", "epochs_done": 2})


@pytest.mark.parametrize("others_lag", [False, True])
def test_workers_restore_the_epoch_they_all_have(tmp_path, others_lag):
    weights = _train_and_back_up(tmp_path, [("stage 1", 1), ("stage 1", 2), ("stage 2", 1)])
    offered = []

    def gather(values: list[int]) -> list[list[int]]:
        offered.append(values)
        # worker 1 died before backing up its last epoch: its latest is our previous
        return [values, [BEFORE, progress({"stage": "stage 1", "epochs_done": 1})] if others_lag else values]

    backup = EpochBackup(tmp_path, "fp", gather)
    assert offered == [[LATEST, BEFORE]]
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


def test_going_back_an_epoch_is_written_before_the_next_save(tmp_path):
    """The worker that goes back must not leave state.json naming the weights file its next save
    rewrites: a kill during that save would leave a backup that cannot be loaded."""
    weights = _train_and_back_up(tmp_path, [("stage 1", 1), ("stage 1", 2), ("stage 2", 1)])
    EpochBackup(tmp_path, "fp", lambda values: [values, [BEFORE]])
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert (state["stage"], state["epochs_done"], state["previous"]) == ("stage 1", 2, None)
    assert sorted(p.name for p in tmp_path.glob("*.weights.h5")) == ["stage-1-epoch-0002.weights.h5"]

    # Killed again before stage 2's first epoch is saved: a plain restart restores stage 1's end.
    restarted = EpochBackup(tmp_path, "fp")
    model = _model()
    assert restarted.resume("stage 1", model, np.random.default_rng(0)) == [1.0, 2.0]
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), weights[("stage 1", 2)])


def test_workers_without_a_shared_epoch_all_start_again(tmp_path):
    """The decision is taken from everything offered, so it is the same on every worker."""
    _train_and_back_up(tmp_path / "a", [("stage 1", 1), ("stage 1", 2), ("stage 2", 1)])
    assert EpochBackup(tmp_path / "a", "fp", lambda values: [values, [0]]).state is None  # worker 1 has none
    assert not (tmp_path / "a").exists(), "a backup nobody can share is removed, not resumed later"

    _train_and_back_up(tmp_path / "b", [("stage 1", 1), ("stage 1", 2), ("stage 2", 1)])
    one_epoch = progress({"stage": "stage 1", "epochs_done": 1})
    assert EpochBackup(tmp_path / "b", "fp", lambda values: [values, [one_epoch]]).state is None  # two behind


def test_every_worker_joins_the_exchange_even_without_a_backup(tmp_path):
    offered = []
    backup = EpochBackup(tmp_path / "empty", "fp", lambda values: offered.append(values) or [values, [5, 4]])
    assert offered == [[0]] and backup.state is None
    assert EpochBackup(None, "fp", lambda values: pytest.fail("no backups: nothing to agree on")).state is None


@pytest.mark.parametrize("damage", ["truncated json", "unknown stage", "weights file gone"])
def test_a_backup_that_cannot_be_resumed_is_ignored_with_a_warning(tmp_path, caplog, damage):
    _train_and_back_up(tmp_path, [("stage 1", 1), ("stage 1", 2)])
    state_file = tmp_path / STATE_FILE
    if damage == "truncated json":
        state_file.write_text(state_file.read_text()[:40])
    elif damage == "unknown stage":
        state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "stage": "stage 9"}))
    else:
        (tmp_path / "stage-1-epoch-0002.weights.h5").unlink()
    offered = []
    backup = EpochBackup(tmp_path, "fp", lambda values: offered.append(values) or [values])
    assert backup.state is None and offered == [[0]], "still joins the exchange, offering nothing"
    assert f"ignoring the backup in {state_file}" in caplog.text
