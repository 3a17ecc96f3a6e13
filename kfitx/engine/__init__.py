"""The training engine: everything ``model.fit`` does around the steps, once, for strategies that run their own loop.

Separation of concerns:

* the feed (``plan.train.feed(...)``, :mod:`kfitx.data.feed`) -- where each
  epoch's batches come from, in groups ``(first step, last step, data)``; any
  object with ``epoch(epoch)`` and ``num_batches`` will do;
* the step (:class:`TrainStep`) -- what trains on a batch: the model's own
  train step (several per compiled call where the plan allows), a function of
  one batch that the engine compiles, or a Python function, after optional
  batch hooks;
* the backend adapter (:class:`kfitx.engine.adapter.BackendAdapter`; one module per
  backend: :mod:`~kfitx.engine.backend_tf`, :mod:`~kfitx.engine.backend_jax`,
  :mod:`~kfitx.engine.backend_torch`, chosen by ``plan.runtime``) -- turns a step into
  something called on the feed's data (on JAX and torch, lists of numpy
  batches); nothing here is backend-specific;
* :func:`fit_loop` -- ``model.fit``'s loop around them, in its order: one
  ``keras.callbacks.CallbackList`` (History and the progress bar included),
  ``reset_metrics`` each epoch, ``initial_epoch`` (``BackupAndRestore``
  included), validation through ``model.evaluate`` with the same callbacks and
  ``validation_freq``, ``stop_training``, and the History returned.

A strategy that owns its loop is its options plus a step::

    class Clipped(kfitx.Strategy):
        name, description = "clipped", "gradients clipped to norm 1"

        def grouping(self):
            return 1, "a step of its own: one batch per call"

        def fit(self, model, plan):
            return kfitx.fit_loop(model, plan, kfitx.TrainStep(clipped_step))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from kfitx import _keras
from kfitx.engine.adapter import BackendAdapter, Batch, Data, Logs, StepFunction
from kfitx.engine.steps import EpochMeans
from kfitx.engine.steps import runner as _runner
from kfitx.errors import OptionError, message
from kfitx.plan.against_model import no_loss_to_validate
from kfitx.plan.checks import should_validate  # validation_freq, read as model.fit reads it
from kfitx.runtime import Runtime

if TYPE_CHECKING:
    import keras

    from kfitx.plan import FitPlan

__all__ = ["ONE_BATCH_PER_CALL", "BatchHook", "Feed", "StepFunction", "TrainStep", "fit_loop", "should_validate"]

#: Why a step that goes per batch runs one batch per call.
ONE_BATCH_PER_CALL = "a step run in Python or batch hooks: one batch at a time through Python"
#: ``hook(batch, step_index, epoch) -> batch``: called on each batch before the step.
BatchHook = Callable[[Batch, int, int], Batch]
#: One compiled call's share of an epoch: ``(first step, last step, data)``.
Group = tuple[int, int, Data]


class Feed(Protocol):
    """Where :func:`fit_loop` reads each epoch's batches (``plan.train.feed(...)``, or a strategy's own).

    A feed may also have ``restart()`` (start the next pass afresh, after the batch read to build the
    model), ``ran_out()`` (called when a step finds the data exhausted before the epoch's last step) and
    ``close()`` (the fit ends); :func:`fit_loop` calls those where the feed has them.
    """

    @property
    def num_batches(self) -> int | None:
        """Batches per epoch, or ``None`` where unknown (a stream read until it ends)."""

    def epoch(self, epoch: int) -> Iterable[Group]:
        """The groups of epoch ``epoch`` (0-based), each last step as callbacks are to see it (a source's feed:
        :class:`kfitx.data.epoch_iterator.EpochIterator`'s rule); the iterable may have ``close()``."""


@runtime_checkable
class _Closes(Protocol):
    def close(self) -> None: ...


@runtime_checkable
class _Restarts(Protocol):
    def restart(self) -> None: ...


@runtime_checkable
class _RunsOut(Protocol):
    def ran_out(self) -> None: ...


def _close(obj: object) -> None:
    if isinstance(obj, _Closes):
        obj.close()


@dataclass(frozen=True)
class TrainStep:
    """What :func:`fit_loop` runs on each batch.

    Attributes:
        fn: ``None`` for the model's own train step (``model.train_step``, a
            subclass's override included), compiled, several batches per call
            when the plan's ``steps_per_execution`` says so. Or
            ``fn(model, batch) -> dict of logs`` training on one batch, where
            ``batch`` is ``(x, y)`` or ``(x, y, sample_weight)`` (``class_weight``
            already turned into sample weights).
        compiled: ``fn`` is made of Keras / backend ops and the engine compiles
            it once, feeding it from the pipeline without a Python round trip
            per batch (the fast path). ``False``: ``fn`` is called in Python on
            each batch (it may be compiled itself, or call ``train_on_batch``).
        hooks: Python functions ``hook(batch, step_index, epoch) -> batch``
            called in order on every batch before the step (each returns the
            batch to train on); they make batches go through Python one at a time.
        epoch_logs: ``"metrics"``: the epoch's logs are the model's metrics, as
            in ``model.fit``. ``"means"``: the mean over the epoch of each number
            ``fn`` returned, weighted by the batch's sample count (for steps that
            return per-batch values).
    """

    fn: StepFunction | None = None
    compiled: bool = True
    hooks: Sequence[BatchHook] = ()
    epoch_logs: str = "metrics"

    def __post_init__(self) -> None:
        if self.fn is not None and not callable(self.fn):
            raise OptionError(message("A step must be None (the model's own train step) or a callable "
                                      "fn(model, batch) -> dict of logs", f"{type(self.fn).__name__} {self.fn!r}"))
        if self.epoch_logs not in ("metrics", "means"):
            raise OptionError(message("`epoch_logs` must be 'metrics' or 'means'", repr(self.epoch_logs)))

    @property
    def per_batch(self) -> bool:
        """Batches go through Python one at a time (batch hooks, or a step run in Python)."""
        return bool(self.hooks) or (self.fn is not None and not self.compiled)

    def grouping(self, requested: int | str = "auto") -> int | str | tuple[int, str]:
        """Steps per compiled call this step allows, as :meth:`kfitx.Strategy.grouping` answers: ``requested``
        (``"auto"`` or an int), or ``(1, reason)`` for a step that goes per batch. The one place that rule lives.

        Raises:
            OptionError: ``requested`` more than 1 for a step that goes per batch.
        """
        if not self.per_batch:
            return requested
        if requested not in ("auto", 1):
            raise OptionError(message(
                "A step run in Python or batch hooks train one batch per call (`steps_per_execution` groups only "
                "the model's own compiled step)", f"steps_per_execution={requested!r}",
                "Leave steps_per_execution='auto', or drop the step / batch hooks to group compiled steps."))
        return 1, ONE_BATCH_PER_CALL


def _adapter(runtime: Runtime) -> BackendAdapter:
    """The :class:`~kfitx.engine.adapter.BackendAdapter` of the fit's backend (``backend_tf``, ``backend_jax``,
    ``backend_torch``)."""
    import importlib

    names = {"tensorflow": "tf", "jax": "jax", "torch": "torch"}
    if runtime.backend not in names:
        raise OptionError(message("kfitx's training loop runs on the TensorFlow, JAX or torch backend",
                                  f"the {runtime.backend} backend", "Set KERAS_BACKEND to one of them."))
    module = importlib.import_module(f"kfitx.engine.backend_{names[runtime.backend]}")
    adapter: BackendAdapter = module.Adapter(runtime)
    return adapter


def _build(model: keras.Model, feed: Feed) -> None:
    """Builds what ``model.fit`` builds before its first step (layers, loss, metrics, optimizer) from one batch.

    The backends whose state lives outside the model between steps (JAX) need it
    before the first step, and ``BackupAndRestore`` needs it before it restores.
    As in ``model.fit``, the batch comes from a pass started for it alone.
    """
    if not _keras.unbuilt(model):
        return
    groups = feed.epoch(0)
    try:
        _, _, data = next(iter(groups))
    except StopIteration:
        return
    finally:
        _close(groups)
    if isinstance(feed, _Restarts):
        feed.restart()
    _keras.symbolic_build(model, data[0] if isinstance(data, list) else next(iter(data)))


def _callback_list(model: keras.Model, plan: FitPlan, steps: int | None) -> keras.callbacks.CallbackList:
    import keras

    if isinstance(plan.callbacks, keras.callbacks.CallbackList):
        return plan.callbacks
    return keras.callbacks.CallbackList(plan.callbacks, add_history=True, add_progbar=plan.verbose != 0,
                                        verbose=plan.verbose, epochs=plan.epochs, steps=steps, model=model)


def fit_loop(model: keras.Model, plan: FitPlan, step: TrainStep | None = None, *, batches: Feed | None = None,
             endless_after: int = 100_000) -> keras.callbacks.History:
    """Trains ``model`` as ``model.fit`` would with ``plan``'s arguments, running ``step`` on each batch.

    Args:
        model: A compiled Keras model.
        plan: The fit's :class:`kfitx.FitPlan`.
        step: What trains on each batch (default: the model's own train step).
        batches: Where the batches come from; default: ``plan.train`` batched,
            shuffled and class-weighted as the plan says.
        endless_after: A generator without ``steps_per_epoch`` yielding more
            batches than this in one epoch is a :class:`kfitx.DataError`.

    Returns:
        The ``keras.callbacks.History`` (also ``model.history``).

    Raises:
        OptionError: for batch hooks or a step run in Python (``compiled=False``) while
            the plan groups several steps per call (override ``Strategy.grouping()``
            to return ``(1, reason)``). A compiled step function is run on each batch
            of a group, and callbacks see the group as with Keras's ``steps_per_execution``.
    """
    step = step or TrainStep()
    group = plan.steps_per_execution
    try:
        step.grouping(group)
    except OptionError as err:  # the plan grouped steps: the strategy's grouping() did not ask the step
        raise OptionError(f"{err} A strategy running this step returns step.grouping(...) from its "
                          "grouping(), so that the plan does not group steps.") from None
    adapter = _adapter(plan.runtime)
    feed: Feed
    if batches is not None:
        feed = batches
    else:
        # A one-batch step over a group reads the group's batches first, so that it never runs on an
        # exhausted iterator (a compiled step's other state changes would still run there).
        feed = plan.train.feed(plan.reading(endless_after=endless_after), group=group,
                               pull=step.per_batch or (step.fn is not None and group > 1))
    callbacks = _callback_list(model, plan, feed.num_batches)
    validation = plan.validation_input()
    with plan.grouped(model):
        if plan.runtime.numpy_batches:
            _build(model, feed)
        run, means = _runner(adapter, model, step, group)
        try:
            _epochs(model, feed, run, means, callbacks, plan, validation, adapter)
        finally:
            adapter.train_end(model)
            _close(feed)
    return model.history


def _epochs(model: keras.Model, feed: Feed, run: Callable[[Data, int, int], Logs | None],
            means: EpochMeans | None, callbacks: keras.callbacks.CallbackList, plan: FitPlan,
            validation: object, adapter: BackendAdapter) -> None:
    """``model.fit``'s epoch loop (keras/src/backend/tensorflow/trainer.py, and jax/, torch/), step for step;
    the parts of it that touch the trainer's private state are :func:`kfitx._keras.fit_begin` and ``fit_end``."""
    epoch_begin, epoch_end = adapter.epoch_begin, adapter.epoch_end
    _keras.fit_begin(model)
    callbacks.on_train_begin()
    training_logs = None
    logs: Logs = {}
    epochs = plan.epochs
    for epoch in range(_keras.initial_epoch(model, plan.initial_epoch), epochs):
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        epoch_begin(model)
        if means is not None:
            means.reset()
        groups = feed.epoch(epoch)  # each group's last step as callbacks see it (kfitx.data.epoch_iterator)
        try:
            for begin, end, data in groups:
                callbacks.on_train_batch_begin(begin)
                step_logs = run(data, begin, epoch)
                if step_logs is None:
                    if isinstance(feed, _RunsOut):
                        feed.ran_out()
                    break
                logs = step_logs
                callbacks.on_train_batch_end(end, logs)
                if model.stop_training:
                    break
        finally:
            _close(groups)
        epoch_end(model)
        if means is not None:
            epoch_logs = means.result()
        else:  # the model's running metrics, not the last batch's logs (as fit does)
            metrics = model.get_metrics_result()
            epoch_logs = dict(metrics if isinstance(logs, dict) and set(logs) == set(metrics) else logs)
        if validation is not None and should_validate(epoch, plan.validation_freq):
            # Tensors Keras cuts (a tuple), or a stream; one validation iterator for the whole fit, as in model.fit.
            x, y, weights = (*validation, None, None)[:3] if isinstance(validation, tuple) else (validation, None, None)
            try:
                val_logs = _keras.cached_evaluate(model, x, y, weights, batch_size=plan.validation_batch_size,
                                                  steps=plan.validation_steps, callbacks=callbacks,
                                                  backend=plan.runtime.backend)
            except ValueError as err:
                if "No loss to compute" not in str(err):
                    raise
                raise no_loss_to_validate() from err  # one the plan could not know (checked there)
            epoch_logs.update({f"val_{name}": value for name, value in val_logs.items()})
        callbacks.on_epoch_end(epoch, epoch_logs)
        training_logs = epoch_logs
        if model.stop_training:
            break
    _keras.fit_end(model, trained=epochs > 0)
    callbacks.on_train_end(logs=training_logs)
