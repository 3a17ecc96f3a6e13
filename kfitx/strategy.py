"""The :class:`Strategy` base class: one way of training a Keras model.

A strategy has a ``name`` and a ``description``, takes its own options as
keyword arguments (declared with their defaults in ``defaults``), may refuse
data it cannot serve (``supports``), may declare tunable hyperparameters
(``hyperparameters``), and implements one method, ``fit``.

``fit`` keeps the contract in DESIGN.md: the arguments of ``keras.Model.fit``
listed in :data:`FIT_ARGS`, every callback honoured as ``model.fit`` honours it,
and a ``keras.callbacks.History`` returned.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from kfitx.errors import DataError, ModelError, OptionError, UnsupportedDataError, message

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from kfitx.data import Source

__all__ = ["FIT_ARGS", "Strategy", "check_fit_args", "check_model", "split_data"]

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


def _closest(name: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" Did you mean '{match[0]}'?" if match else ""


def check_fit_args(fit_args: Mapping[str, Any], strategy_options: list[str] | None = None) -> None:
    """Raises :class:`OptionError` for an unknown fit argument or a bad value.

    Args:
        fit_args: The keyword arguments meant for ``Strategy.fit``.
        strategy_options: The strategy's option names, listed in the message.
    """
    for key in fit_args:
        if key in FIT_ARGS:
            continue
        if key in _MOVED_TO_PYDATASET:
            raise OptionError(
                message(
                    "Keras 3's fit no longer takes worker settings",
                    f"{key}={fit_args[key]!r}",
                    "Pass them to a keras.utils.PyDataset (PyDataset(workers=..., "
                    "use_multiprocessing=..., max_queue_size=...)), or to the 'generator' "
                    "strategy's options.",
                )
            )
        known = list(FIT_ARGS) + list(strategy_options or [])
        raise OptionError(
            message(
                "Expected a fit argument (" + ", ".join(FIT_ARGS) + ")"
                + (" or a strategy option (" + ", ".join(strategy_options) + ")"
                   if strategy_options else ""),
                repr(key),
                _closest(key, known).strip() or "Remove it.",
            )
        )
    _check_values(fit_args)


_POSITIVE_OR_NONE = ("batch_size", "steps_per_epoch", "validation_steps", "validation_batch_size")


def _check_values(fit_args: Mapping[str, Any]) -> None:
    def bad(key: str, expected: str) -> OptionError:
        return OptionError(message(f"`{key}` must be {expected}", repr(fit_args[key])))

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    for key in ("epochs", "initial_epoch"):
        if key in fit_args and not (is_int(fit_args[key]) and fit_args[key] >= 0):
            raise bad(key, "an int >= 0")
    for key in _POSITIVE_OR_NONE:
        value = fit_args.get(key)
        if value is not None and not (is_int(value) and value >= 1):
            raise bad(key, "a positive int or None")
    if "verbose" in fit_args and fit_args["verbose"] not in (0, 1, 2, "auto"):
        raise bad("verbose", "0, 1, 2 or 'auto'")
    split = fit_args.get("validation_split") or 0.0
    if not (isinstance(split, (int, float)) and 0.0 <= split < 1.0):
        raise bad("validation_split", "a float in [0, 1)")
    if fit_args.get("shuffle", True) not in (True, False, "batch"):
        raise bad("shuffle", "True, False or 'batch'")


def check_model(model: Any) -> None:
    """Raises :class:`ModelError` unless ``model`` is a compiled ``keras.Model``."""
    import keras

    if not isinstance(model, keras.Model):
        raise ModelError(message("Expected a keras.Model", type(model).__name__))
    if not getattr(model, "compiled", False):
        raise ModelError(
            message(
                "The model must be compiled before training",
                f"an uncompiled {type(model).__name__} '{model.name}'",
                "Call model.compile(optimizer=..., loss=...) first (inside your "
                "build_model function when tuning).",
            )
        )


def split_data(source: Source, fit_args: dict[str, Any]) -> tuple[Source, Source | None]:
    """The training and validation sources of a fit, as ``model.fit`` derives them.

    Pops ``sample_weight``, ``validation_split`` and ``validation_data`` from
    ``fit_args``: ``sample_weight`` joins array data; ``validation_split`` takes
    the last fraction of the arrays; ``validation_data`` (arrays, ``(x, y)``,
    or any source) is coerced. For strategy authors: call it first in ``fit``.

    Returns:
        ``(training source, validation source or None)``.

    Raises:
        DataError: sample weights or a split asked of a stream, or given twice.
    """
    from kfitx.data import ArraySource, coerce

    sample_weight = fit_args.pop("sample_weight", None)
    validation_split = fit_args.pop("validation_split", 0.0)
    validation_data = fit_args.pop("validation_data", None)
    if sample_weight is not None:
        if not isinstance(source, ArraySource):
            raise DataError(message("`sample_weight` goes with array data",
                                    f"sample_weight= with a {source.kind} source",
                                    "Yield (x, y, sample_weight) batches from the stream instead."))
        if source.sample_weight is not None:
            raise DataError(message("sample weights given once", "both in the data and as sample_weight=",
                                    "Pass them in one place."))
        source = ArraySource(source.x, source.y, sample_weight)
    if validation_split and validation_data is None:
        if not isinstance(source, ArraySource):
            raise DataError(message("`validation_split` splits arrays only",
                                    f"validation_split={validation_split} with a {source.kind} source",
                                    "Pass validation_data=... instead."))
        return source.split(validation_split)
    return source, None if validation_data is None else coerce(validation_data)


class Strategy(ABC):
    """One way of training a Keras model. Subclass it to write a strategy plugin.

    Class attributes:
        name: The name users pass as ``strategy=``; unique among installed plugins.
        description: One line shown by ``kfitx list``.
        defaults: Option names and their default values; ``__init__`` accepts
            exactly these as keyword arguments.

    Example:
        ```python
        class Halving(kfitx.Strategy):
            name = "halving"
            description = "model.fit at half the batch size"
            defaults = {"factor": 2}

            def fit(self, model, source, **fit_args):
                fit_args["batch_size"] = fit_args.get("batch_size", 32) // self.options["factor"]
                return model.fit(*source.arrays(), **fit_args)
        ```
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            available = ", ".join(sorted(self.defaults)) or "none"
            raise OptionError(
                message(
                    f"Strategy '{self.name}' accepts the options: {available}",
                    ", ".join(f"{k}={options[k]!r}" for k in unknown),
                    _closest(unknown[0], list(self.defaults)).strip()
                    or "Remove the unknown option(s).",
                )
            )
        self.options: dict[str, Any] = {**self.defaults, **options}

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.options.items() if self.defaults.get(k) is not v}
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({args})"

    def supports(self, source: Source) -> str | None:
        """Returns ``None`` if this strategy can train on ``source``, else the reason it cannot."""
        return None

    def require(self, source: Source) -> None:
        """Raises :class:`UnsupportedDataError` if :meth:`supports` gives a reason."""
        reason = self.supports(source)
        if reason:
            raise UnsupportedDataError(
                f"Strategy '{self.name}' cannot train on this data. "
                f"Received: {source.describe()}. {reason}"
            )

    def hyperparameters(self, hp: Any) -> dict[str, Any]:
        """Declares this strategy's tunables on a keras-tuner ``hp``; returns chosen options.

        The tuner bridge calls it inside a conditional scope that is active only
        when this strategy is chosen, so names need no prefix of their own.
        """
        return {}

    @abstractmethod
    def fit(self, model: keras.Model, source: Source, **fit_args: Any) -> keras.callbacks.History:
        """Trains ``model`` on ``source``.

        Args:
            model: A compiled ``keras.Model``.
            source: The training data (see :mod:`kfitx.data`).
            **fit_args: The names in :data:`FIT_ARGS`, with ``model.fit``'s meanings.

        Returns:
            The ``keras.callbacks.History`` of the run.
        """
