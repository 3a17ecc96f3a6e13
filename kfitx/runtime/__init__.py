"""What a fit trains on: the Keras backend and the distribution, resolved once into a :class:`Runtime`.

``kfitx.fit`` calls :func:`resolve` once, before the plan is built; the plan carries the
result (``plan.runtime``) and every layer below reads it from there (the data layer
through ``Reading.runtime``). This module is the only one that asks Keras which backend
runs, TensorFlow which ``tf.distribute`` strategy trains, and torch whether a ``torch.distributed``
process group is up; code outside a fit
(``kfitx bench``, the conformance kit) calls :func:`resolve` itself.

* :mod:`kfitx.runtime.distribute` -- what kfitx does differently under a ``tf.distribute`` strategy;
* :mod:`kfitx.runtime.startup` -- ``quiet_start``: TensorFlow imported without its C++ start-up lines;
* :mod:`kfitx.runtime.lazy` -- type checks that import nothing;
* :mod:`kfitx.runtime.files` -- JSON files several processes share, written atomically.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    import tensorflow as tf
    import torch

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
        torch_ddp: On torch, a ``torch.distributed`` process group is initialized: Keras (from 3.16) trains the
            model wrapped in ``DistributedDataParallel``, its gradients averaged over ``replicas`` processes.
    """

    backend: str = "tensorflow"
    tf_strategy: tf.distribute.Strategy | None = None
    replicas: int = 1
    multi_worker: bool = False
    chief: bool = True
    jax_distribution: keras.distribution.Distribution | None = None
    torch_ddp: bool = False

    @property
    def numpy_batches(self) -> bool:
        """The backend's steps take numpy batches read in Python (JAX, torch), not a tf.data iterator."""
        return self.backend != "tensorflow"

    @property
    def distributed(self) -> bool:
        """Several replicas or processes train this fit together (each runs the same steps)."""
        return self.replicas > 1 or self.multi_worker or self.jax_distribution is not None or self.torch_ddp

    @property
    def checks_label_range(self) -> bool:
        """Whether sparse class labels out of the model's range fail the fit here (TensorFlow, torch); Keras on
        JAX trains on them without a word, so kfitx warns there instead of refusing what ``model.fit`` takes."""
        return self.backend != "jax"

    @property
    def needs_a_loss(self) -> bool:
        """Whether Keras's own train and test steps refuse a model with no loss at all ("No loss to compute":
        TensorFlow, torch); on JAX Keras computes a loss of 0 instead."""
        return self.backend != "jax"

    def one_step_per_call(self, *, automatic: bool, dense: bool) -> tuple[str, bool] | None:
        """Why Keras trains one step per call on this backend for this fit, and whether Keras refuses more (an
        explicit ``steps_per_execution`` is then refused too); ``None`` where steps may be grouped.

        Args:
            automatic: kfitx chooses the number (nobody asked for one).
            dense: The fit's data is known to hold no sparse tensor before it is read.
        """
        import keras

        from kfitx import _keras

        if self.backend == "torch" and not _keras.groups_steps_on_torch():
            return f"Keras {keras.__version__} runs one step per call on torch", True
        if self.backend == "jax" and _keras.scans_steps_on_jax():
            if not _keras.feeds_jax_scan():  # model.fit takes the number: kfitx says why, never refuses it
                return (f"Keras {keras.__version__} groups steps on JAX in a lax.scan over stacked batches, made "
                        "by helpers kfitx does not find in this version", False)
            if automatic and not dense:
                return (f"Keras {keras.__version__} groups steps on JAX over dense batches only, and this data "
                        "may hold sparse tensors", False)
        return None

    def random_state(self) -> torch.Tensor | None:
        """The backend's own global random state beside Python's and numpy's (torch's generator), or ``None``."""
        torch = sys.modules.get("torch") if self.backend == "torch" else None
        return None if torch is None else torch.get_rng_state()

    def set_random_state(self, state: torch.Tensor | None) -> None:
        """Puts back what :meth:`random_state` returned."""
        if state is not None:
            sys.modules["torch"].set_rng_state(state)

    @property
    def distributed_scope(self) -> str | None:
        """The ``tf.distribute`` strategy's class name when it has several replicas, else ``None``."""
        return type(self.tf_strategy).__name__ if self.tf_strategy is not None and self.replicas > 1 else None


#: No distribution, TensorFlow: what a :class:`kfitx.data.Reading` made outside a fit reads for.
LOCAL = Runtime()


def resolve(model: keras.Model | None = None) -> Runtime:
    """The :class:`Runtime` of a fit of ``model`` started now (or of this process, without a model)."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        return Runtime(backend, jax_distribution=keras.distribution.distribution())
    if backend == "torch":
        return _torch(backend)
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


def _multi_worker(tf: ModuleType, strategy: object) -> bool:
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    resolver = strategy.cluster_resolver
    if resolver is None:
        return False
    return sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1


def _torch(backend: str) -> Runtime:
    """torch: under an initialized ``torch.distributed`` process group (``torchrun``, or
    ``init_process_group`` in the script), each process is one replica; rank 0 is the chief."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return Runtime(backend)
    return Runtime(backend, replicas=int(dist.get_world_size()), multi_worker=False, chief=dist.get_rank() == 0,
                   torch_ddp=True)
