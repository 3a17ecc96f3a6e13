"""kfitx: train one Keras model in memory, streamed, or in a custom loop, behind one interface.

```python
import kfitx
history = kfitx.fit(model, kfitx.data.arrays(x, y), strategy="memory", epochs=5)
```

``__all__`` is what users and plugin authors need: ``fit`` and ``explain``, the errors, the
registry's faces, and the strategy API (``Strategy``, ``FitPlan``, ``FitRequest``, ``Choice``,
``Decision``, ``hookimpl``, ``fit_loop``, ``TrainStep``). Internals stay in their modules:
``kfitx.plan.FIT_ARGS`` and ``FitReport``, ``kfitx.hookspecs.hookspec``, ``kfitx.registry.StrategyInfo``.
"""

from __future__ import annotations

import importlib.metadata

from kfitx import augment, compat, data
from kfitx._keras import versions as _versions
from kfitx.api import explain, fit
from kfitx.engine import TrainStep, fit_loop
from kfitx.errors import (
    AugmentationError,
    ConformanceError,
    DataError,
    KfitxError,
    MemoryBudgetError,
    ModelError,
    OptionError,
    PluginError,
    StrategyConflictError,
    StrategyFitError,
    StrategyNotFoundError,
    UnsupportedBackendError,
    UnsupportedDataError,
    UserCodeError,
    WorkerError,
)
from kfitx.hookspecs import hookimpl
from kfitx.plan import FitPlan
from kfitx.registry import PluginWarning, available_strategies, get_strategy, register
from kfitx.runtime.startup import quiet_start
from kfitx.strategy import Choice, Decision, FitRequest, Strategy

# A Keras or keras-tuner outside the versions kfitx is tested with: one warning, never a refusal.
_versions.warn_if_untested()

try:
    __version__ = importlib.metadata.version("kfitx")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "unknown"

__all__ = [
    "AugmentationError",
    "Choice",
    "ConformanceError",
    "DataError",
    "Decision",
    "FitPlan",
    "FitRequest",
    "KfitxError",
    "MemoryBudgetError",
    "ModelError",
    "OptionError",
    "PluginError",
    "PluginWarning",
    "Strategy",
    "StrategyConflictError",
    "StrategyFitError",
    "StrategyNotFoundError",
    "TrainStep",
    "UnsupportedBackendError",
    "UnsupportedDataError",
    "UserCodeError",
    "WorkerError",
    "__version__",
    "augment",
    "available_strategies",
    "compat",
    "data",
    "explain",
    "fit",
    "fit_loop",
    "get_strategy",
    "hookimpl",
    "quiet_start",
    "register",
]
