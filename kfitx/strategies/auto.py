"""The ``auto`` strategy: the classic rules for choosing between ``fit``, ``fit_generator`` and ``train_on_batch``.

* a custom ``step`` or ``batch_hooks``      -> ``loop`` (only it runs user code per batch);
* augmentation, a stream (generator, PyDataset, tf.data), or arrays over the
  memory budget                             -> ``generator``;
* arrays that fit the budget, no augmentation -> ``memory``.

The choice is the ``kfitx_choose_strategy`` hook (first answer wins): an
installed plugin can answer first; these rules answer last. :func:`explain`
gives the decision without training; ``kfitx.fit`` logs it in one line (and
prints it when ``verbose`` is not 0) and records it in ``history.kfitx``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kfitx.data import Source
from kfitx.errors import OptionError, StrategyNotFoundError, message
from kfitx.hookspecs import hookimpl
from kfitx.strategies.generator import GeneratorStrategy
from kfitx.strategies.loop import LoopStrategy
from kfitx.strategies.memory import MemoryStrategy
from kfitx.strategy import BACKENDS, Decision, Strategy

if TYPE_CHECKING:  # pragma: no cover
    from kfitx.plan import FitPlan

__all__ = ["AutoStrategy", "Decision", "choose", "decide"]

logger = logging.getLogger("kfitx")

_CHOICES: dict[str, type[Strategy]] = {"memory": MemoryStrategy, "generator": GeneratorStrategy,
                                       "loop": LoopStrategy}


def _merged_defaults() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for cls in _CHOICES.values():
        for key, value in cls.defaults.items():
            merged.setdefault(key, value)
    return merged


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
        budget = MemoryStrategy(memory_budget=options.get("memory_budget", 0.5)).budget_bytes(source)
        nbytes = source.nbytes or 0  # arrays know their size
        if nbytes > budget:
            name = "generator"
            reason = (f"the arrays ({_size(nbytes)}) are over the memory budget of {_size(budget)}, "
                      "so they are streamed")
        else:
            name = "memory"
            reason = (f"the arrays ({_size(nbytes)}) fit the memory budget of {_size(budget)} "
                      "and there is no augmentation")
    accepted = _CHOICES[name].defaults
    passed = {k: v for k, v in options.items() if k in accepted}
    unused = tuple(sorted(k for k in options if k not in accepted and k != "memory_budget"))
    return Decision(name, reason, passed, unused)


@hookimpl(trylast=True)
def kfitx_choose_strategy(source: Source, options: dict[str, Any]) -> Decision:
    return decide(source, options)


def choose(source: Source, options: dict[str, Any], registry: Any = None) -> Decision:
    """The answer of ``registry``'s ``kfitx_choose_strategy`` hook (kfitx's rules answer last), checked."""
    decision = None if registry is None else registry.pm.hook.kfitx_choose_strategy(source=source,
                                                                                    options=dict(options))
    if decision is None:  # no registry, or one without kfitx's built-ins
        decision = decide(source, options)
    if not isinstance(decision, Decision):
        raise OptionError(message("kfitx_choose_strategy to return a kfitx.Decision or None",
                                  repr(decision), "Fix the plugin that answered."))
    return decision


class AutoStrategy(Strategy):
    """Chooses ``memory``, ``generator`` or ``loop`` by the rules in the module docstring (or a plugin's).

    Options: every option of the three strategies; those the chosen one does not
    take are ignored (and named in the decision).
    """

    name = "auto"
    backends = BACKENDS
    description = "Chooses memory, generator or loop from the data and options (or a plugin's rule), and says why"
    defaults = _merged_defaults()
    renamed_options = {old: new for cls in _CHOICES.values() for old, new in cls.renamed_options.items()}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.given = dict(options)  # what the user set: the rules look at these

    def resolve(self, source: Source, registry: Any = None) -> tuple[Strategy, Decision]:
        decision = choose(source, self.given, registry)
        if registry is not None:
            try:
                return registry.get(registry.strategy_class(decision.strategy), **decision.options), decision
            except StrategyNotFoundError:
                if decision.strategy not in _CHOICES:
                    raise
        # kfitx's own rules chose a built-in that this registry lacks (one made with builtins=False)
        return _CHOICES[decision.strategy](**decision.options), decision

    def supports(self, source: Source) -> str | None:
        return self.resolve(source)[0].supports(source)

    def fit(self, model: Any, plan: FitPlan) -> Any:
        """Trains with the strategy kfitx's rules choose for ``plan.train`` (``kfitx.fit`` trains the one
        ``resolve`` chose instead: this runs only when a strategy calls ``AutoStrategy().fit`` itself)."""
        return self.resolve(plan.train)[0].fit(model, plan)


@hookimpl
def kfitx_strategies() -> list[type[Strategy]]:
    return [AutoStrategy]
