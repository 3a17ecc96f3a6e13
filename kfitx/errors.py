"""Every error kfitx raises on purpose.

Each class is also the standard-library exception it behaves like, so code that
already catches ``ValueError`` or ``LookupError`` keeps working::

    KfitxError
    ├── StrategyNotFoundError    (LookupError)  unknown strategy name
    ├── StrategyConflictError    (LookupError)  two plugins claim one name
    ├── OptionError              (TypeError)    unknown or bad strategy option / fit argument
    ├── PluginError              (TypeError)    a plugin's strategy is written against another kfitx API
    ├── ModelError               (ValueError)   the model cannot be trained as given
    ├── DataError                (ValueError)   the data is malformed (a batch included)
    ├── AugmentationError        (ValueError)   an augmentation cannot be used, or failed on a batch
    ├── WorkerError              (RuntimeError) a data worker died, or gave no batch in time
    ├── ConformanceError         (AssertionError) a strategy breaks the fit contract (kfitx.testing)
    ├── TuneError                (RuntimeError) a `kfitx tune` search cannot start or go on
    └── UnsupportedDataError     (ValueError)   a strategy cannot serve this data
        └── MemoryBudgetError    (MemoryError)  the data does not fit the memory budget

Messages follow one pattern: what was expected, then ``Received: ...``, then what
to do or what is available. Build them with :func:`message`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AugmentationError",
    "ConformanceError",
    "DataError",
    "KfitxError",
    "MemoryBudgetError",
    "ModelError",
    "OptionError",
    "PluginError",
    "StrategyConflictError",
    "StrategyNotFoundError",
    "TuneError",
    "UnsupportedDataError",
    "WorkerError",
    "message",
]


def message(expected: str, received: Any, todo: str | None = None) -> str:
    """Formats an error message as ``expected. Received: received. todo``."""
    text = expected.rstrip(".") + f". Received: {received}."
    if todo:
        text += " " + todo.strip()
    return text


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
