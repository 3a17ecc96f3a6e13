"""The training runs the conformance rules read: each made once, when a rule first needs it.

:class:`Checker` trains the kit's tiny model on its tiny data through the
strategy under test and through the built-in ``memory`` strategy (the reference:
it is ``model.fit``), both through ``kfitx.fit``, so a strategy is checked as
users run it. :class:`Broken` and :class:`Skip` are how a rule says what it found.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import keras

from kfitx.data import Source, arrays
from kfitx.strategy import Strategy
from kfitx.testing.spy import HOOKS, Spy, tiny_data, tiny_model

__all__ = ["BATCH_HOOKS", "Broken", "Checker", "Skip"]

BATCH_HOOKS = {h for h in HOOKS if "batch" in h}


class Skip(Exception):
    """A rule that cannot apply here; the message says why."""


class Broken(Exception):
    def __init__(self, expected: str, received: Any, fix: str) -> None:
        super().__init__(expected)
        self.expected, self.received, self.fix = expected, received, fix


@dataclass
class _Run:
    """One training run: the model, what ``fit`` returned or raised, and the spy."""

    model: Any
    history: Any = None
    error: BaseException | None = None
    spy: Spy | None = None

    @property
    def calls(self) -> list[tuple[Any, ...]]:
        """The spy's calls (every run :meth:`Checker.run` makes has a spy)."""
        assert self.spy is not None
        return self.spy.calls

    def ok(self, what: str) -> _Run:
        if self.error is not None:
            raise Broken(f"fit() to run ({what})", f"{type(self.error).__name__}: {self.error}",
                         "Fix the error above; the other rules' results may depend on it.")
        return self


class _StopAtBatch(keras.callbacks.Callback):
    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch = batch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if batch == self.batch:
            self.model.stop_training = True


class Checker:
    """The strategy under test, the kit's data, and the runs the rules read (each made once)."""

    def __init__(self, strategy: type[Strategy], options: Mapping[str, Any], *, tolerance: float | None,
                 plugin: Any, make_source: Callable[[Any, Any], Source] | None,
                 build_model: Callable[[int], Any] | None) -> None:
        self.cls = strategy
        self.options = dict(options)
        self.tolerance = tolerance
        self.plugin = plugin
        self.make_source = make_source or (lambda x, y: arrays(x, y))
        self.build_model = build_model or (lambda seed: tiny_model(seed))
        x, y = tiny_data(250)
        self.x, self.y, self.x_val, self.y_val = x[:200], y[:200], x[200:], y[200:]
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

    def _fit(self, strategy: Strategy, source: Source, callbacks: list[Any], **fit_args: Any) -> _Run:
        from kfitx.api import fit

        run = _Run(self.build_model(0))
        try:
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

        if key.startswith("reference"):
            strategy: Strategy = MemoryStrategy(memory_budget=None)
            source: Source = arrays(self.x, self.y)
        else:
            strategy, source = self.instance(), self.make_source(self.x, self.y)
        if key.endswith("full"):
            spy = Spy()
            run = self._fit(strategy, source, [spy], epochs=2, validation_data=(self.x_val, self.y_val))
        elif key.endswith("resume"):
            spy = Spy([h for h in HOOKS if h not in BATCH_HOOKS])
            run = self._fit(strategy, source, [spy], epochs=3, initial_epoch=1)
        elif key == "early":
            spy = Spy(["on_epoch_end", "on_train_end"])
            stop = keras.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=1)
            run = self._fit(strategy, source, [stop, spy], epochs=10)
        elif key == "stop":
            spy = Spy(["on_epoch_begin", "on_train_batch_begin", "on_train_batch_end", "on_train_end"])
            run = self._fit(strategy, source, [_StopAtBatch(1), spy], epochs=3)
        else:  # pragma: no cover - a typo in this module
            raise KeyError(key)
        run.spy = spy
        self._runs[key] = run
        return run
