"""tf.distribute strategies for training, and where each worker of a multi-worker run writes.

- ``default``: one device.
- ``mirrored``: every GPU of this machine (every logical CPU when there is none).
- ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy`` over the machines listed in the
  ``TF_CONFIG`` environment variable (``{"cluster": {"worker": ["host:port", ...]}, "task":
  {"type": "worker", "index": i}}``); every worker runs the same command and holds the data
  folder. Gradients are all-reduced every step, so every worker ends with the same weights.

As the Keras multi-worker guide recommends, every worker runs the whole program (saving can
involve collective operations), but only the chief (worker 0, or the task of type ``chief``)
writes the run folder; every other worker writes to ``<run>/workertemp_<index>`` and deletes it
at the end. The strategy must exist before TensorFlow runs its first operation.
"""

from __future__ import annotations

import logging
import shutil
import weakref
from pathlib import Path

log = logging.getLogger(__name__)

WORKER_TEMP_PREFIX = "workertemp_"


def make_strategy(name: str):
    """The tf.distribute strategy called ``name`` (train.config.STRATEGIES)."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        log.info("multi-worker strategy: task %s %s of %d replicas", resolver.task_type, resolver.task_id,
                 strategy.num_replicas_in_sync)
        return strategy
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def is_chief(strategy) -> bool:
    """True for a single-worker strategy and for the chief of a multi-worker one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    task_id = getattr(resolver, "task_id", None)
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0)


def output_dir(run_dir: Path, strategy) -> Path:
    """Where this worker writes: the run folder for the chief, a folder of its own for the others."""
    if is_chief(strategy):
        return Path(run_dir)
    return Path(run_dir) / f"{WORKER_TEMP_PREFIX}{strategy.cluster_resolver.task_id}"


def discard_worker_output(out_dir: Path, strategy) -> None:
    """Deletes a non-chief worker's folder once the run is complete."""
    if not is_chief(strategy):
        shutil.rmtree(out_dir, ignore_errors=True)


def is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_values_gatherer(strategy):
    """Under a multi-worker strategy, ``gather(values)``: every replica's list of at most two
    non-negative integers (every worker's, once per replica it runs), through one all-reduce that
    each worker must join; what train.checkpoint.EpochBackup and the precision choice agree
    through. None for a single-worker strategy (nothing to agree on)."""
    if not is_multi_worker(strategy):
        return None
    import tensorflow as tf

    replicas, width = strategy.num_replicas_in_sync, 2

    def gather(values: list[int]) -> list[list[int]]:
        if len(values) > width:
            raise ValueError(f"at most {width} values per worker, got {values}")
        padded = [float(v) for v in values] + [-1.0] * (width - len(values))  # -1: no value

        def own_row():
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            return tf.one_hot(replica, replicas, dtype=tf.float64)[:, None] * tf.constant(padded, tf.float64)[None, :]

        summed = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.function(own_row)), axis=None)
        return [[int(v) for v in row if v >= 0] for row in summed.numpy()]

    return gather


def epoch_batches(x, y, batch_size: int):
    """The epoch as a ``tf.data.Dataset`` of ``(x, y)`` batches in order, read from ``x`` and ``y``
    (arrays or train.features.Rows, nested in lists/tuples) one batch at a time by a generator,
    two batches prefetched; and its first batch (numpy). The batches are exactly those of
    ``model.fit(x, y, batch_size, shuffle=False)``, the last one possibly short."""
    import tensorflow as tf

    from train.features import Rows

    data = (tuple(x) if isinstance(x, list) else x, y)
    count = len(tf.nest.flatten(data)[0])

    def batch(start: int):
        stop = start + batch_size
        return tf.nest.map_structure(lambda v: v.read(start, stop) if isinstance(v, Rows) else v[start:stop], data)

    first = batch(0)
    signature = tf.nest.map_structure(lambda a: tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype)), first)

    def generate():
        for start in range(0, count, batch_size):
            yield batch(start)

    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    steps = -(-count // batch_size)
    return dataset.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2), first


def fit_one_epoch(model, strategy, x, y, batch_size: int, verbose: int) -> float:
    """One epoch of ``model.fit`` over :func:`epoch_batches`; returns its mean loss.

    The batches are read one at a time (x may be train.features.Rows over a sharded cache), so an
    epoch's inputs are never all in memory. Under a multi-worker strategy, Keras 3.15's ``fit``
    fails twice: its eager symbolic build calls ``strategy.reduce`` on a per-replica batch
    ("Attempt to convert a value (PerReplica...)"), and its per-step metric reduction asks for a
    mean over axis 0 of the scalar loss ("Invalid reduction dimension 0"); keras-team/keras#20585
    (open). So there the epoch runs the model's own ``train_step`` (the same forward pass, loss
    scaling and gradient all-reduce as ``fit``) through ``strategy.run`` over the distributed
    batches. Other strategies use ``fit`` itself.
    """
    dataset, first = epoch_batches(x, y, batch_size)
    if not is_multi_worker(strategy):
        result = model.fit(dataset, epochs=1, shuffle=False, verbose=verbose)
        return float(result.history["loss"][-1])
    with strategy.scope():
        if model not in _STEPS:
            model._symbolic_build(data_batch=first)  # what fit does first, without the failing reduce
            if not model.optimizer.built:  # (a resumed run has built it to load its state)
                model.optimizer.build(model.trainable_variables)
            _STEPS[model] = _train_step(model, strategy)
        step = _STEPS[model]
        for metric in model.metrics:
            metric.reset_state()
        loss = None
        for batch in strategy.experimental_distribute_dataset(dataset):
            loss = step(batch)
    return float(loss)


_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
"""The train step of every model fitted under a multi-worker strategy, traced once per model."""


def _train_step(model, strategy):
    import tensorflow as tf

    @tf.function
    def step(batch):
        logs = strategy.run(model.train_step, args=(batch,))
        # Each worker's loss tracker averages its own share of the batches so far; equal shares.
        return strategy.reduce("MEAN", logs["loss"], axis=None)

    return step
