"""The one thing the training loop asks of a Keras backend: :class:`BackendAdapter`.

:func:`kfitx.fit_loop` is backend-neutral; each backend has one module
(:mod:`~kfitx.engine.backend_tf`, :mod:`~kfitx.engine.backend_jax`,
:mod:`~kfitx.engine.backend_torch`) with an ``Adapter`` subclass, made for the fit's
:class:`kfitx.runtime.Runtime` (its distribution included).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kfitx.runtime import Runtime

Logs = Mapping[str, Any]
#: ``run(data) -> logs``, or ``None`` when the data ran out; ``data`` is what the feed gives.
Run = Callable[[Any], Logs | None]


class BackendAdapter:
    """How the loop trains on one backend. Subclasses override what their backend needs.

    The feed gives a tf.data iterator (TensorFlow, one compiled call reads it) or a list of
    batches read in Python (``runtime.numpy_batches``: numpy batches on JAX and torch; also
    batch hooks and Python steps on TensorFlow).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def model_function(self, model: Any, steps_per_call: int) -> Run:
        """The model's own train step, ``steps_per_call`` batches per call."""
        raise NotImplementedError

    def compiled_step(self, model: Any, fn: Callable[[Any, Any], Logs]) -> Run | None:
        """``fn(model, batch)`` compiled once by the backend, or ``None`` where the backend has no such
        compilation (the loop then calls ``fn`` on each batch; its author may compile it)."""
        return None

    def as_batch(self, batch: Any) -> Any:
        """A batch as the step, a user's step and batch hooks get it."""
        return batch

    def epoch_begin(self, model: Any) -> None:
        """Before an epoch's first step."""

    def epoch_end(self, model: Any) -> None:
        """After an epoch's last step, before validation."""

    def train_end(self, model: Any) -> None:
        """Training ends (also after an error)."""
