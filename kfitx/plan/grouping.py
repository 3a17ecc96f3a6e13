"""Several training steps per compiled call, only where no callback can tell.

Keras's ``steps_per_execution`` runs N batches per call into compiled code and
fires batch hooks once per group. That is much faster when per-step overhead
dominates (small models), but a callback that acts per batch would see fewer
batches. So kfitx groups steps only when:

* the user asked for it (an int ``steps_per_execution`` option, or a model
  compiled with ``steps_per_execution > 1``), or
* no callback acts per batch.

"Acts per batch" means a batch hook that is not Keras's default no-op, except
where the callback is known to do nothing per batch as configured: the progress
bar, ``ModelCheckpoint`` / ``BackupAndRestore`` saving per epoch, ``TensorBoard``
logging per epoch without profiling, and keras-tuner's ``TunerCallback`` whose
tuner does not override ``on_batch_begin/end`` (keras-tuner forwards every batch
to the tuner, and its own tuners do nothing with it).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, NamedTuple, Protocol

from kfitx import _keras
from kfitx.errors import OptionError, message

if TYPE_CHECKING:
    import keras

    from kfitx.data import Source
    from kfitx.runtime import Runtime

__all__ = ["AUTO_STEPS", "Grouping", "WantsGrouping", "choose_steps_per_execution", "decide_grouping",
           "per_batch_callbacks", "steps_per_execution"]


class WantsGrouping(Protocol):
    """What the grouping reads of a strategy (:meth:`kfitx.Strategy.grouping`)."""

    def grouping(self) -> str | int | tuple[int, str]: ...


class Grouping(NamedTuple):
    """How many steps run per compiled call, and why.

    Attributes:
        steps: Steps per compiled call.
        reason: Why that many (for ``history.kfitx``).
        automatic: kfitx chose the group itself, because no callback acts per batch (nobody asked for it).
            Callbacks then see the epoch's last batch index at the end of a partial group, as in plain ``fit``.
    """

    steps: int
    reason: str
    automatic: bool = False

#: Steps per compiled call when grouping is safe (measured best on a small MLP here).
AUTO_STEPS = 16

_BATCH_HOOKS = (
    "on_batch_begin",
    "on_batch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
)


def _quiet_per_batch(callback: keras.callbacks.Callback) -> bool:
    """Overrides batch hooks, but does nothing per batch as configured."""
    import keras

    if isinstance(callback, (keras.callbacks.ProgbarLogger, keras.callbacks.History)):
        return True
    if isinstance(callback, (keras.callbacks.ModelCheckpoint, keras.callbacks.BackupAndRestore)):
        return callback.save_freq == "epoch"
    if isinstance(callback, keras.callbacks.TensorBoard):
        return callback.update_freq == "epoch" and not _keras.tensorboard_profiles_batches(callback)
    if _keras.tuner_callbacks([callback])[0] is not None:
        tuner = callback.tuner
        for hook in ("on_batch_begin", "on_batch_end"):
            owner = next(c for c in type(tuner).__mro__ if hook in vars(c))
            if not owner.__module__.startswith("keras_tuner"):
                return False  # a user's tuner subclass acts per batch
        return True
    return False


#: The reason of a group kfitx chose itself (no callback sees the batches between two calls).
AUTOMATIC = "no callback acts per batch"


def per_batch_callbacks(
    callbacks: Iterable[keras.callbacks.Callback] | keras.callbacks.CallbackList | None,
) -> list[str]:
    """Names of the callbacks in ``callbacks`` that act per batch (see module doc)."""
    if callbacks is None:
        return []
    if hasattr(callbacks, "callbacks") and not isinstance(callbacks, (list, tuple)):
        callbacks = callbacks.callbacks  # a keras.callbacks.CallbackList
    return [
        type(cb).__name__
        for cb in callbacks
        if not all(_keras.is_default_hook(cb, hook) for hook in _BATCH_HOOKS) and not _quiet_per_batch(cb)
    ]


def choose_steps_per_execution(
    model: keras.Model,
    callbacks: Iterable[keras.callbacks.Callback] | keras.callbacks.CallbackList | None,
    requested: int | str = "auto",
    exact_steps: Iterable[int | None] = (),
) -> Grouping:
    """Decides how many steps run per compiled call, and says why.

    Args:
        model: The compiled model (its own ``steps_per_execution`` counts as asked for).
        callbacks: The callbacks of the fit.
        requested: ``"auto"`` or a positive int.
        exact_steps: Step counts that must be run exactly (``steps_per_epoch``,
            ``validation_steps``; ``None`` entries are skipped). A compiled group
            always runs its full length while the data lasts, so on data that does not
            end there (a repeated pipeline), ``steps_per_epoch=10`` in groups of 16
            would train 16 batches per epoch. An automatic choice is therefore a
            group size that divides all of them.

    Returns:
        ``(steps, reason, automatic)``.
    """
    if requested != "auto":
        if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
            raise OptionError(message("`steps_per_execution` must be 'auto' or a positive int",
                                      repr(requested)))
        return Grouping(requested, "asked for by the steps_per_execution option")
    compiled = int(getattr(model, "steps_per_execution", 1) or 1)
    if compiled > 1:
        return Grouping(compiled, "the model was compiled with steps_per_execution")
    acting = per_batch_callbacks(callbacks)
    if acting:
        return Grouping(1, "callbacks act per batch: " + ", ".join(acting))
    counts = [n for n in exact_steps if n is not None]
    steps = max(d for d in range(1, AUTO_STEPS + 1) if all(n % d == 0 for n in counts))
    if steps == AUTO_STEPS:
        return Grouping(steps, AUTOMATIC, automatic=True)
    shown = ", ".join(str(n) for n in counts)
    return Grouping(steps, f"{AUTOMATIC}; {steps} is the largest group <= {AUTO_STEPS} dividing {shown}",
                    automatic=True)


def steps_per_execution(model: keras.Model, steps: int) -> AbstractContextManager[None]:
    """Runs the body with ``model`` set to ``steps`` steps per call, then restores it.

    The model's compiled train / test functions are put back afterwards, so a
    later plain ``model.fit`` behaves exactly as if kfitx had never run.
    """
    return _keras.compiled_with_steps_per_execution(model, steps)


#: Why Keras 3.15.1 cannot group steps under a tf.distribute strategy (found by reducing its grouped
#: train function): it calls the compiled one-step function inside a ``tf.cond`` of its
#: ``tf.while_loop``, and the optimizer's cross-replica update (``merge_call``) inside a nested
#: ``tf.function`` inside a ``tf.cond`` branch leaves a capture unfed.
_DISTRIBUTED_GROUPING = ("steps_per_execution > 1 fails under tf.distribute.{scope} in Keras {version}: its grouped "
                         "train function runs each step inside a tf.cond, where the optimizer's cross-replica "
                         "update leaves a placeholder unfed")


def decide_grouping(model: keras.Model, strategy: WantsGrouping,
                    callbacks: Iterable[keras.callbacks.Callback] | keras.callbacks.CallbackList | None,
                    exact: tuple[int | None, ...], runtime: Runtime,
                    sources: tuple[Source | None, ...] = ()) -> Grouping:
    """Steps per compiled call for this fit, and why: the one place that decides (``sources``: the training and
    validation data, whose batches may have to be dense for Keras to group steps)."""
    import keras

    wanted = strategy.grouping()
    if isinstance(wanted, tuple):  # the strategy fixes it
        return Grouping(*wanted)
    scope = runtime.distributed_scope
    automatic = wanted == "auto" and model.steps_per_execution == 1
    limit = ((_DISTRIBUTED_GROUPING.format(scope=scope, version=keras.__version__), True) if scope else
             runtime.one_step_per_call(automatic=automatic,
                                       dense=all(s is None or s.dense_batches for s in sources)))
    if limit is not None:
        reason, refused = limit
        if refused and wanted != "auto" and wanted != 1:
            raise OptionError(message(f"`steps_per_execution` 1 here: {reason}", f"steps_per_execution={wanted!r}",
                                      "Leave it 'auto'."))
        return Grouping(1, reason)
    return choose_steps_per_execution(model, callbacks, wanted, exact_steps=exact)
