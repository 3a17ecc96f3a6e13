"""Checks of ``model.fit``'s arguments and of the model, for :mod:`kfitx.plan`.

Each mistake is an :class:`kfitx.OptionError` or :class:`kfitx.ModelError` saying
what was expected, ``Received: ...``, and what to do.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from kfitx.errors import DataError, ModelError, OptionError, message

__all__ = ["FIT_ARGS", "callbacks_list", "check_fit_args", "check_input_dtypes", "check_inputs", "check_model",
           "closest", "should_validate", "unknown_names"]

#: Arguments of ``keras.Model.fit`` every strategy accepts, plus ``seed``.
FIT_ARGS: tuple[str, ...] = (
    "batch_size",
    "callbacks",
    "class_weight",
    "epochs",
    "initial_epoch",
    "sample_weight",
    "seed",
    "shuffle",
    "steps_per_epoch",
    "validation_batch_size",
    "validation_data",
    "validation_freq",
    "validation_split",
    "validation_steps",
    "verbose",
)

#: Keras 2 ``fit`` arguments that Keras 3 moved onto ``keras.utils.PyDataset``.
_MOVED_TO_PYDATASET = ("workers", "use_multiprocessing", "max_queue_size")


def closest(name: str, candidates: list[str]) -> str:
    """`` Did you mean 'x'?`` for the closest candidate, or ``""``."""
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" Did you mean '{match[0]}'?" if match else ""


def unknown_names(names: Mapping[str, Any], strategy: str | None = None,
                  options: Sequence[str] = ()) -> OptionError:
    """The one error for arguments that are neither fit arguments nor options of the strategy.

    :func:`check_fit_args` raises it for a fit argument it does not know, and
    :meth:`kfitx.Strategy.check_options` for an option the strategy does not take
    (``kfitx.fit`` hands every name that is not a fit argument to the strategy).

    Args:
        names: The unknown names and the values given for them.
        strategy: The strategy's name, when they were given to a strategy.
        options: That strategy's option names.
    """
    moved = [key for key in names if key in _MOVED_TO_PYDATASET]
    if moved:
        return OptionError(message(
            "Keras 3's fit no longer takes worker settings", ", ".join(f"{k}={names[k]!r}" for k in moved),
            "Pass them to a keras.utils.PyDataset (PyDataset(workers=..., use_multiprocessing=..., "
            "max_queue_size=...)), or to the 'generator' strategy's options."))
    first = sorted(names)[0]
    expected = "Expected a fit argument (" + ", ".join(FIT_ARGS) + ")"
    if strategy is not None:
        expected += f" or an option of strategy '{strategy}' (" + (", ".join(sorted(options)) or "none") + ")"
    if strategy is not None and first in FIT_ARGS:
        fix = f"`{first}` is a fit argument: pass it to kfitx.fit, not to the strategy."
    else:
        fix = closest(first, [*FIT_ARGS, *options]).strip() or "Remove it."
    return OptionError(message(expected, ", ".join(f"{k}={names[k]!r}" for k in sorted(names)), fix))


class CheckedFitArgs(dict[str, Any]):
    """Fit arguments :func:`check_fit_args` has checked, ``callbacks`` made a list: ``build_plan`` does not
    check them again."""


def check_fit_args(fit_args: Mapping[str, Any]) -> CheckedFitArgs:
    """Raises :class:`OptionError` for an unknown fit argument or a bad value; the arguments, checked.

    Args:
        fit_args: The keyword arguments meant for the fit (names from :data:`FIT_ARGS`).

    Returns:
        The same arguments, ``callbacks`` as a list (a ``CallbackList`` kept as it is).
    """
    if isinstance(fit_args, CheckedFitArgs):
        return fit_args
    unknown = {key: value for key, value in fit_args.items() if key not in FIT_ARGS}
    if unknown:
        raise unknown_names(unknown)
    _check_values(fit_args)
    checked = CheckedFitArgs(fit_args)
    if "callbacks" in checked:
        checked["callbacks"] = callbacks_list(checked["callbacks"])
    return checked


_POSITIVE_OR_NONE = ("batch_size", "steps_per_epoch", "validation_steps", "validation_batch_size")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_values(fit_args: Mapping[str, Any]) -> None:
    def bad(key: str, expected: str, todo: str | None = None) -> OptionError:
        return OptionError(message(f"`{key}` must be {expected}", repr(fit_args[key]), todo))

    for key in ("epochs", "initial_epoch"):
        if key in fit_args and not (_is_int(fit_args[key]) and fit_args[key] >= 0):
            raise bad(key, "an int >= 0")
    for key in _POSITIVE_OR_NONE:
        value = fit_args.get(key)
        if value is not None and not (_is_int(value) and value >= 1):
            raise bad(key, "a positive int or None")
    if "verbose" in fit_args and fit_args["verbose"] not in (0, 1, 2, "auto"):
        raise bad("verbose", "0, 1, 2 or 'auto'")
    split = fit_args.get("validation_split") or 0.0
    if not (isinstance(split, (int, float)) and 0.0 <= split < 1.0):
        raise bad("validation_split", "a float in [0, 1)")
    if fit_args.get("shuffle", True) not in (True, False, "batch"):
        raise bad("shuffle", "True, False or 'batch'")
    seed = fit_args.get("seed")
    if seed is not None and not (_is_int(seed) and seed >= 0):
        raise bad("seed", "None or an int >= 0")
    freq = fit_args.get("validation_freq", 1)
    if not ((_is_int(freq) and freq >= 1) or (isinstance(freq, (list, tuple, set, range))
                                              and all(_is_int(e) and e >= 1 for e in freq))):
        raise bad("validation_freq", "a positive int or a list of epoch numbers (1-based)")
    weights = fit_args.get("class_weight")
    if weights is not None and not (isinstance(weights, Mapping) and weights
                                    and all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and int(k) >= 0
                                            for k in weights)):
        raise bad("class_weight", "None or a non-empty dict {class index: weight}",
                  "e.g. class_weight={0: 1.0, 1: 5.0}.")


def should_validate(epoch: int, freq: int | Collection[int]) -> bool:
    """``validation_freq`` as ``model.fit`` reads it: every ``freq`` epochs, or the (1-based) epochs listed
    (``freq`` as :func:`check_fit_args` checked it, the one check)."""
    if isinstance(freq, int):
        return (epoch + 1) % freq == 0
    return epoch + 1 in freq


def callbacks_list(callbacks: Any) -> Any:
    """The callbacks as a list (a ``CallbackList`` kept as it is); checks each one."""
    if callbacks is None:
        return []
    import keras

    if isinstance(callbacks, keras.callbacks.CallbackList):
        return callbacks
    if isinstance(callbacks, keras.callbacks.Callback):
        raise OptionError(message("`callbacks` must be a list of keras.callbacks.Callback",
                                  f"a single {type(callbacks).__name__}", "Wrap it in a list: callbacks=[cb]."))
    if not isinstance(callbacks, (list, tuple)):
        raise OptionError(message("`callbacks` must be a list of keras.callbacks.Callback",
                                  type(callbacks).__name__))
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, keras.callbacks.Callback):
            raise OptionError(message(
                "Every item of `callbacks` must be a keras.callbacks.Callback",
                f"callbacks[{i}] = {cb!r}",
                "Subclass keras.callbacks.Callback, or wrap a function in "
                "keras.callbacks.LambdaCallback(on_epoch_end=...)."))
    return list(callbacks)


def check_model(model: Any) -> None:
    """Raises :class:`ModelError` unless ``model`` is a compiled Keras trainer.

    A ``keras.Model``, or anything else ``model.fit`` trains: a backend trainer mixed
    into a layer (``class M(Trainer, keras.layers.Dense)``, as Keras's own tests build models).
    """
    from kfitx import _keras

    if not _keras.is_trainer(model):
        raise ModelError(message("Expected a keras.Model (or another compiled Keras trainer)",
                                 type(model).__name__))
    if not getattr(model, "compiled", False):
        raise ModelError(message(
            "The model must be compiled before training", f"an uncompiled {type(model).__name__} '{model.name}'",
            "Call model.compile(optimizer=..., loss=...) first (inside your build_model function when tuning)."))


def _pairs(inputs: list[Any], x: Any) -> list[tuple[Any, Any, str]]:
    """``(model input, array, name)`` for the inputs ``x`` certainly feeds, as Keras matches them."""
    import numpy as np

    if isinstance(x, np.ndarray):
        return [(inputs[0], x, "")] if len(inputs) == 1 else []
    if isinstance(x, dict):  # by the inputs' names, as Keras matches a dict
        by_name = {getattr(i, "name", None): i for i in inputs}
        return [(by_name[k], v, f"[{k!r}]") for k, v in x.items() if k in by_name and isinstance(v, np.ndarray)]
    if isinstance(x, (list, tuple)) and len(x) == len(inputs) > 1:
        return [(i, v, f"[{n}]") for n, (i, v) in enumerate(zip(inputs, x)) if isinstance(v, np.ndarray)]
    return []


def check_input_dtypes(model: Any, x: Any, role: str = "x") -> None:
    """Raises :class:`DataError` for string arrays fed to a built model's input that takes numbers.

    Strings are valid where the input takes strings (a model starting with
    ``TextVectorization`` or ``StringLookup``), and pass through to Keras there.
    """
    inputs = getattr(model, "inputs", None) if getattr(model, "built", False) else None
    for tensor, array, where in _pairs(list(inputs or ()), x):
        if array.dtype.kind in "USO" and "string" not in str(tensor.dtype):
            raise DataError(message(
                f"`{role}{where}` must have a numeric or boolean dtype: the model's input '{tensor.name}' "
                f"takes {tensor.dtype}", f"dtype {array.dtype}",
                "Encode strings as numbers before training (e.g. keras.layers.StringLookup), or start the "
                "model with keras.Input(dtype='string') and a TextVectorization or StringLookup layer."))


def check_inputs(model: Any, x: Any, role: str = "x") -> None:
    """Raises :class:`DataError` when arrays ``x`` cannot be the built model's inputs.

    Only what ``model.fit`` would certainly refuse: an array of the same rank as
    the model input it feeds (the single input; a list's arrays in order; a dict's
    by input name) with a fixed dimension that differs. Another rank is left to
    Keras (it expands a missing trailing axis of size 1), and so are unbuilt
    models, ``None`` dimensions and anything not matched to an input.
    """
    inputs = getattr(model, "inputs", None) if getattr(model, "built", False) else None
    if not inputs:
        return
    for tensor, array, where in _pairs(list(inputs), x):
        expected = tuple(tensor.shape)[1:]
        received = tuple(array.shape[1:])
        if len(expected) != len(received):
            continue
        if any(e is not None and e != r for e, r in zip(expected, received)):
            shown = ", ".join("None" if e is None else str(e) for e in expected)
            raise DataError(message(
                f"`{role}{where}` samples of the shape the model's input '{tensor.name}' takes: (batch, {shown})",
                f"{role}{where} of shape {tuple(array.shape)}",
                "Reshape the data, or build the model with keras.Input(shape=" + str(received) + ")."))

