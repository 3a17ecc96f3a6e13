"""What a keras-tuner trial cost: kfitx's ``kfitx_fit`` wrapper measuring each fit in a trial.

* :func:`kfitx_fit` -- a wrapper that, when the fit runs inside a
  keras-tuner trial (keras-tuner's ``TunerCallback`` is among the callbacks),
  measures what the trial cost: seconds, samples per second and peak resident
  memory. They go into ``history.kfitx`` and, as one constant per epoch, into the
  History (``kfitx_samples_per_s``, ``kfitx_peak_rss_mib``), where keras-tuner
  records them next to the score.

It is registered in every registry (``kfitx.registry.CORE_PLUGINS``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any

import psutil

from kfitx import _keras
from kfitx.hookspecs import hookimpl
from kfitx.plan import FitPlan
from kfitx.strategy import Strategy

__all__ = ["PEAK_RSS_MIB", "SAMPLES_PER_S", "PeakRSS", "kfitx_fit"]

#: History keys added inside a keras-tuner trial (constant over the epochs of one trial).
SAMPLES_PER_S = "kfitx_samples_per_s"
PEAK_RSS_MIB = "kfitx_peak_rss_mib"


class PeakRSS:
    """Samples this process's resident memory in a thread; ``peak`` is the maximum seen."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kfitx-peak-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5 * self.interval + 1.0)  # bounded: the loop wakes every interval
        self.peak = max(self.peak, self.process.memory_info().rss)


def _samples_per_epoch(plan: FitPlan) -> int:
    if plan.train.num_samples is not None and plan.steps_per_epoch is None:
        return plan.train.num_samples
    return (plan.batches_per_epoch or 0) * plan.batch_size


@hookimpl(wrapper=True)
def kfitx_fit(strategy: Strategy, model: Any, plan: FitPlan) -> Generator[None, Any, Any]:
    """Measures the fit when it runs inside a keras-tuner trial (see the module docstring)."""
    tuner_callback, _ = _keras.tuner_callbacks(plan.callbacks)
    if tuner_callback is None:
        return (yield)
    with PeakRSS() as memory:
        start = time.perf_counter()
        history = yield
        seconds = time.perf_counter() - start
    if not hasattr(history, "epoch") or not hasattr(history, "history"):
        return history  # not a History: kfitx.fit says so, naming the strategy
    samples_per_s = _samples_per_epoch(plan) * len(history.epoch) / seconds if seconds > 0 else 0.0
    peak = memory.peak / 2**20
    history.history[SAMPLES_PER_S] = [samples_per_s] * len(history.epoch)
    history.history[PEAK_RSS_MIB] = [peak] * len(history.epoch)
    plan.report.note(samples_per_s=samples_per_s, peak_rss_mib=peak, seconds=seconds)
    return history
