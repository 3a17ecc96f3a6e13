"""How a :class:`kfitx.engine.TrainStep` runs on the batches :func:`kfitx.fit_loop` reads: :func:`runner`.

The model's own step runs compiled, a group of batches per call; a step or batch
hooks of the user's run in Python on each batch (:class:`_PythonSteps`), where
:func:`_call_user` is the one place they are called: what they raise becomes a
:class:`kfitx.errors.UserCodeError` naming the function and the batch, and what a
hook returns is checked against the batch it got (:func:`_check_hooked`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, cast

import numpy as np
from numpy.typing import ArrayLike

from kfitx.engine.adapter import BackendAdapter, Batch, Data, Logs, Run, StepFunction
from kfitx.errors import KfitxError, OptionError, UserCodeError, message, user_code_error

if TYPE_CHECKING:
    import keras

    from kfitx.engine import TrainStep

__all__ = ["EpochMeans", "runner"]

#: ``run(data, index, epoch) -> logs``, or ``None`` when the data ran out.
StepRunner = Callable[[Data, int, int], Logs | None]


def _num_samples(batch: Batch) -> int:
    import keras

    x, _, _ = keras.utils.unpack_x_y_sample_weight(tuple(batch) if isinstance(batch, list) else batch)
    leaves = [leaf for leaf in keras.tree.flatten(x) if getattr(leaf, "shape", None)]
    return int(leaves[0].shape[0] or 1) if leaves else 1


class EpochMeans:
    """Per-epoch means of the numbers a step returns, weighted by samples per batch."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.weights: dict[str, int] = {}
        self.last: dict[str, object] = {}

    def add(self, logs: Logs, samples: int) -> None:
        for key, value in logs.items():
            array = np.asarray(value)
            if array.ndim == 0 and array.dtype.kind in "biuf":
                self.sums[key] = self.sums.get(key, 0.0) + float(array) * samples
                self.weights[key] = self.weights.get(key, 0) + samples
            self.last[key] = value

    def result(self) -> dict[str, object]:
        return {k: self.sums[k] / self.weights[k] if k in self.sums else v for k, v in self.last.items()}


def _name(fn: object) -> str:
    return getattr(fn, "__name__", repr(fn))


class _PythonSteps:
    """Batches read in Python: the hooks, then the step, on each; keeps the epoch means."""

    def __init__(self, model: keras.Model, step: TrainStep, compiled: Run | None,
                 as_batch: Callable[[Batch], Batch]) -> None:
        self.model, self.step, self.compiled, self.as_batch = model, step, compiled, as_batch
        self.means = EpochMeans()

    def __call__(self, data: Data, index: int, epoch: int) -> Logs | None:
        logs: Logs | None = None
        where = f"training batch {index} of epoch {epoch + 1}"
        for batch in map(self.as_batch, data):
            hooked = []
            for hook in self.step.hooks:
                changed = _call_user("batch hook", hook, where, batch, index, epoch)
                if changed is None:
                    raise OptionError(message(
                        "A batch hook must return the batch to train on (the one it got, or a new one)",
                        f"None from {_name(hook)} at {where}",
                        "End the hook with `return batch`."))
                _check_hooked(self.model, batch, changed, hook, where)
                hooked.append(hook)
                batch = changed
            if self.compiled is not None:
                if not hooked:
                    logs = self.compiled([batch])
                else:  # the model's own step on what the hooks made: a failure is theirs to fix
                    logs = cast("Logs | None", _call_user("model's step on the batch returned by the batch hook",
                                                           hooked[-1], where, [batch], call=self.compiled))
            else:
                assert self.step.fn is not None  # a step of the model's own is compiled (runner)
                returned = _call_user("training step", self.step.fn, where, self.model, batch)
                if not isinstance(returned, Mapping):
                    raise OptionError(message(
                        "A training step must return a dict of logs, e.g. {'loss': loss}",
                        f"{type(returned).__name__} from {_name(self.step.fn)} at {where}",
                        "Return a dict of the batch's numbers (an empty dict if there is nothing to log)."))
                logs = dict(returned)
            if self.step.epoch_logs == "means" and logs is not None:
                self.means.add(logs, _num_samples(batch))
        return logs


def _call_user(what: str, fn: Callable[..., object], where: str, *args: object,
               call: Callable[..., object] | None = None) -> object:
    """``(call or fn)(*args)``; what it raises, unless a :class:`KfitxError` or an interrupt, becomes the
    :class:`UserCodeError` naming ``fn`` and the batch (the one place a user's step or hook is called)."""
    try:
        return (call or fn)(*args)
    except KfitxError:
        raise
    except Exception as err:
        raise user_code_error(what, fn, where, err) from err


def _check_hooked(model: keras.Model, batch: Batch, changed: Batch, hook: object, where: str) -> None:
    """What a hook returns must be trainable as the batch it got was: targets kept (``(x, y)`` or
    ``(x, y, sample_weight)``) when the model's compiled loss needs them, inputs the built model takes
    (a fixed dimension kept), and one batch size for x, y and the weights. Only what the step would
    certainly refuse."""
    import keras

    from kfitx.errors import DataError
    from kfitx.plan.checks import check_inputs

    got = f"{_name(hook)} at {where}"
    had_y = isinstance(batch, tuple) and len(batch) >= 2
    has_y = isinstance(changed, tuple) and len(changed) >= 2
    if had_y and not has_y and getattr(model, "loss", None) is not None:
        raise UserCodeError(message(
            "A batch hook must return the targets with the inputs when the compiled loss needs them: "
            "(x, y) or (x, y, sample_weight)", f"{_describe(changed)} for {_describe(batch)} from {got}",
            "Return (x, y) (or (x, y, sample_weight))."))
    x = changed[0] if isinstance(changed, tuple) else changed
    try:
        check_inputs(model, x)
    except DataError as err:
        raise UserCodeError(f"{err} (the x that batch hook {got} returned)") from None

    def size(leaf: ArrayLike) -> int | None:
        shape = tuple(getattr(leaf, "shape", np.shape(leaf)))
        return shape[0] if shape else None

    sizes = {n for leaf in keras.tree.flatten(changed) if leaf is not None and (n := size(leaf)) is not None}
    if len(sizes) > 1:
        raise UserCodeError(message("A batch hook must return x, y and the weights with one batch size",
                                    f"batch sizes {sorted(sizes)} from {got}",
                                    "Cut or drop samples in x, y and the weights alike."))


def _describe(batch: Batch) -> str:
    return f"a tuple of {len(batch)}" if isinstance(batch, tuple) else type(batch).__name__


class _EachBatch:
    """``fn(model, batch) -> logs`` on each batch of a list, as the adapter's ``as_batch`` makes it."""

    def __init__(self, model: keras.Model, fn: StepFunction, as_batch: Callable[[Batch], Batch]) -> None:
        self.model, self.fn, self.as_batch = model, fn, as_batch

    def __call__(self, data: Data) -> Logs | None:
        logs: Logs | None = None
        for batch in data or ():
            logs = self.fn(self.model, self.as_batch(batch))
        return logs


def runner(adapter: BackendAdapter, model: keras.Model, step: TrainStep,
           group: int) -> tuple[StepRunner, EpochMeans | None]:
    """``(run(data, index, epoch) -> logs or None, epoch means or None)`` for ``step``."""
    as_batch = adapter.as_batch
    compiled: Run | None
    if step.fn is None:
        compiled = adapter.model_function(model, group)
    elif not step.compiled:
        compiled = None
    else:  # JAX, torch: a step of backend ops is called in Python on each batch (its author may jit it)
        compiled = adapter.compiled_step(model, step.fn) or _EachBatch(model, step.fn, as_batch)
    if step.per_batch:
        python = _PythonSteps(model, step, compiled, as_batch)
        return python, python.means if step.epoch_logs == "means" else None
    if step.epoch_logs == "means":
        raise OptionError(message("epoch_logs='means' averages in Python", "a compiled step without hooks",
                                  "Return the model's metrics from the step (model.get_metrics_result()), "
                                  "or pass compiled=False."))
    assert compiled is not None  # a step run in Python goes per batch (step.per_batch), above
    if step.fn is not None and group > 1:  # a step of one batch, run on each batch of the group
        return (lambda data, index, epoch: _each_of_group(compiled, data, group)), None
    return (lambda data, index, epoch: compiled(data)), None


def _each_of_group(compiled: Run, data: Data, group: int) -> Logs | None:
    """A one-batch step over a group: each batch of the list the feed read (``fit_loop`` pulls them)."""
    return compiled(data if isinstance(data, list) else [next(data)])
