"""The ``loop`` strategy: kfitx runs the training loop itself (the ``train_on_batch`` way, with every callback).

The loop is :func:`kfitx.engine.fit_loop` (everything ``model.fit`` does around
the steps); this module is the step it runs and its options: the model's own
compiled train step, several per call where :mod:`kfitx.plan.grouping` allows it,
or the user's ``step``, one batch at a time after the ``batch_hooks``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kfitx.engine import BatchHook, StepFunction, TrainStep, fit_loop
from kfitx.errors import OptionError, message
from kfitx.hookspecs import hookimpl
from kfitx.plan import FitPlan
from kfitx.strategy import BACKENDS, Strategy


def _check_step(step: Any) -> StepFunction | None:
    if step is not None and not callable(step):
        raise OptionError(message(
            "The loop strategy's `step` must be None (the model's own train step) or a callable "
            "step(model, batch) -> dict of logs",
            f"{type(step).__name__} {step!r}",
            "Pass the function itself, e.g. kfitx.fit(model, data, strategy='loop', step=my_step).",
        ))
    return step


def _check_hooks(hooks: Any) -> list[BatchHook]:
    if hooks is None:
        return []
    if callable(hooks):
        return [hooks]
    if isinstance(hooks, Sequence) and not isinstance(hooks, str) and all(callable(h) for h in hooks):
        return list(hooks)
    raise OptionError(message(
        "The loop strategy's `batch_hooks` must be None or a list of callables "
        "hook(batch, step_index, epoch) -> batch",
        repr(hooks),
        "Pass a list of functions.",
    ))


class LoopStrategy(Strategy):
    """kfitx's own training loop: a custom step and per-batch hooks, with every Keras callback.

    Each epoch, batches are drawn from the source's feed (arrays and tf.data as a
    tf.data stream, a fresh iterator from a generator factory, a
    ``keras.utils.PyDataset`` read in order) and trained on by the step inside
    :func:`kfitx.fit_loop`, with callbacks called as ``model.fit`` calls them.

    Options:
        step: ``None`` (default): the model's own compiled train step, several
            batches per compiled call when :mod:`kfitx.plan.grouping` allows it (batch
            callbacks then fire once per group, as with Keras's
            ``steps_per_execution``). Or a callable ``step(model, batch) -> dict``
            that trains on one batch (e.g. a ``tf.GradientTape`` step with gradient
            clipping; decorate it with ``@tf.function`` for compiled speed).
            ``batch`` is what the source yields: a tuple ``(x, y)`` or
            ``(x, y, sample_weight)`` (``class_weight`` turned into sample
            weights, as ``model.fit`` does), as tensors for arrays and tf.data,
            as the generator or PyDataset yields it otherwise, after the batch hooks.
            The dict it returns is the logs batch callbacks see; the epoch's logs
            (History, epoch callbacks, the progress bar) are the means over the
            epoch of each number it returned, weighted by the batch's sample count
            (how Keras's own loss and accuracy average), so return per-batch
            values, not running means (a step calling ``model.train_on_batch(...,
            return_dict=True)`` does). Without ``step``, the epoch's logs are the
            model's metrics, as in ``model.fit``.
        batch_hooks: ``None`` or a list of callables ``hook(batch, step_index,
            epoch) -> batch``, called in order for every training batch after the
            ``on_train_batch_begin`` callbacks and before the step; each returns the
            batch to train on (the one it got, or a new one: curriculum, dynamic
            sample weights). ``step_index`` counts batches from 0 in each epoch.
        steps_per_execution: ``"auto"`` or a positive int: steps per compiled call
            for the model's own step (see :mod:`kfitx.plan.grouping`). With ``step`` or
            ``batch_hooks``, batches go one at a time through Python, so it must
            stay ``"auto"`` (or 1).
        endless_after: A generator given no ``steps_per_epoch`` defines an epoch
            by ending; one that yields more batches than this in one epoch is taken
            for an infinite generator and the fit stops with a :class:`DataError`
            (default 100000).

    Validation always runs the model's own test step (``model.evaluate`` with
    the fit's callbacks), not ``step`` or the hooks.
    """

    name = "loop"
    backends = BACKENDS
    description = "kfitx's own training loop: a custom step and per-batch hooks, with every Keras callback"
    defaults = {"step": None, "batch_hooks": None, "steps_per_execution": "auto", "endless_after": 100_000}
    renamed_options = {"infinite_after": "endless_after"}  # the generator strategy's name for the same rule
    interchangeable = True  # with the model's own step and no batch hooks

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.step = _check_step(self.options["step"])
        self.hooks = _check_hooks(self.options["batch_hooks"])
        limit = self.options["endless_after"]
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise OptionError(message("`endless_after` must be a positive int", repr(limit)))
        self.train_step = TrainStep(self.step, compiled=False, hooks=self.hooks,
                                    epoch_logs="metrics" if self.step is None else "means")
        self.grouping()  # a step run in Python with steps_per_execution > 1: an OptionError now

    @property
    def per_batch(self) -> bool:
        """Batches go one at a time through Python (a user step or batch hooks)."""
        return self.train_step.per_batch

    def is_interchangeable(self) -> bool:
        """The model's own step without batch hooks trains as ``model.fit`` does; a step or hooks of your own do not."""
        return self.step is None and not self.hooks

    def grouping(self) -> int | str | tuple[int, str]:
        return self.train_step.grouping(self.options["steps_per_execution"])

    def fit(self, model: Any, plan: FitPlan) -> Any:
        plan.report.note(step="model" if self.step is None else "user", batch_hooks=len(self.hooks))
        return fit_loop(model, plan, self.train_step, endless_after=self.options["endless_after"])


@hookimpl
def kfitx_strategies() -> list[type[Strategy]]:
    return [LoopStrategy]
