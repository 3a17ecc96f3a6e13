"""The one thing the training loop asks of a Keras backend: :class:`BackendAdapter`.

:func:`kfitx.fit_loop` is backend-neutral; each backend has one module
(:mod:`~kfitx.engine.backend_tf`, :mod:`~kfitx.engine.backend_jax`,
:mod:`~kfitx.engine.backend_torch`) with an ``Adapter`` subclass, made for the fit's
:class:`kfitx.runtime.Runtime` (its distribution included).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from kfitx.runtime import Runtime

if TYPE_CHECKING:
    import keras

#: One batch: ``x``, ``(x, y)`` or ``(x, y, sample_weight)``, each a nested structure of arrays or
#: backend tensors. The engine only passes it along (Keras's ops and the user's step read it).
Batch = object
#: What one compiled call reads, as the feed gives it: a list of batches read in Python, or an
#: iterator the compiled function pulls from (a tf.data iterator on TensorFlow).
Data = list[Batch] | Iterator[Batch]
#: A step's logs: metric name to value (a backend scalar tensor, a numpy value or a float).
Logs = Mapping[str, object]
#: ``run(data) -> logs``, or ``None`` when the data ran out; ``data`` is what the feed gives.
Run = Callable[[Data], Logs | None]
#: A function of one batch trained by the engine: ``fn(model, batch) -> logs``.
StepFunction = Callable[["keras.Model", Batch], Logs]


class BackendAdapter:
    """How the loop trains on one backend. Subclasses override what their backend needs.

    The feed gives a tf.data iterator (TensorFlow, one compiled call reads it) or a list of
    batches read in Python (``runtime.numpy_batches``: numpy batches on JAX and torch; also
    batch hooks and Python steps on TensorFlow).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def model_function(self, model: keras.Model, steps_per_call: int) -> Run:
        """The model's own train step, ``steps_per_call`` batches per call."""
        raise NotImplementedError

    def compiled_step(self, model: keras.Model, fn: StepFunction) -> Run | None:
        """``fn(model, batch)`` compiled once by the backend, or ``None`` where the backend has no such
        compilation (the loop then calls ``fn`` on each batch; its author may compile it)."""
        return None

    def as_batch(self, batch: Batch) -> Batch:
        """A batch as the step, a user's step and batch hooks get it."""
        return batch

    def epoch_begin(self, model: keras.Model) -> None:
        """Before an epoch's first step."""

    def epoch_end(self, model: keras.Model) -> None:
        """After an epoch's last step, before validation."""

    def train_end(self, model: keras.Model) -> None:
        """Training ends (also after an error)."""
