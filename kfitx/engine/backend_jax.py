"""The training engine's JAX adapter (see :mod:`kfitx.engine.backend_tf` for the interface).

``model.fit`` on JAX keeps the variables' values outside the model between
steps and hands them to its jitted train function with each group of numpy
batches; callbacks that read ``self.model`` put them back (Keras's
``jax_state_sync``), and so does the end of every epoch. This adapter runs the
model's own step that way, through :mod:`kfitx._keras`, so a fit through
kfitx's loop trains, and syncs, exactly as ``model.fit`` does. Under a
``keras.distribution`` (``DataParallel``, ...) each batch is laid out over the
devices as ``model.fit`` lays it out (a batch that does not divide over them is
a :class:`kfitx.DataError`, where ``model.fit`` raises JAX's sharding error). From Keras 3.16,
grouped steps run in one ``lax.scan`` over the group's batches stacked (a *super batch*),
made as Keras's own epoch iterator makes it (``_keras.jax_train_function``).

A step function of the user's is called in Python on each batch by the engine
(this adapter has no ``CompiledStep``), with the model's variables live (as
``train_on_batch`` leaves them): on JAX such a step is written with
``model.stateless_call`` and ``jax.grad`` and jitted by its author
(``examples/custom_loop_jax.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kfitx import _keras
from kfitx.engine.adapter import BackendAdapter, Batch, Data, Logs, Run
from kfitx.errors import DataError, message

if TYPE_CHECKING:
    import keras

    from kfitx._keras.jax_trainer import JaxState


class Adapter(BackendAdapter):
    """JAX: Keras's train function, the model's state kept outside it between steps (see the module docstring)."""

    def epoch_begin(self, model: keras.Model) -> None:
        _keras.jax_state_begin(model)

    def epoch_end(self, model: keras.Model) -> None:
        _keras.jax_state_sync(model)

    def train_end(self, model: keras.Model) -> None:
        _keras.jax_state_end(model)

    def model_function(self, model: keras.Model, steps_per_call: int) -> Run:
        return model_function(model, steps_per_call, self.runtime.jax_distribution)


def model_function(model: keras.Model, steps_per_call: int,
                   distribution: keras.distribution.Distribution | None) -> Run:
    """The model's own train step on a list of up to ``steps_per_call`` batches (one compiled call: from Keras
    3.16 one ``lax.scan`` over the group stacked, as ``model.fit`` feeds it), each batch laid out over the devices
    of ``distribution`` (a ``keras.distribution``, or ``None``)."""
    train = _keras.jax_train_function(model, distribute=distribution is not None)

    last: list[JaxState | None] = [None]  # the state the previous step returned (donated to the next one)

    def run(data: Data) -> Logs | None:
        if not data:
            return None
        if distribution is not None:
            for batch in data:
                _check_divides(batch, distribution)
        logs, state = train(_keras.jax_state(model, last[0]), data)
        last[0] = state
        _keras.jax_keep_state(model, state)
        return logs

    return run


def _check_divides(batch: Batch, distribution: keras.distribution.Distribution) -> None:
    """Raises :class:`kfitx.DataError` when ``batch`` cannot be split over the devices of ``distribution`` along its
    first axis as ``model.fit`` splits it (where ``model.fit`` raises JAX's sharding error)."""
    import keras

    mesh, axis = distribution.device_mesh, distribution.batch_dim_name
    shards = mesh.shape[mesh.axis_names.index(axis)] if axis in mesh.axis_names else 1
    sizes = sorted({int(leaf.shape[0]) for leaf in keras.tree.flatten(batch) if getattr(leaf, "ndim", 0)})
    if any(size % shards for size in sizes):
        raise DataError(message(
            f"Batches that divide over the {shards} devices of keras.distribution.{type(distribution).__name__} "
            f"(each device takes an equal share of every batch)", f"a batch of {', '.join(map(str, sizes))} samples",
            f"Choose a batch_size and a number of samples that are multiples of {shards} (the last batch holds "
            "what is left over)."))
