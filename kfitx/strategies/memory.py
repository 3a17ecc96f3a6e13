"""The ``memory`` strategy: the whole training set in RAM, no augmentation (Keras's ``model.fit(x, y)``).

It delegates to ``model.fit``, so callbacks, History, the progress bar,
``stop_training``, ``initial_epoch`` and ``BackupAndRestore`` behave exactly as
Keras makes them behave. Two things differ, both invisible to callbacks:

* on TensorFlow the arrays are fed through their source's tf.data stream
  (:func:`kfitx.data.arrays.array_dataset`), which holds at most one copy of
  them (none for memory maps and aligned arrays) where ``model.fit`` holds two;
  on JAX and torch Keras's own array adapter cuts them, as in ``model.fit``
  (memory maps keep the stream: :func:`kfitx.data.keras_cuts`);
* when no callback acts per batch, several steps run per compiled call
  (decided by the plan, :mod:`kfitx.plan`); the choice is in ``history.kfitx``.

Arrays larger than ``memory_budget`` are refused with an error that names the
``generator`` strategy. Everything else ``model.fit`` takes (tf.data, PyDatasets,
generators, torch ``DataLoader``, Grain, ragged and sparse tensors) is handed to
``model.fit`` as it is.
"""

from __future__ import annotations

from typing import Any

import psutil

from kfitx.data import Source
from kfitx.errors import MemoryBudgetError, OptionError, UnsupportedDataError, message
from kfitx.hookspecs import hookimpl
from kfitx.plan import FitPlan
from kfitx.strategy import BACKENDS, Strategy


class MemoryStrategy(Strategy):
    """Trains on arrays held in memory through ``model.fit``.

    Options:
        memory_budget: Largest data set accepted: a fraction in (0, 1] of the RAM
            available (counting the arrays already loaded as available), a number
            of bytes (int), or ``None`` for no limit. Default 0.5, which for arrays
            already in RAM means: refuse unless there is room for one more copy.
        steps_per_execution: ``"auto"`` (group 16 steps per call when no callback
            acts per batch, else 1) or a positive int (always that many).
    """

    name = "memory"
    backends = BACKENDS
    description = "Arrays in RAM through model.fit: zero-copy input, grouped steps when no callback acts per batch"
    defaults = {"memory_budget": 0.5, "steps_per_execution": "auto"}
    interchangeable = True

    def budget_bytes(self, source: Source) -> float:
        """The memory budget in bytes for ``source`` (``memory_budget`` resolved; ``inf`` for ``None``)."""
        budget = self.options["memory_budget"]
        if budget is None:
            return float("inf")
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0 or (
            isinstance(budget, float) and budget > 1
        ):
            raise OptionError(
                message("`memory_budget` must be a fraction in (0, 1], a number of bytes (int), or None",
                        repr(budget))
            )
        if isinstance(budget, float):
            return budget * (psutil.virtual_memory().available + source.resident_nbytes)
        return float(budget)

    def sizes(self, source: Source) -> tuple[float, float]:
        """The bytes the arrays of ``source`` take and the memory budget: ``memory`` serves them when the first
        is not over the second (``auto`` reads the same rule to choose between ``memory`` and ``generator``)."""
        return float(source.nbytes or 0), self.budget_bytes(source)  # arrays know their size

    def supports(self, source: Source) -> str | None:
        if not source.in_memory:  # model.fit reads it as it is
            return None
        nbytes, budget = self.sizes(source)
        if nbytes > budget:
            return (
                f"The data needs {nbytes / 2**30:.2f} GiB, over the memory budget of "
                f"{budget / 2**30:.2f} GiB. Use strategy='generator', which streams batches "
                "from memory-mapped files (kfitx.data.npy), or raise memory_budget."
            )
        return None

    def require(self, source: Source) -> None:
        try:
            super().require(source)
        except UnsupportedDataError as err:
            if source.in_memory:
                raise MemoryBudgetError(str(err)) from None
            raise

    def fit(self, model: Any, plan: FitPlan) -> Any:
        with plan.grouped(model):
            return model.fit(**plan.fit_kwargs(plan.train_input(passthrough=True),
                                               plan.validation_input(passthrough=True)))


@hookimpl
def kfitx_strategies() -> list[type[Strategy]]:
    return [MemoryStrategy]
