"""Keras's JAX trainer: the state ``model.fit`` keeps outside the model between steps, the layout of batches over
a ``keras.distribution``, and (from Keras 3.16) the super batches its ``lax.scan`` of grouped steps reads. Part of
the boundary (:mod:`kfitx._keras`), re-exported there: callers use ``_keras.<name>``; each pinned in
``tests/test_keras_boundary.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeAlias

from kfitx._keras.versions import attribute, internal
from kfitx.errors import KerasVersionError

if TYPE_CHECKING:
    import jax
    import keras

#: What ``model.fit`` keeps outside the model between JAX steps: the values of the trainable, non-trainable,
#: optimizer and metrics variables, in that order.
JaxState: TypeAlias = "tuple[list[jax.Array], ...]"
#: ``train(state, batches) -> (logs, state)``: the model's JAX train function.
JaxTrain: TypeAlias = "Callable[[JaxState, Iterable[object]], tuple[Mapping[str, object], JaxState]]"


def _train_function(model: keras.Model) -> Callable[..., tuple[Mapping[str, object], JaxState]]:
    model.make_train_function()
    return model.train_function


def scans_steps_on_jax() -> bool:
    """Whether Keras's JAX trainer runs grouped steps in one ``lax.scan`` over a *super batch* (the group's batches
    stacked on a new first axis), which its data adapters then make (``get_jax_iterator(super_batch=...)``, Keras
    3.16). Its train function then reads one item per call: a super batch, or a ``PartialBatchList`` of the
    batches left at the end of an epoch, which it runs one by one (:func:`jax_train_function`)."""
    import inspect

    adapter = internal("keras.src.trainers.data_adapters.data_adapter", "DataAdapter", "grouping steps on JAX")
    return "super_batch" in inspect.signature(adapter.get_jax_iterator).parameters


_SCAN = "grouping steps on JAX (Keras's lax.scan over a super batch)"


def feeds_jax_scan() -> bool:
    """Whether kfitx can hand Keras's JAX scan its super batches: the helpers Keras's own epoch iterator makes them
    with are where :func:`jax_train_function` reads them. ``False`` on a Keras without the scan, and on one that
    has it but moved them (the plan then runs one step per call and says why)."""
    if not scans_steps_on_jax():
        return False
    try:
        internal("keras.src.trainers.data_adapters.data_adapter_utils", "super_batch_iterator", _SCAN)
        internal("keras.src.trainers.data_adapters.data_adapter_utils", "PartialBatchList", _SCAN)
        internal("keras.src.backend.jax.trainer", "_distribute_data", _SCAN)
    except KerasVersionError:
        return False
    return True


def jax_train_function(model: keras.Model, distribute: bool) -> JaxTrain:
    """The model's JAX train function as ``train(state, batches) -> (logs, state)``, one step per batch of the
    list (at most ``steps_per_execution`` of them), each batch laid out over the ``keras.distribution`` in effect
    when ``distribute`` is set.

    Up to Keras 3.15 the train function reads ``steps_per_execution`` batches from an iterator. From 3.16 (where
    :func:`feeds_jax_scan`) it reads one item: the group stacked into a super batch, which it trains on in one
    ``lax.scan``, or what is left at an epoch's end as a ``PartialBatchList``, which it runs batch by batch. The
    group is made here as Keras's ``JAXEpochIterator`` makes it (``super_batch_iterator``, ``_distribute_data``
    with ``is_super_batch``).
    """
    train = _train_function(model)
    distribute_data = jax_distribute if distribute else (lambda batch, **_: batch)
    steps = int(model.steps_per_execution)
    if steps <= 1 or not scans_steps_on_jax():
        return lambda state, batches: train(state, iter([distribute_data(b) for b in batches]))
    utils = internal("keras.src.trainers.data_adapters.data_adapter_utils", "", _SCAN)

    def scanned(state: JaxState, batches: Iterable[object]) -> tuple[Mapping[str, object], JaxState]:
        group = next(utils.super_batch_iterator(iter(batches), steps))
        if isinstance(group, utils.PartialBatchList):
            group = utils.PartialBatchList([distribute_data(b) for b in group])
        else:
            group = distribute_data(group, is_super_batch=True)
        return train(state, iter([group]))

    return scanned


# JAX: between steps ``model.fit`` keeps the variables' values outside the model
# (``model._jax_state``) and puts them back when a callback reads ``self.model``
# (``jax_state_sync``) or the epoch ends; kfitx's loop does the same, through these.


def jax_state(model: keras.Model, last: JaxState | None) -> JaxState:
    """The state the JAX train function takes: the ``last`` one a step returned, or, when the
    variables were synced since (a callback read ``self.model``, a new epoch), the variables' values."""
    if attribute(model, "_jax_state_synced", "kfitx's loop on JAX") or last is None:
        get_state = attribute(model, "_get_jax_state", "kfitx's loop on JAX")
        state = get_state(trainable_variables=True, non_trainable_variables=True, optimizer_variables=True,
                          metrics_variables=True, purge_model_variables=True)
        model._jax_state_synced = False
        return state
    return last


def jax_keep_state(model: keras.Model, state: JaxState) -> None:
    """Keeps the state a JAX step returned where callbacks (and :func:`jax_state_sync`) find it."""
    names = ("trainable_variables", "non_trainable_variables", "optimizer_variables", "metrics_variables")
    model._jax_state = dict(zip(names, state))


def jax_state_begin(model: keras.Model) -> None:
    """An epoch starts as in ``model.fit``: the next step reads the variables."""
    model._jax_state_synced = True


def jax_state_sync(model: keras.Model) -> None:
    """An epoch ends: the variables get the state kept outside them (``JAXTrainer.jax_state_sync``)."""
    attribute(model, "jax_state_sync", "kfitx's loop on JAX")()


def jax_state_end(model: keras.Model) -> None:
    """Training ends: the variables hold the last state, nothing is kept outside them."""
    attribute(model, "jax_state_sync", "kfitx's loop on JAX")()
    model._jax_state = None


def jax_distribute(batch: object, is_super_batch: bool = False) -> object:
    """A batch (or, from Keras 3.16, a super batch: a group stacked on a new first axis) laid out over the devices
    of the ``keras.distribution`` in effect, as ``model.fit`` lays it out."""
    distribute = internal("keras.src.backend.jax.trainer", "_distribute_data",
                          "kfitx's loop under a keras.distribution on JAX")
    return distribute(batch, is_super_batch=True) if is_super_batch else distribute(batch)
