"""Every error kfitx raises on purpose.

Each class is also the standard-library exception it behaves like, so code that
already catches ``ValueError`` or ``LookupError`` keeps working::

    KfitxError
    ├── StrategyNotFoundError    (LookupError)  unknown strategy name
    ├── StrategyConflictError    (LookupError)  two plugins claim one name
    ├── OptionError              (TypeError)    unknown or bad strategy option / fit argument
    ├── PluginError              (TypeError)    a plugin's strategy is written against another kfitx API, or its
    │                                           fit returned what breaks the fit contract
    ├── StrategyFitError         (RuntimeError) a plugin strategy's fit raised (the original is the cause)
    ├── ModelError               (ValueError)   the model cannot be trained as given
    ├── DataError                (ValueError)   the data is malformed (a batch included)
    ├── AugmentationError        (ValueError)   an augmentation cannot be used, or failed on a batch
    ├── WorkerError              (RuntimeError) a data worker died, or gave no batch in time
    ├── ConformanceError         (AssertionError) a strategy breaks the fit contract (kfitx.testing)
    ├── TuneError                (RuntimeError) a `kfitx tune` search cannot start or go on
    ├── UserCodeError            (RuntimeError) a training step or batch hook of the user's failed on a batch
    ├── UnsupportedBackendError  (RuntimeError) the strategy does not declare the active Keras backend
    ├── KerasVersionError        (RuntimeError) this Keras lacks an internal a kfitx feature needs
    └── UnsupportedDataError     (ValueError)   a strategy cannot serve this data
        └── MemoryBudgetError    (MemoryError)  the data does not fit the memory budget

``UntestedVersionWarning`` (a ``UserWarning``, not an error): the installed Keras or keras-tuner lies
outside the versions kfitx is tested with (issued once, when kfitx is imported).

Messages follow one pattern: what was expected, then ``Received: ...``, then what
to do or what is available. Build them with :func:`message`.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AugmentationError",
    "ConformanceError",
    "DataError",
    "KerasVersionError",
    "KfitxError",
    "MemoryBudgetError",
    "ModelError",
    "OptionError",
    "PluginError",
    "StrategyConflictError",
    "StrategyFitError",
    "StrategyNotFoundError",
    "TuneError",
    "UnsupportedBackendError",
    "UnsupportedDataError",
    "UntestedVersionWarning",
    "UserCodeError",
    "WorkerError",
    "describe_error",
    "message",
    "user_code_error",
]


def message(expected: str, received: object, todo: str | None = None) -> str:
    """Formats an error message as ``expected. Received: received. todo``.

    A ``received`` that already ends a sentence (``.``, ``!``, ``?``) gets no second full stop.
    """
    shown = str(received).rstrip()
    text = expected.rstrip(".") + f". Received: {shown}" + ("" if shown.endswith((".", "!", "?")) else ".")
    if todo:
        text += " " + todo.strip()
    return text


def describe_error(error: BaseException, files: Iterable[str | None] = (), limit: int = 500) -> str:
    """One line for an exception: its type, its message and where it was raised.

    ``KeyError: 'accuracy' (raised at kfitx_mixup.py, line 42, in fit)``. The frame shown is the
    innermost one in one of ``files`` (paths of the code to blame, e.g. a plugin's module), else
    the innermost frame of the traceback. A message longer than ``limit`` characters is cut at
    its start, never mid-line at its end.

    Args:
        error: The exception, with its traceback.
        files: Source file paths whose frames to prefer.
        limit: Characters of the message to keep.
    """
    import os
    import traceback

    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " [...]"
    head = f"{type(error).__name__}: {text}" if text else type(error).__name__
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ is not None else []
    wanted = {os.path.realpath(f) for f in files if f}
    ours = [f for f in frames if os.path.realpath(f.filename) in wanted]
    if not frames or (not ours and isinstance(error, KfitxError)):  # kfitx's own words say where
        return head
    frame = (ours or frames)[-1]
    return f"{head} (raised at {os.path.basename(frame.filename)}, line {frame.lineno}, in {frame.name})"


class KfitxError(Exception):
    """Base class of every error kfitx raises on purpose."""


class StrategyNotFoundError(KfitxError, LookupError):
    """No installed strategy has the requested name."""


class StrategyConflictError(KfitxError, LookupError):
    """Two plugins provide a strategy under the same name."""


class OptionError(KfitxError, TypeError):
    """A strategy option or a fit argument is unknown or has a bad value."""


class PluginError(KfitxError, TypeError):
    """A plugin's strategy does not follow kfitx's plugin API (e.g. kfitx 0.1's ``fit`` signature)."""


class StrategyFitError(KfitxError, RuntimeError):
    """A plugin strategy's ``fit`` raised. The message names the strategy, its distribution and version,
    and the line of the plugin's code that raised; the original exception is the ``__cause__``.

    kfitx's own strategies, and every :class:`KfitxError` a plugin raises itself, are not wrapped.
    """


class ModelError(KfitxError, ValueError):
    """The model cannot be trained as given (e.g. it was never compiled)."""


class DataError(KfitxError, ValueError):
    """The data is malformed: mismatched lengths, empty, non-numeric, ..."""


class AugmentationError(KfitxError, ValueError):
    """An augmentation cannot be used as given, or raised / returned a bad batch."""


class WorkerError(KfitxError, RuntimeError):
    """A data worker (thread or process) died, or produced no batch within the timeout."""


class ConformanceError(KfitxError, AssertionError):
    """A strategy breaks a rule of the fit contract (raised by :mod:`kfitx.testing`)."""


class TuneError(KfitxError, RuntimeError):
    """A ``kfitx tune`` search cannot start or go on: no chief answers, the script fails in every worker, ..."""


class UnsupportedDataError(KfitxError, ValueError):
    """The chosen strategy cannot serve this data; another strategy can."""


class MemoryBudgetError(UnsupportedDataError, MemoryError):
    """The data is larger than the strategy's memory budget."""


class UnsupportedBackendError(KfitxError, RuntimeError):
    """The chosen strategy does not declare the active Keras backend (``Strategy.backends``)."""


class KerasVersionError(KfitxError, RuntimeError):
    """The installed Keras (or keras-tuner) lacks an internal that a kfitx feature needs: the message names the
    version, the feature and the versions kfitx is tested with."""


class UntestedVersionWarning(UserWarning):
    """The installed Keras or keras-tuner lies outside the versions kfitx is tested with."""


class UserCodeError(KfitxError, RuntimeError):
    """A function of the user's (a training step, a batch hook) raised, or returned what cannot be trained on.

    The message names the function and the batch; the user's exception is the ``__cause__``.
    """


def user_code_error(what: str, fn: object, where: str, error: BaseException,
                    cls: type[KfitxError] = UserCodeError) -> KfitxError:
    """The one wording of "the user's ``fn`` failed at ``where``": ``cls`` with ``error`` as its cause.

    Args:
        what: What the function is, e.g. ``"batch hook"``, ``"training step"``.
        fn: The function (its name is shown).
        where: Which batch, e.g. ``"step 3 of epoch 1"``.
        error: What it raised.
    """
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    fault = cls(message(f"The {what} {name} to run on every batch without raising",
                        f"{type(error).__name__}({str(error)[:500]!r}) at {where}",
                        f"Fix {name}; the traceback of the cause shows the line that failed."))
    fault.__cause__ = error
    return fault
