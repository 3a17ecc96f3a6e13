"""Training under a ``tf.distribute`` strategy: what kfitx does differently there, in one place.

Separation of concerns:

* which strategy trains: the model's (``model.distribute_strategy``: the one it
  was built under), or the one in scope; :func:`strategy_of`, :func:`multi_worker`;
* the fit's body (:func:`training`, entered by ``FitPlan.grouped``): inside the
  model's strategy scope, and under ``MultiWorkerMirroredStrategy`` with Keras's
  two multi-worker faults worked around (:func:`kfitx._keras.multi_worker_fit`),
  so that ``model.fit`` -- and every strategy delegating to it -- trains there;
* data: a dataset of *global* batches is distributed as ``model.fit``
  distributes it (:func:`distribute`; several workers: each keeps its share of
  every batch, ``AutoShardPolicy.DATA``); a batch read in Python is split over the
  replicas the same way (:func:`split`);
* results: per-replica outputs reduced to one value (:func:`reduce`);
* files: only the chief writes checkpoints and backups (:func:`chief_only`).

Nothing here runs without TensorFlow: every function returns early when
TensorFlow is not imported or no strategy is in use.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from kfitx import _keras


def _tf() -> Any:
    return sys.modules.get("tensorflow")


def strategy_of(model: Any = None) -> Any | None:
    """The ``tf.distribute`` strategy training ``model`` (or the one in scope), ``None`` for the default."""
    tf = _tf()
    if tf is None:
        return None
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    strategy = getattr(model, "distribute_strategy", None) if model is not None else None
    if strategy is None or strategy is tf.distribute.get_strategy():
        strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
    return strategy


def replicas(strategy: Any) -> int:
    """Replicas in sync (all workers together); 1 without a strategy."""
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def multi_worker(strategy: Any) -> bool:
    """Whether ``strategy`` is a ``MultiWorkerMirroredStrategy`` with several workers."""
    tf = _tf()
    if tf is None or strategy is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    resolver = strategy.cluster_resolver
    if resolver is None:
        return False
    return sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1


def is_chief(strategy: Any) -> bool:
    """Whether this process writes files: the chief (``chief``, else ``worker`` 0), or the only process."""
    return strategy is None or not multi_worker(strategy) or bool(strategy.extended.should_checkpoint)


@contextlib.contextmanager
def training(model: Any) -> Iterator[None]:
    """The body of a fit: inside the model's strategy scope; Keras's multi-worker faults worked around."""
    strategy = strategy_of(model)
    if strategy is None:
        yield
        return
    with contextlib.ExitStack() as stack:
        tf = _tf()
        if not tf.distribute.has_strategy():
            stack.enter_context(strategy.scope())
        if multi_worker(strategy):
            stack.enter_context(_keras.multi_worker_fit(model))
        yield


def distribute(dataset: Any, strategy: Any) -> Any:
    """``dataset`` (of global batches) distributed over the replicas, as ``model.fit`` distributes it.

    With several workers each worker keeps its share of every batch
    (``AutoShardPolicy.DATA``): worker ``i`` of ``n`` trains on the ``i``-th
    ``1/n`` of each batch of *its own* dataset.
    """
    tf = _tf()
    if isinstance(dataset, tf.distribute.DistributedDataset):  # distributed by the user already
        return dataset
    if multi_worker(strategy):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return strategy.experimental_distribute_dataset(dataset)


def split(batch: Any, strategy: Any) -> Any:
    """A global batch read in Python, split over the replicas as :func:`distribute` splits it.

    Replica ``r`` of ``R`` (all workers counted) gets rows ``[r*n/R, (r+1)*n/R)``
    of the batch of ``n`` rows; under several workers each worker's replicas cut
    their rows out of that worker's batch.
    """
    import keras

    tf = _tf()
    total = replicas(strategy)
    leaves = [leaf for leaf in keras.tree.flatten(batch) if leaf is not None]
    n = tf.shape(leaves[0])[0] if leaves else 0

    def part(context: Any) -> Any:
        r = context.replica_id_in_sync_group
        begin, end = (r * n) // total, ((r + 1) * n) // total
        return keras.tree.map_structure(lambda t: None if t is None else t[begin:end], batch)

    return strategy.experimental_distribute_values_from_function(part)


def reduce(outputs: Any, strategy: Any) -> Any:
    """Per-replica outputs of ``strategy.run`` as single values: their mean over all replicas and workers.

    A step returns the model's metrics, already the same on every replica (their
    variables are summed across replicas as they are updated), so the mean is
    that value; a number that differs per replica is averaged.
    """
    tf = _tf()
    across_workers = multi_worker(strategy)

    def one(value: Any) -> Any:
        if across_workers or isinstance(value, tf.distribute.DistributedValues):
            return strategy.reduce("MEAN", value, axis=None)
        return value

    return tf.nest.map_structure(one, outputs)


def local_spec(spec: Any) -> Any:
    """The element spec of one replica's batch, from a distributed iterator's (``PerReplicaSpec``)."""
    tf = _tf()

    def one(s: Any) -> Any:
        specs = getattr(s, "_value_specs", None)  # tf.distribute's PerReplicaSpec
        return specs[0] if specs else s

    return tf.nest.map_structure(one, spec)


def build(model: Any, batch: Any, strategy: Any) -> None:
    """Builds the model's optimizer and metrics from one batch (or its spec) before the first distributed step.

    Under a ``tf.distribute`` strategy they cannot be created inside the compiled
    step (TensorFlow then fails with "You must feed a value for placeholder
    tensor"); ``model.fit`` builds them first too.
    """
    if not _keras.unbuilt(model):
        return
    with strategy.scope():
        _keras.symbolic_build(model, batch)


# -- checkpoints and backups: the chief's -----------------------------------------------------------


def chief_only(callbacks: list[Any], model: Any) -> list[Any]:
    """``callbacks`` as this process runs them: only the chief writes checkpoints and backups.

    Saving takes part in the workers' collective operations, so every worker
    saves; on a worker that is not the chief, each ``ModelCheckpoint`` and
    ``BackupAndRestore`` is replaced by one writing into a scratch directory of
    its own, removed when training ends (as tf.keras did). Such a worker still
    *restores* from the chief's backup (the workers share one file system there).
    """
    strategy = strategy_of(model)
    if is_chief(strategy) or not isinstance(callbacks, list):
        return callbacks
    import keras

    writers = (keras.callbacks.ModelCheckpoint, keras.callbacks.BackupAndRestore)
    return [_scratch_copy(c) if isinstance(c, writers) else c for c in callbacks]


def _scratch_copy(callback: Any) -> Any:
    """``callback`` writing into a scratch directory, removed at the end of training."""
    import copy
    import os
    import shutil
    import tempfile

    import keras

    scratch = tempfile.mkdtemp(prefix="kfitx-worker-")
    if isinstance(callback, keras.callbacks.ModelCheckpoint):
        clone = copy.copy(callback)
        clone.filepath = os.path.join(scratch, os.path.basename(str(callback.filepath)))
    else:
        clone = keras.callbacks.BackupAndRestore(os.path.join(scratch, "backup"), save_freq=callback.save_freq,
                                                 double_checkpoint=callback.double_checkpoint)

        def restore(logs: Any = None) -> None:  # from the chief's backup
            callback.set_model(clone.model)
            callback.on_train_begin(logs)

        clone.on_train_begin = restore
    end = clone.on_train_end

    def on_train_end(logs: Any = None) -> None:
        try:
            end(logs)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    clone.on_train_end = on_train_end
    return clone
