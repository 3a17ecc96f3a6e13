"""The ``loop`` strategy: kfitx runs the training loop itself (the ``train_on_batch`` way, with every callback).

Separation of concerns:

* :mod:`kfitx._feed` -- where each epoch's batches come from, with
  ``model.fit``'s rules for ``steps_per_epoch``;
* the step -- the model's own compiled train function, several steps per call
  where :mod:`kfitx._grouping` allows it, or else the user's ``step``, one batch at
  a time after the ``batch_hooks``;
* :meth:`LoopStrategy.fit` -- everything ``model.fit`` does around the steps,
  in its order: one ``keras.callbacks.CallbackList`` (History and the progress
  bar included), ``reset_metrics`` each epoch, validation through
  ``model.evaluate`` with the same callbacks, ``stop_training``,
  ``initial_epoch`` (``BackupAndRestore`` included), and the History returned.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kfitx.data import ArraySource, DatasetSource, GeneratorSource, PyDatasetSource, Source
from kfitx.errors import OptionError, message
from kfitx._feed import make_feed
from kfitx.hookspecs import hookimpl
from kfitx._pipeline import validation_dataset
from kfitx.plan import FitPlan
from kfitx.strategy import Strategy

logger = logging.getLogger("kfitx")

Step = Callable[[Any, Any], Mapping[str, Any]]
BatchHook = Callable[[Any, int, int], Any]


def _check_step(step: Any) -> Step | None:
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


def _num_samples(batch: Any) -> int:
    import keras
    import tensorflow as tf

    x, _, _ = keras.utils.unpack_x_y_sample_weight(tuple(batch) if isinstance(batch, list) else batch)
    leaves = [leaf for leaf in tf.nest.flatten(x) if getattr(leaf, "shape", None)]
    return int(leaves[0].shape[0] or 1) if leaves else 1


class _EpochMeans:
    """Per-epoch means of the numbers a user step returns, weighted by samples per batch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.weights: dict[str, int] = {}
        self.last: dict[str, Any] = {}

    def add(self, logs: Mapping[str, Any], samples: int) -> None:
        import numpy as np

        for key, value in logs.items():
            array = np.asarray(value)
            if array.ndim == 0 and array.dtype.kind in "biuf":
                self.sums[key] = self.sums.get(key, 0.0) + float(array) * samples
                self.weights[key] = self.weights.get(key, 0) + samples
            self.last[key] = value

    def result(self) -> dict[str, Any]:
        return {k: self.sums[k] / self.weights[k] if k in self.sums else v for k, v in self.last.items()}


def _should_validate(epoch: int, freq: Any) -> bool:
    """``validation_freq`` as ``model.fit`` reads it: every ``freq`` epochs, or the epochs listed."""
    if isinstance(freq, int) and not isinstance(freq, bool) and freq >= 1:
        return (epoch + 1) % freq == 0
    if isinstance(freq, (list, tuple, set, range)):
        return epoch + 1 in freq
    raise OptionError(message("`validation_freq` must be a positive int or a list of epoch numbers "
                              "(1-based)", repr(freq)))


class LoopStrategy(Strategy):
    """kfitx's own training loop: a custom step and per-batch hooks, with every Keras callback.

    Each epoch, batches are drawn from the source (arrays through
    :func:`kfitx._pipeline.array_dataset`, a ``tf.data.Dataset``, a fresh iterator
    from a generator factory, or a ``keras.utils.PyDataset`` read in order) and
    trained on by the step, with callbacks called as ``model.fit`` calls them.

    Options:
        step: ``None`` (default): the model's own compiled train step, several
            batches per compiled call when :mod:`kfitx._grouping` allows it (batch
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
            for the model's own step (see :mod:`kfitx._grouping`). With ``step`` or
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
    description = "kfitx's own training loop: a custom step and per-batch hooks, with every Keras callback"
    defaults = {"step": None, "batch_hooks": None, "steps_per_execution": "auto", "endless_after": 100_000}
    renamed_options = {"infinite_after": "endless_after"}  # the generator strategy's name for the same rule

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.step = _check_step(self.options["step"])
        self.hooks = _check_hooks(self.options["batch_hooks"])
        limit = self.options["endless_after"]
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise OptionError(message("`endless_after` must be a positive int", repr(limit)))
        if self.per_batch and self.options["steps_per_execution"] not in ("auto", 1):
            raise OptionError(message(
                "`steps_per_execution` groups the model's own compiled step; with `step` or "
                "`batch_hooks` every batch goes through Python on its own",
                f"steps_per_execution={self.options['steps_per_execution']!r}",
                "Leave steps_per_execution='auto', or drop step / batch_hooks to group compiled steps.",
            ))

    @property
    def per_batch(self) -> bool:
        """Batches go one at a time through Python (a user step or batch hooks)."""
        return self.step is not None or bool(self.hooks)

    def supports(self, source: Source) -> str | None:
        if isinstance(source, (ArraySource, DatasetSource, GeneratorSource, PyDatasetSource)):
            return None
        return ("The 'loop' strategy reads arrays, tf.data datasets, generators and PyDatasets, "
                f"not a {source.kind} source.")

    def grouping(self) -> int | str | tuple[int, str]:
        if self.per_batch:
            return 1, "a user step or batch hooks: one batch at a time through Python"
        return self.options["steps_per_execution"]

    def fit(self, model: Any, plan: FitPlan) -> Any:
        import keras

        feed = make_feed(plan.train, batch_size=plan.batch_size, shuffle=plan.shuffle, seed=plan.seed,
                         steps_per_epoch=plan.steps_per_epoch, class_weight=plan.class_weight,
                         group=plan.steps_per_execution, pull=self.per_batch,
                         endless_after=self.options["endless_after"])
        callbacks = plan.callbacks
        if not isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks = keras.callbacks.CallbackList(
                callbacks, add_history=True, add_progbar=plan.verbose != 0, verbose=plan.verbose,
                epochs=plan.epochs, steps=feed.num_batches, model=model,
            )
        validation = validation_dataset(plan)
        plan.report.note(step="model" if self.step is None else "user", batch_hooks=len(self.hooks))
        with plan.grouped(model):
            self._train(model, feed, callbacks, epochs=plan.epochs, initial_epoch=plan.initial_epoch,
                        validate=None if validation is None else (lambda: validation),
                        validation_steps=plan.validation_steps, validation_freq=plan.validation_freq)
        return model.history

    # -- the loop -------------------------------------------------------------

    def _train(self, model: Any, feed: Any, callbacks: Any, *, epochs: int, initial_epoch: int,
               validate: Callable[[], Any] | None, validation_steps: int | None,
               validation_freq: Any) -> None:
        """``model.fit``'s epoch loop (keras/src/backend/tensorflow/trainer.py), step for step."""
        import keras

        model.stop_training = False
        model.make_train_function()
        callbacks.on_train_begin()
        training_logs = None
        logs: Any = {}
        initial_epoch = model._initial_epoch or initial_epoch  # set by BackupAndRestore, read as fit reads it
        for epoch in range(initial_epoch, epochs):
            model.reset_metrics()
            callbacks.on_epoch_begin(epoch)
            means = _EpochMeans() if self.step is not None else None
            with contextlib.closing(feed.epoch(epoch)) as groups:
                for begin, end, data in groups:
                    callbacks.on_train_batch_begin(begin)
                    if self.per_batch:
                        step_logs = self._per_batch_step(model, data[0], begin, epoch, means)
                    else:
                        step_logs = self._compiled_step(model, data)
                        if step_logs is None:
                            feed.ran_out()
                            break
                    logs = step_logs
                    callbacks.on_train_batch_end(end, logs)
                    if model.stop_training:
                        break
            if means is not None:
                epoch_logs = means.result()
            else:  # the model's running metrics, not the last batch's logs (as fit does)
                metrics = model.get_metrics_result()
                epoch_logs = dict(metrics if isinstance(logs, dict) and set(logs) == set(metrics) else logs)
            if validate is not None and _should_validate(epoch, validation_freq):
                val_logs = model.evaluate(validate(), steps=validation_steps, callbacks=callbacks,
                                          return_dict=True)
                epoch_logs.update({f"val_{name}": value for name, value in val_logs.items()})
            callbacks.on_epoch_end(epoch, epoch_logs)
            training_logs = epoch_logs
            if model.stop_training:
                break
        if isinstance(model.optimizer, keras.optimizers.Optimizer) and epochs > 0:
            model.optimizer.finalize_variable_values(model.trainable_weights)
        callbacks.on_train_end(logs=training_logs)

    def _compiled_step(self, model: Any, data: Any) -> Any:
        """The model's train function on a group: a tf.data iterator, or a list of batches."""
        import tensorflow as tf

        try:
            return model.train_function(iter(data) if isinstance(data, list) else data)
        except (StopIteration, tf.errors.OutOfRangeError):
            return None  # the iterator was empty: the epoch is over

    def _per_batch_step(self, model: Any, batch: Any, index: int, epoch: int,
                        means: _EpochMeans | None) -> Any:
        for hook in self.hooks:
            changed = hook(batch, index, epoch)
            if changed is None:
                raise OptionError(message(
                    "A batch hook must return the batch to train on (the one it got, or a new one)",
                    f"None from {getattr(hook, '__name__', repr(hook))} at step {index} of epoch {epoch}",
                    "End the hook with `return batch`.",
                ))
            batch = changed
        if self.step is None:
            return model.train_function(iter([batch]))
        logs = self.step(model, batch)
        if not isinstance(logs, Mapping):
            raise OptionError(message(
                "The loop strategy's `step` must return a dict of logs, e.g. {'loss': loss}",
                f"{type(logs).__name__} from {getattr(self.step, '__name__', repr(self.step))}",
                "Return a dict of the batch's numbers (an empty dict if there is nothing to log).",
            ))
        assert means is not None
        means.add(logs, _num_samples(batch))
        return dict(logs)


@hookimpl
def kfitx_strategies() -> list[type[Strategy]]:
    return [LoopStrategy]
