"""``auto`` by measurement: a short, timed probe of each interchangeable strategy, on the fit's own model.

Strategies that train to the same weights on the same data (``Strategy.is_interchangeable``:
``memory``, ``loop`` without a step or batch hooks of the user's, ``generator`` without
augmentation, plugins that declare it) differ only in speed, and which is fastest depends on
the model, the data, the backend and the batch size. Separation of concerns:

* :func:`why_not` -- whether a probe is safe and can pay for itself in this fit; if not, why
  (``auto`` then keeps its rules and says so);
* :func:`measure` -- the probe: each candidate trains on the model with the fit's plan cut to two
  short epochs of :func:`probe_steps` batches (three for the first candidate, which also warms
  up the process), in the fit's own steps per call, without validation or any of the user's
  callbacks; :func:`run_candidate` times them. When the first one's training begins (the model
  built as its fit builds it) the model's variables (weights, random-seed states, metrics), the
  optimizer's and Python's, numpy's and torch's random states are saved, and they are put back
  after each candidate, so the probe trains nothing: the fit that follows starts from what it
  would have started from without it;
* :mod:`kfitx.strategies.probe_cache` -- the answers, per model architecture, data signature,
  batch size, steps per call and backend (in this process, and in a keras-tuner search's directory).

The caller (``AutoStrategy``) keeps the model at the fit's steps per call from the probe to the
end of the fit, so the compiled train function a probe made serves the fit that follows.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kfitx import _keras
from kfitx.data import boundary
from kfitx.plan import FitPlan, FitReport
from kfitx.runtime import Runtime
from kfitx.strategy import Strategy

__all__ = ["MARGIN", "MIN_TIMED_STEPS", "PROBE_CALLS", "SHARE", "Outcome", "measure", "probe_steps",
           "run_candidate", "why_not"]

logger = logging.getLogger("kfitx")

#: Compiled calls timed per candidate (at least; see :data:`MIN_TIMED_STEPS`).
PROBE_CALLS = 3
#: Batches timed per candidate, at least (one step per call would otherwise time 3 batches).
MIN_TIMED_STEPS = 32
#: Largest share of the fit's batches the probe may train (warm-up and timed epochs of every candidate):
#: a probe that finds nothing faster costs at most about this much more.
SHARE = 0.1
#: Another strategy replaces the rules' choice only when it is this much faster (timing noise is a few %).
MARGIN = 1.05


def probe_steps(plan: FitPlan) -> int:
    """Batches in each probe epoch: whole compiled calls, :data:`PROBE_CALLS` or more (two at least)."""
    per_call = max(1, plan.steps_per_execution)
    calls = max(PROBE_CALLS, 2, -(-MIN_TIMED_STEPS // per_call))  # the first epoch is timed from its second call
    return per_call * calls


def _fit_steps(plan: FitPlan) -> tuple[int | None, int | None]:
    """Batches per epoch and in the whole fit (``None`` when unknown)."""
    per_epoch = plan.batches_per_epoch
    if per_epoch is None:
        return None, None
    return per_epoch, per_epoch * max(0, plan.epochs - plan.initial_epoch)


def why_not(model: Any, plan: FitPlan, candidates: int) -> str | None:
    """Why a probe of ``candidates`` strategies must not run for this fit, or ``None`` when it may.

    Unsafe: a distribution (every replica and worker must train with the same strategy, and a
    probe's collective steps would be timed on shared devices), data that is not arrays (a probe
    would run a generator's or a PyDataset's code, or read a stream, before training), a model
    whose layers are not built yet (the first batch makes its weights: a probe would make them),
    one that resumes at an epoch a backup set. Not worth it: a fit too short for a probe to take
    at most :data:`SHARE` of its batches, or with epochs shorter than three probe epochs (the probe
    reads one pass of the arrays).
    """
    runtime = plan.runtime
    if runtime.distributed:
        return "under a distribution every replica and worker trains with the same strategy"
    if not plan.train.in_memory:
        return (f"the data is a {plan.train.kind} stream, which a probe would read (and run its code) "
                "before training")
    if not getattr(model, "built", True):
        return "the model is not built yet (its first batch makes its weights); give it a keras.Input"
    if _keras.initial_epoch(model, 0):
        return "the model resumes at an epoch restored from a backup"
    steps = probe_steps(plan)
    probed = (2 * candidates + 1) * steps
    per_epoch, total = _fit_steps(plan)
    if per_epoch is None or total is None or per_epoch < 3 * steps or probed > SHARE * total:
        return (f"the fit is too short for a probe to pay off ({total or 0:,} batches; a probe of "
                f"{candidates} strategies trains {probed:,})")
    return None


@dataclass
class Outcome:
    """What a probe found.

    Attributes:
        samples_per_s: Each candidate's training samples per second in epochs of the fit's length, in probe order.
        steps: Batches in each probe epoch.
        seconds: Wall time of the whole probe.
        failed: Candidates that raised in the probe (other than the first), with the error.
    """

    samples_per_s: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)

    def fastest(self, preferred: str, margin: float = MARGIN) -> str:
        """The fastest candidate; ``preferred`` unless another is at least ``margin`` times faster."""
        best = max(self.samples_per_s, key=self.samples_per_s.__getitem__)
        if preferred in self.samples_per_s and self.samples_per_s[best] < margin * self.samples_per_s[preferred]:
            return preferred
        return best


class _Clock:
    """When each compiled call of the probe began and each epoch ended (``on_epoch_end`` reads the logs first,
    so that an asynchronous backend has finished the epoch's steps), and ``on_begin(model)`` called when training
    begins. It acts per batch, but the probe's plan already fixed the steps per call: the batches are not
    regrouped for it."""

    def __new__(cls) -> Any:
        import keras

        class Clock(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.begins: list[list[float]] = []
                self.ends: list[float] = []
                self.on_begin: Callable[[Any], None] | None = None

            def on_train_begin(self, logs: Any = None) -> None:
                if self.on_begin is not None:
                    self.on_begin(self.model)

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.begins.append([])

            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                self.begins[-1].append(time.perf_counter())

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                for value in (logs or {}).values():
                    np.asarray(keras.ops.convert_to_numpy(value))
                self.ends.append(time.perf_counter())

        return Clock()


def run_candidate(strategy: Strategy, model: Any, plan: FitPlan, epoch_steps: int,
                  on_begin: Callable[[Any], None] | None = None) -> float:
    """Trains ``plan`` (a probe's: two or three epochs of ``plan.steps_per_epoch`` batches) with ``strategy``;
    returns the samples per second it would train at in epochs of ``epoch_steps`` batches.

    The last two epochs are timed. The time between them (callbacks, metrics reset, the next
    epoch's iterator) is an epoch's fixed cost ``o``; the cost ``t`` of one batch is the quicker of
    the two epochs' (the first epoch's from its second compiled call: the first traces or compiles,
    and fills the pipeline), each to its end, as a pause of the machine's in one of them is no
    property of the strategy. An epoch of the fit takes ``o + epoch_steps * t``.
    ``on_begin(model)`` is called when training begins (the model built as this fit builds it).
    The one place a probe trains (tests stub its timings here).
    """
    clock = _Clock()
    clock.on_begin = on_begin
    with boundary():
        strategy.fit(model, dataclasses.replace(plan, callbacks=[clock]))
    if len(clock.ends) != plan.epochs or len(clock.begins[0]) < 2 or not clock.begins[-1]:
        raise RuntimeError(f"the probe of '{strategy.name}' ran {len(clock.ends)} epoch(s) of {plan.epochs}, "
                           f"{sum(map(len, clock.begins))} compiled call(s)")
    steps, per_call = plan.steps_per_epoch or 0, plan.steps_per_execution
    per_batch = []
    for epoch in (plan.epochs - 2, plan.epochs - 1):
        skip = 1 if epoch == 0 else 0
        per_batch.append((clock.ends[epoch] - clock.begins[epoch][skip]) / (steps - skip * per_call))
    between = max(0.0, clock.begins[-1][0] - clock.ends[-2])
    return epoch_steps * plan.batch_size / (between + epoch_steps * max(min(per_batch), 1e-9))


class _Snapshot:
    """The model's and the optimizer's variables and Python's, numpy's (and torch's) random states, put back by
    :meth:`restore`."""

    def __init__(self, model: Any, runtime: Runtime) -> None:
        import keras

        self.model, self.runtime = model, runtime
        optimizer = getattr(model, "optimizer", None)
        self.variables = [*model.variables, *getattr(model, "metrics_variables", []),
                          *(optimizer.variables if optimizer is not None else [])]
        self.values = [np.array(keras.ops.convert_to_numpy(v.value)) for v in self.variables]
        self.python = random.getstate()
        self.numpy = np.random.get_state()
        self.backend = runtime.random_state()

    def restore(self) -> None:
        for variable, value in zip(self.variables, self.values):
            variable.assign(value)
        optimizer = getattr(self.model, "optimizer", None)
        known = {id(v) for v in self.variables}
        made = [v for v in [*self.model.variables, *(optimizer.variables if optimizer is not None else [])]
                if id(v) not in known]
        if made:  # made during the probe, after the snapshot: their values are the probe's
            logger.warning("kfitx auto: the model made variables during the probe, which it cannot put back: %s",
                           ", ".join(v.path for v in made))
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        self.runtime.set_random_state(self.backend)


def measure(model: Any, candidates: Sequence[tuple[Strategy, FitPlan]]) -> Outcome:
    """Times each of ``candidates`` (a strategy and its plan for this fit) on ``model``; trains nothing.

    The first candidate is the one ``auto``'s rules chose: what it raises is raised (the
    fit would raise it too). Another that raises is left out, named in ``Outcome.failed``.
    What is put back after each is what the first one's fit held when its training began:
    the model built as that fit builds it (an unbuilt optimizer, compiled metrics and loss
    built, from a first batch it read as that fit reads it) and the random states after
    that, so the fit that follows, finding them built, draws what it would have drawn.
    """
    started = time.perf_counter()
    saved: list[_Snapshot] = []

    def begin(model: Any) -> None:
        if saved:
            return
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not optimizer.built:  # a TensorFlow loop builds it at its first step
            optimizer.build(model.trainable_variables)  # as that step would: its initial values, saved now
        saved.append(_Snapshot(model, candidates[0][1].runtime))

    outcome = Outcome(steps=probe_steps(candidates[0][1]))
    epoch_steps = _fit_steps(candidates[0][1])[0] or outcome.steps
    for index, (strategy, plan) in enumerate(candidates):
        steps = probe_steps(plan)
        probe = dataclasses.replace(  # the first candidate warms up the process too: one epoch more
            plan, epochs=3 if index == 0 else 2, initial_epoch=0, steps_per_epoch=steps, validation=None,
            validation_steps=None, callbacks=[], verbose=0,
            report=FitReport(plan.strategy, plan.steps_per_execution, plan.grouping,
                             automatic=plan.automatic_grouping))
        try:
            began = time.perf_counter()
            outcome.samples_per_s[strategy.name] = run_candidate(strategy, model, probe, epoch_steps, begin)
            logger.debug("kfitx auto: probe of '%s' took %.3f s", strategy.name, time.perf_counter() - began)
        except Exception as err:  # a candidate the probe cannot time is left out, and named
            if index == 0:
                raise
            outcome.failed[strategy.name] = f"{type(err).__name__}: {err}"
            logger.warning("kfitx auto: the probe of '%s' failed and it is left out: %s: %s",
                           strategy.name, type(err).__name__, err)
        finally:
            if saved:
                saved[0].restore()
    seed = candidates[0][1].seed
    if seed is not None:  # TensorFlow's seeded ops and Keras's global generator start again, as the plan left them
        import keras

        keras.utils.set_random_seed(seed)
        if saved:
            saved[0].restore()  # and Python's, numpy's and torch's as the first fit left them when it began
    outcome.seconds = time.perf_counter() - started
    return outcome
