"""The ``auto`` strategy: the classic rules for choosing between ``fit``, ``fit_generator`` and ``train_on_batch``,
then, among the strategies that would train the same weights, the fastest by measurement.

* a custom ``step`` or ``batch_hooks``      -> ``loop`` (only it runs user code per batch);
* augmentation, a stream (generator, PyDataset, tf.data), or arrays over the
  memory budget                             -> ``generator``;
* arrays that fit the budget, no augmentation -> ``memory``.

The memory budget is the ``memory`` strategy's own rule (:meth:`MemoryStrategy.sizes`, its
``memory_budget`` option and default). The choice is the ``kfitx_choose_strategy`` hook (first
answer wins): an installed plugin can answer first; these rules answer last. :func:`kfitx.explain`
gives the decision without training; ``kfitx.fit`` logs it in one line (and prints it when
``verbose`` is not 0) and records it in ``history.kfitx``.

``auto`` is an ordinary strategy: it does all this in :meth:`AutoStrategy.choose`, the hook
``kfitx.fit`` enters for every strategy (:meth:`kfitx.Strategy.choose`), with the fit's registry
from the request. When the rules chose an interchangeable strategy (``Strategy.is_interchangeable``:
it trains to ``model.fit``'s weights) and the fit allows it, it times a short probe of every
interchangeable strategy that serves the data (:mod:`kfitx.strategies.probe`) and trains with the
fastest; ``history.kfitx["probe"]`` holds the figures. ``probe=False`` keeps the rules.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kfitx.data import Source
from kfitx.errors import KfitxError, OptionError, StrategyNotFoundError, message
from kfitx.hookspecs import hookimpl
from kfitx.plan.grouping import steps_per_execution
from kfitx.strategies import probe as probes
from kfitx.strategies import probe_cache
from kfitx.strategies.generator import GeneratorStrategy
from kfitx.strategies.loop import LoopStrategy
from kfitx.strategies.memory import MemoryStrategy
from kfitx.strategy import BACKENDS, Choice, Decision, FitRequest, Strategies, Strategy

if TYPE_CHECKING:  # pragma: no cover
    from kfitx.plan import FitPlan

__all__ = ["AutoStrategy", "Decision", "decide"]

logger = logging.getLogger("kfitx")

_CHOICES: dict[str, type[Strategy]] = {"memory": MemoryStrategy, "generator": GeneratorStrategy,
                                       "loop": LoopStrategy}


def _merged_defaults() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for cls in _CHOICES.values():
        for key, value in cls.defaults.items():
            merged.setdefault(key, value)
    return merged


def _taken(cls: type[Strategy], options: dict[str, Any]) -> dict[str, Any]:
    """The options ``cls`` takes, of ``options``."""
    return {k: v for k, v in options.items() if k in cls.defaults}


#: The options the rules read themselves (never named "unused": they decided).
_READ_BY_RULES = ("memory_budget",)


def _size(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def decide(source: Source, options: dict[str, Any]) -> Decision:
    """Applies the rules in the module docstring to ``source`` and the given (non-default) options."""
    step, hooks, augment = options.get("step"), options.get("batch_hooks"), options.get("augment")
    if (step is not None or hooks) and augment is not None:
        raise OptionError(message(
            "auto chooses `loop` for a custom step or batch hooks and `generator` for augmentation; "
            "it cannot do both",
            "step/batch_hooks and augment together",
            "Augment in a batch hook (strategy='loop'), or drop step / batch_hooks."))
    if step is not None or hooks:
        name = "loop"
        reason = "a custom " + ("step" if step is not None else "batch hook") + \
                 " runs per batch, which only the loop strategy does"
    elif augment is not None:
        name = "generator"
        reason = "augmentation on the fly is the generator strategy's job"
    elif not source.in_memory:
        name = "generator"
        reason = f"the data is a {source.kind} stream, not arrays in memory"
    else:
        nbytes, budget = MemoryStrategy(**_taken(MemoryStrategy, options)).sizes(source)  # memory's own rule
        if nbytes > budget:
            name = "generator"
            reason = (f"the arrays ({_size(nbytes)}) are over the memory budget of {_size(budget)}, "
                      "so they are streamed")
        else:
            name = "memory"
            reason = (f"the arrays ({_size(nbytes)}) fit the memory budget of {_size(budget)} "
                      "and there is no augmentation")
    return _decision(name, reason, _CHOICES[name], options)


def _decision(name: str, reason: str, cls: type[Strategy], options: dict[str, Any]) -> Decision:
    """The decision for ``cls``: the options it takes passed on, the others named (but those the rules read)."""
    unused = tuple(sorted(k for k in options if k not in cls.defaults and k not in _READ_BY_RULES))
    return Decision(name, reason, _taken(cls, options), unused)


@hookimpl(trylast=True)
def kfitx_choose_strategy(source: Source, options: dict[str, Any]) -> Decision:
    return decide(source, options)


class AutoStrategy(Strategy):
    """Chooses ``memory``, ``generator`` or ``loop`` by the rules in the module docstring (or a plugin's).

    Options: every option of the three strategies; those the chosen one does not
    take are ignored (and named in the decision).
    """

    name = "auto"
    backends = BACKENDS
    description = "Chooses memory, generator or loop from the data and options (or a plugin's rule), and says why"
    defaults = {**_merged_defaults(), "probe": True}
    renamed_options = {old: new for cls in _CHOICES.values() for old, new in cls.renamed_options.items()}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(self.options["probe"], bool):
            raise OptionError(message("`probe` must be True (time the strategies that train the same weights, "
                                      "train with the fastest) or False (the rules alone)",
                                      f"probe={self.options['probe']!r}"))
        self.given = {k: v for k, v in options.items() if k != "probe"}  # what the user set: the rules look at these

    def decision(self, source: Source, registry: Strategies | None = None) -> Decision:
        """What ``auto`` chooses for ``source``: the answer of ``registry``'s ``kfitx_choose_strategy`` hook
        (kfitx's rules answer last; without a registry, the rules alone), checked."""
        decision = None if registry is None else registry.pm.hook.kfitx_choose_strategy(source=source,
                                                                                        options=dict(self.given))
        if decision is None:  # no registry, or one without kfitx's built-ins
            decision = decide(source, self.given)
        if not isinstance(decision, Decision):
            raise OptionError(message("kfitx_choose_strategy to return a kfitx.Decision or None",
                                      repr(decision), "Fix the plugin that answered."))
        return decision

    @staticmethod
    def _made(decision: Decision, registry: Strategies | None) -> Strategy:
        """The strategy ``decision`` names, made with its options (from ``registry`` where it has it)."""
        if registry is not None:
            try:
                return registry.get(registry.strategy_class(decision.strategy), **decision.options)
            except StrategyNotFoundError:
                if decision.strategy not in _CHOICES:
                    raise
        # kfitx's own rules chose a built-in that this registry lacks (one made with builtins=False)
        return _CHOICES[decision.strategy](**decision.options)

    @contextlib.contextmanager
    def choose(self, request: FitRequest) -> Iterator[Choice]:
        """The strategy the rules (or a plugin) choose, or the fastest by a probe (see the module docstring).

        The body is the fit: the model stays at the plan's steps per call until it ends, so that the
        compiled function a probe made serves it.
        """
        decision = self.decision(request.source, request.registry)
        chosen = self._made(decision, request.registry)
        plan = request.plan(chosen)
        with self._measured(request, chosen, decision, plan) as choice:
            yield choice

    def supports(self, source: Source) -> str | None:
        return self._made(self.decision(source), None).supports(source)

    def _candidates(self, chosen: Strategy, source: Source, backend: str,
                    registry: Strategies) -> tuple[list[Strategy], dict[str, str]]:
        """``chosen`` first, then every other installed interchangeable strategy that serves ``source`` on
        ``backend``, each made with the options it takes; and those left out for an error in their options."""
        found, refused = [chosen], {}
        for info in registry.available():
            if not info.cls.interchangeable or info.name in (chosen.name, self.name):
                continue
            try:
                other = registry.get(registry.strategy_class(info.name), **_taken(info.cls, self.given))
            except KfitxError as err:  # an option this one refuses, or two plugins claiming the name
                refused[info.name] = f"{type(err).__name__}: {err}"
                continue
            if other.is_interchangeable() and backend in other.backends and other.supports(source) is None:
                found.append(other)
        return found, refused

    def _skipped(self, decision: Decision, plan: FitPlan, why: str, say: bool = True) -> Decision:
        """``decision`` with why no probe ran (in ``history.kfitx["probe"]``, and, with ``say``, in the reason)."""
        plan.report.note(probe={"skipped": why})
        if not say:
            return decision
        return Decision(decision.strategy, f"{decision.reason}; not probed: {why}", decision.options,
                        decision.unused)

    @contextlib.contextmanager
    def _measured(self, request: FitRequest, chosen: Strategy, decision: Decision,
                  plan: FitPlan) -> Iterator[Choice]:
        """The rules' choice (``chosen``, its ``plan``, ``decision``), or the fastest interchangeable strategy by
        a probe; the candidates come from the request's registry, their plans from ``request.plan``."""
        model, source = request.model, request.source
        if not self.options["probe"]:
            yield Choice(chosen, plan, decision)
            return
        try:
            by_rules = decide(source, self.given) == decision
        except OptionError:
            by_rules = False
        if not by_rules:
            yield Choice(chosen, plan, self._skipped(decision, plan, "a plugin made the choice "
                                                                     "(kfitx_choose_strategy)", say=False))
            return
        if not chosen.is_interchangeable():  # the rules' reason says why only it trains so
            yield Choice(chosen, plan, self._skipped(decision, plan, f"no other strategy trains as {chosen.name} "
                                                                     "does with these options", say=False))
            return
        candidates, refused = self._candidates(chosen, source, plan.runtime.backend, request.registry)
        why = ("no other installed strategy trains the same weights on this data" if len(candidates) < 2
               else probes.why_not(model, plan, len(candidates)))
        if why:
            yield Choice(chosen, plan, self._skipped(decision, plan, why))
            return
        names = [c.name for c in candidates]
        digest = probe_cache.key(model, plan, names)
        # every plan before the probe: one made while the model is held at the plan's steps per call would
        # take that grouping for the model's own
        plans = [plan, *(request.plan(c) for c in candidates[1:])]
        with steps_per_execution(model, plan.steps_per_execution):
            answer = probe_cache.recall(digest, plan.callbacks)
            if answer is not None and answer["strategy"] in names:
                report = {**answer, "cached": True}
            else:
                outcome = probes.measure(model, list(zip(candidates, plans)))
                answer = {"strategy": outcome.fastest(chosen.name), "steps": outcome.steps,
                          "samples_per_s": {k: round(v, 1) for k, v in outcome.samples_per_s.items()}}
                probe_cache.remember(digest, answer, plan.callbacks)
                report = {**answer, "cached": False, "seconds": round(outcome.seconds, 3),
                          **({"failed": outcome.failed} if outcome.failed else {})}
            if refused:
                report["refused"] = refused
            best, plan = next((c, p) for c, p in zip(candidates, plans) if c.name == answer["strategy"])
            plan.report.note(probe=report)
            yield Choice(best, plan, self._probed(decision, best, report))

    def _probed(self, decision: Decision, best: Strategy, report: dict[str, Any]) -> Decision:
        speeds = report["samples_per_s"]
        others = ", ".join(f"{name} {value:,.0f}" for name, value in speeds.items() if name != best.name)
        cached = " (an earlier probe's answer for this model, data and batch size)" if report["cached"] else ""
        if best.name == decision.strategy:
            reason = (f"{decision.reason}; a probe found none of the strategies that train the same weights "
                      f"{probes.MARGIN - 1:.0%} faster ({best.name} {speeds[best.name]:,.0f} samples/s; "
                      f"{others}){cached}")
            return Decision(decision.strategy, reason, decision.options, decision.unused)
        reason = (f"the fastest of the strategies that train the same weights in a probe: "
                  f"{speeds[best.name]:,.0f} samples/s ({others}; the rules chose {decision.strategy}){cached}")
        return _decision(best.name, reason, type(best), self.given)

    def fit(self, model: Any, plan: FitPlan) -> Any:
        """Trains with the strategy kfitx's rules choose for ``plan.train`` (``kfitx.fit`` trains the one
        :meth:`choose` chose instead: this runs only when a strategy calls ``AutoStrategy().fit`` itself)."""
        return self._made(self.decision(plan.train), None).fit(model, plan)


@hookimpl
def kfitx_strategies() -> list[type[Strategy]]:
    return [AutoStrategy]
