"""The training runs the conformance rules read: each made once, when a rule first needs it.

:class:`Checker` trains the kit's tiny model on its tiny data through the
strategy under test and through the built-in ``memory`` strategy (the reference:
it is ``model.fit``), both through ``kfitx.fit``, so a strategy is checked as
users run it. :class:`Broken` and :class:`Skip` are how a rule says what it found.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import keras
import numpy as np

from kfitx.data import Source, arrays
from kfitx.errors import StrategyFitError, UnsupportedDataError, describe_error
from kfitx.strategy import Strategy
from kfitx.testing.spy import HOOKS, Call, Spy, tiny_data, tiny_model

__all__ = ["BATCH_HOOKS", "Broken", "Checker", "Skip"]

BATCH_HOOKS = {h for h in HOOKS if "batch" in h}


class Skip(Exception):
    """A rule that cannot apply here; the message says why."""


class Broken(Exception):
    def __init__(self, expected: str, received: object, fix: str) -> None:
        super().__init__(expected)
        self.expected, self.received, self.fix = expected, received, fix


@dataclass
class _Run:
    """One training run: the model, what ``fit`` returned or raised, and the spy."""

    model: keras.Model
    history: keras.callbacks.History = None  # what fit returned; None until it returns
    error: BaseException | None = None
    spy: Spy | None = None
    interrupted: bool = False
    first_error: BaseException | None = None

    @property
    def calls(self) -> list[Call]:
        """The spy's calls (every run :meth:`Checker.run` makes has a spy)."""
        assert self.spy is not None
        return self.spy.calls

    reference: bool = False
    files: tuple[str, ...] = ()

    def ok(self, what: str) -> _Run:
        if self.error is None:
            return self
        error = self.error
        if isinstance(error, StrategyFitError) and error.__cause__ is not None:
            error = error.__cause__  # kfitx.fit names the plugin; the kit shows what the plugin raised
        received = describe_error(error, self.files)
        if self.reference:
            raise Broken(f"the reference run (the same fit through 'memory', which is model.fit: {what}) to train "
                         "on the kit's data and model", received,
                         "The kit's setup failed, not the strategy: make_source must give data model.fit trains "
                         "on, and build_model a model compiled for it (the same make_source serves the training "
                         "data, the validation data and the reference run).")
        if isinstance(error, UnsupportedDataError):
            raise Broken(f"fit() to run ({what}) on the kit's data", received,
                         "Give the kit data your strategy serves: make_source= (check_strategy, StrategyConformance) "
                         "or --source MODULE:FUNCTION (kfitx check), with build_model= / --model for a model "
                         "compiled for it.")
        raise Broken(f"fit() to run ({what})", received,
                     "Fix that error first; the other rules' results may depend on it.")


class _StopAtBatch(keras.callbacks.Callback):
    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch = batch

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        if batch == self.batch:
            self.model.stop_training = True


class _Interrupted(Exception):
    """What :class:`_Interrupt` raises: the kit's stand-in for a process killed mid-fit."""


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if epoch == self.epoch:
            raise _Interrupted(f"the kit interrupts the fit after epoch {epoch}")


class Checker:
    """The strategy under test, the kit's data, and the runs the rules read (each made once)."""

    def __init__(self, strategy: type[Strategy], options: Mapping[str, object], *, tolerance: float | None,
                 plugin: object, make_source: Callable[[np.ndarray, np.ndarray], Source] | None,
                 build_model: Callable[[int], keras.Model] | None) -> None:
        self.cls = strategy
        self.options = dict(options)
        self.tolerance = tolerance
        self.plugin = plugin
        self.make_source = make_source or (lambda x, y: arrays(x, y))
        self.build_model = build_model or (lambda seed: tiny_model(seed))
        x, y = tiny_data(250)
        self.x, self.y, self.x_val, self.y_val = x[:200], y[:200], x[200:], y[200:]
        module = sys.modules.get(getattr(strategy, "__module__", ""))
        #: Source files of the strategy's code: the frames a failure shows.
        self.files = tuple(f for f in (getattr(module, "__file__", None),) if f)
        self._runs: dict[str, _Run] = {}
        self.threads_before = set(threading.enumerate())
        self.children_before = self._children()

    @property
    def name(self) -> str:
        return getattr(self.cls, "name", "") or self.cls.__name__

    def instance(self) -> Strategy:
        return self.cls(**self.options)

    @staticmethod
    def _children() -> set[int]:
        import psutil

        return {p.pid for p in psutil.Process().children(recursive=True)}

    def source(self, which: str = "train") -> Source:
        """The kit's training (``"train"``) or validation (``"validation"``) data, through ``make_source``
        (which may give any input ``kfitx.fit`` takes, a plugin's source kind included).

        A fresh source each call: a run never reads a source another run has read.
        """
        from kfitx.registry import get_registry

        x, y = (self.x, self.y) if which == "train" else (self.x_val, self.y_val)
        return get_registry().coerce(self.make_source(x, y))  # a plugin's input too, as kfitx.fit takes it

    def _fit(self, strategy: Strategy, source: Source, callbacks: list[keras.callbacks.Callback], *,
             model: keras.Model | None = None, reference: bool = False, **fit_args: object) -> _Run:
        from kfitx.api import fit, outcome_checks

        run = _Run(self.build_model(0) if model is None else model, reference=reference, files=self.files)
        try:
            with outcome_checks(False):  # the rules say more than kfitx.fit's own checks of a plugin's fit
                run.history = fit(run.model, source, strategy=strategy, callbacks=callbacks, verbose=0, seed=0,
                                  batch_size=32, shuffle=False, **fit_args)
        except Exception as err:  # the rules report it
            run.error = err
        return run

    def run(self, key: str) -> _Run:
        """The named run, made on first use: ``reference-*`` through 'memory', the others through the strategy."""
        if key in self._runs:
            return self._runs[key]
        from kfitx.strategies.memory import MemoryStrategy

        reference = key.startswith("reference")
        strategy: Strategy = MemoryStrategy(memory_budget=None) if reference else self.instance()
        source, fit = self.source("train"), functools.partial(self._fit, reference=reference)
        epoch_hooks = [h for h in HOOKS if h not in BATCH_HOOKS]
        if key.endswith("full"):
            spy = Spy()
            run = fit(strategy, source, [spy], epochs=2, validation_data=self.source("validation"))
        elif key.endswith("resume"):
            spy = Spy(epoch_hooks)
            run = fit(strategy, source, [spy], epochs=3, initial_epoch=1)
        elif key.endswith("backup"):
            spy = Spy(epoch_hooks)
            run = self._backup_run(strategy, source, spy, reference)
        elif key == "early":
            spy = Spy(["on_epoch_end", "on_train_end"])
            stop = keras.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=1)
            run = fit(strategy, source, [stop, spy], epochs=10)
        elif key == "stop":
            spy = Spy(["on_epoch_begin", "on_train_batch_begin", "on_train_batch_end", "on_train_end"])
            run = fit(strategy, source, [_StopAtBatch(1), spy], epochs=3)
        else:  # pragma: no cover - a typo in this module
            raise KeyError(key)
        run.spy = spy
        self._runs[key] = run
        return run

    def _backup_run(self, strategy: Strategy, source: Source, spy: Spy, reference: bool) -> _Run:
        """``BackupAndRestore``: a fit of 3 epochs interrupted after epoch 1, then the same fit again on a fresh
        model, which resumes at epoch 2 from the backup. The run is the second fit; ``interrupted`` says
        whether the first ended with the callback's exception."""
        with tempfile.TemporaryDirectory(prefix="kfitx-check-backup-") as directory:
            first = self._fit(strategy, source, [keras.callbacks.BackupAndRestore(directory), _Interrupt(1)],
                              epochs=3, reference=reference)
            error = first.error
            interrupted = any(isinstance(e, _Interrupted) for e in (error, getattr(error, "__cause__", None)))
            again = strategy if reference else self.instance()
            run = self._fit(again, source, [keras.callbacks.BackupAndRestore(directory), spy], epochs=3,
                            reference=reference)
        run.interrupted = interrupted
        run.first_error = error
        return run
