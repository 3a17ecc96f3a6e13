"""Training under a ``tf.distribute`` strategy: what kfitx does differently there, in one place.

Separation of concerns:

* which strategy trains is resolved once per fit (:func:`kfitx.runtime.resolve`); every
  function here takes that :class:`~kfitx.runtime.Runtime`;
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

Nothing here runs without a ``tf.distribute`` strategy in the runtime, except
:func:`training` and :func:`chief_only`, which then change nothing.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, cast

from kfitx import _keras
from kfitx.runtime import Runtime

if TYPE_CHECKING:
    import keras
    import tensorflow as tf
    from tensorflow.distribute.experimental import ValueContext


def _tf() -> ModuleType:
    """TensorFlow, imported already (a ``tf.distribute`` strategy is in use)."""
    return cast(ModuleType, sys.modules.get("tensorflow"))


def _strategy(runtime: Runtime) -> tf.distribute.Strategy:
    """The runtime's ``tf.distribute`` strategy: every function here but :func:`training` and
    :func:`chief_only` runs only under one."""
    strategy = runtime.tf_strategy
    assert strategy is not None, "called without a tf.distribute strategy"
    return strategy


@contextlib.contextmanager
def training(model: keras.Model, runtime: Runtime) -> Iterator[None]:
    """The body of a fit: inside the model's strategy scope; Keras's multi-worker faults worked around."""
    strategy = runtime.tf_strategy
    if strategy is None:
        yield
        return
    with contextlib.ExitStack() as stack:
        tf = _tf()
        if not tf.distribute.has_strategy():
            stack.enter_context(strategy.scope())
        if runtime.multi_worker:
            stack.enter_context(_keras.multi_worker_fit(model))
        yield


def distribute(dataset: tf.data.Dataset | tf.distribute.DistributedDataset,
               runtime: Runtime) -> tf.distribute.DistributedDataset:
    """``dataset`` (of global batches) distributed over the replicas, as ``model.fit`` distributes it.

    With several workers each worker keeps its share of every batch
    (``AutoShardPolicy.DATA``): worker ``i`` of ``n`` trains on the ``i``-th
    ``1/n`` of each batch of *its own* dataset.
    """
    tf = _tf()
    if isinstance(dataset, tf.distribute.DistributedDataset):  # distributed by the user already
        return dataset
    if runtime.multi_worker:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return _strategy(runtime).experimental_distribute_dataset(dataset)


def split(batch: object, runtime: Runtime) -> tf.distribute.DistributedValues:
    """A global batch read in Python, split over the replicas as :func:`distribute` splits it.

    Replica ``r`` of ``R`` (all workers counted) gets rows ``[r*n/R, (r+1)*n/R)``
    of the batch of ``n`` rows; under several workers each worker's replicas cut
    their rows out of that worker's batch.
    """
    import keras

    tf = _tf()
    total = runtime.replicas
    leaves = [leaf for leaf in keras.tree.flatten(batch) if leaf is not None]
    n = tf.shape(leaves[0])[0] if leaves else 0

    def part(context: ValueContext) -> object:
        r = context.replica_id_in_sync_group
        begin, end = (r * n) // total, ((r + 1) * n) // total
        return keras.tree.map_structure(lambda t: None if t is None else t[begin:end], batch)

    return _strategy(runtime).experimental_distribute_values_from_function(part)


def reduce(outputs: Mapping[str, object], runtime: Runtime) -> Mapping[str, object]:
    """Per-replica outputs of ``strategy.run`` as single values: their mean over all replicas and workers.

    A step returns the model's metrics, already the same on every replica (their
    variables are summed across replicas as they are updated), so the mean is
    that value; a number that differs per replica is averaged.
    """
    tf = _tf()
    strategy, across_workers = _strategy(runtime), runtime.multi_worker

    def one(value: object) -> object:
        if across_workers or isinstance(value, tf.distribute.DistributedValues):
            return strategy.reduce("MEAN", value, axis=None)
        return value

    return tf.nest.map_structure(one, outputs)


def local_spec(spec: tf.TypeSpec) -> tf.TypeSpec:
    """The element spec of one replica's batch, from a distributed iterator's (``PerReplicaSpec``)."""
    return _tf().nest.map_structure(_keras.one_replica_spec, spec)


def build(model: keras.Model, batch: object, runtime: Runtime) -> None:
    """Builds the model's optimizer and metrics from one batch (or its spec) before the first distributed step.

    Under a ``tf.distribute`` strategy they cannot be created inside the compiled
    step (TensorFlow then fails with "You must feed a value for placeholder
    tensor"); ``model.fit`` builds them first too.
    """
    if not _keras.unbuilt(model):
        return
    with _strategy(runtime).scope():
        _keras.symbolic_build(model, batch)


# -- checkpoints and backups: the chief's -----------------------------------------------------------


def chief_only(callbacks: list[keras.callbacks.Callback], runtime: Runtime) -> list[keras.callbacks.Callback]:
    """``callbacks`` as this process runs them: only the chief writes checkpoints and backups.

    Saving takes part in the workers' collective operations, so every worker
    saves; on a worker that is not the chief, each ``ModelCheckpoint`` and
    ``BackupAndRestore`` is replaced by one writing into a scratch directory of
    its own, removed when training ends (as tf.keras did). Such a worker still
    *restores* from the chief's backup (the workers share one file system there).
    """
    if runtime.chief or not isinstance(callbacks, list):
        return callbacks
    import keras

    writers = (keras.callbacks.ModelCheckpoint, keras.callbacks.BackupAndRestore)
    return [_scratch_copy(c) if isinstance(c, writers) else c for c in callbacks]


def _scratch_copy(callback: keras.callbacks.Callback) -> keras.callbacks.Callback:
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

        def restore(logs: Mapping[str, float] | None = None) -> None:  # from the chief's backup
            callback.set_model(clone.model)
            callback.on_train_begin(logs)

        clone.on_train_begin = restore
    end = clone.on_train_end

    def on_train_end(logs: Mapping[str, float] | None = None) -> None:
        try:
            end(logs)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    clone.on_train_end = on_train_end
    return clone
