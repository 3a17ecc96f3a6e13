"""What a fit trains on: the Keras backend and the distribution, resolved once into a :class:`Runtime`.

``kfitx.fit`` calls :func:`resolve` once, before the plan is built; the plan carries the
result (``plan.runtime``) and every layer below reads it from there (the data layer
through ``Reading.runtime``). This module is the only one that asks Keras which backend
runs and TensorFlow which ``tf.distribute`` strategy trains; code outside a fit
(``kfitx bench``, the conformance kit) calls :func:`resolve` itself.

* :mod:`kfitx.runtime.distribute` -- what kfitx does differently under a ``tf.distribute`` strategy;
* :mod:`kfitx.runtime.startup` -- ``quiet_start``: TensorFlow imported without its C++ start-up lines;
* :mod:`kfitx.runtime.lazy` -- type checks that import nothing;
* :mod:`kfitx.runtime.files` -- JSON files several processes share, written atomically.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["BACKENDS", "LOCAL", "Runtime", "resolve"]

#: The Keras backends kfitx trains on.
BACKENDS = ("tensorflow", "jax", "torch")


@dataclass(frozen=True)
class Runtime:
    """The backend and the distribution one fit trains under.

    Attributes:
        backend: Keras's backend: ``"tensorflow"``, ``"jax"`` or ``"torch"``.
        tf_strategy: The ``tf.distribute`` strategy training the model (the one it was
            built under, else the one in scope), ``None`` for TensorFlow's default.
        replicas: Replicas in sync, all workers together (1 without a strategy).
        multi_worker: A ``MultiWorkerMirroredStrategy`` over several processes.
        chief: This process writes checkpoints and backups (the chief, or the only process).
        jax_distribution: The ``keras.distribution`` in effect on JAX (``DataParallel``, ...), or ``None``.
    """

    backend: str = "tensorflow"
    tf_strategy: Any = None
    replicas: int = 1
    multi_worker: bool = False
    chief: bool = True
    jax_distribution: Any = None

    @property
    def numpy_batches(self) -> bool:
        """The backend's steps take numpy batches read in Python (JAX, torch), not a tf.data iterator."""
        return self.backend != "tensorflow"

    @property
    def distributed_scope(self) -> str | None:
        """The ``tf.distribute`` strategy's class name when it has several replicas, else ``None``."""
        return type(self.tf_strategy).__name__ if self.replicas > 1 else None


#: No distribution, TensorFlow: what a :class:`kfitx.data.Reading` made outside a fit reads for.
LOCAL = Runtime()


def resolve(model: Any = None) -> Runtime:
    """The :class:`Runtime` of a fit of ``model`` started now (or of this process, without a model)."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        return Runtime(backend, jax_distribution=keras.distribution.distribution())
    if backend != "tensorflow" or "tensorflow" not in sys.modules:
        return Runtime(backend)
    tf = sys.modules["tensorflow"]
    strategy = getattr(model, "distribute_strategy", None) if model is not None else None
    if strategy is None or strategy is tf.distribute.get_strategy():
        strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
    if strategy is None:
        return Runtime(backend)
    multi = _multi_worker(tf, strategy)
    return Runtime(backend, tf_strategy=strategy, replicas=int(strategy.num_replicas_in_sync), multi_worker=multi,
                   chief=not multi or bool(strategy.extended.should_checkpoint))


def _multi_worker(tf: Any, strategy: Any) -> bool:
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    resolver = strategy.cluster_resolver
    if resolver is None:
        return False
    return sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1
