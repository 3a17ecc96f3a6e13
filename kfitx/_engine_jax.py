"""The training engine's JAX adapter (see :mod:`kfitx._engine_tf` for the interface).

``model.fit`` on JAX keeps the variables' values outside the model between
steps and hands them to its jitted train function with each group of numpy
batches; callbacks that read ``self.model`` put them back (Keras's
``jax_state_sync``), and so does the end of every epoch. This adapter runs the
model's own step that way, through :mod:`kfitx._keras`, so a fit through
kfitx's loop trains, and syncs, exactly as ``model.fit`` does. Under a
``keras.distribution`` (``DataParallel``, ...) each batch is laid out over the
devices as ``model.fit`` lays it out.

A step function of the user's is called in Python on each batch with the
model's variables live (as ``train_on_batch`` leaves them): on JAX such a step
is written with ``model.stateless_call`` and ``jax.grad`` and jitted by its
author (``examples/loop_step_jax.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kfitx import _keras

Logs = Mapping[str, Any]

#: The feed gives groups of numpy batches (``Reading.numpy``).
NUMPY = True


def epoch_begin(model: Any) -> None:
    _keras.jax_state_begin(model)


def epoch_end(model: Any) -> None:
    model.jax_state_sync()


def train_end(model: Any) -> None:
    _keras.jax_state_end(model)


def model_function(model: Any, steps_per_call: int) -> Callable[[Any], Logs | None]:
    """The model's own train step on a list of up to ``steps_per_call`` batches (one compiled call)."""
    import keras

    train = _keras.train_function(model)
    distributed = keras.distribution.distribution() is not None

    last: list[Any] = [None]  # the state the previous step returned (donated to the next one)

    def run(data: Any) -> Logs | None:
        if not data:
            return None
        batches = [_keras.jax_distribute(batch) for batch in data] if distributed else data
        logs, last[0] = train(_keras.jax_state(model, last[0]), iter(batches))
        _keras.jax_keep_state(model, last[0])
        return logs

    return run


class CompiledStep:
    """``fn(model, batch) -> logs`` called on each batch of the list it is given, the variables live."""

    def __init__(self, model: Any, fn: Callable[[Any, Any], Logs], *, autograph: bool = True) -> None:
        self.model, self.fn = model, fn

    def __call__(self, data: Any) -> Logs | None:
        logs = None
        for batch in data or ():
            logs = self.fn(self.model, batch)
        return logs
