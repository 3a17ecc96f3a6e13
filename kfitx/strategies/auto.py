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
from typing import TYPE_CHECKING, Any, cast

from kfitx.data import ArraySource, Source, coerce
from kfitx.errors import OptionError, StrategyNotFoundError, message
from kfitx.hookspecs import hookimpl
from kfitx.strategies.generator import GeneratorStrategy
from kfitx.strategies.loop import LoopStrategy
from kfitx.strategies.memory import MemoryStrategy
from kfitx.strategy import BACKENDS, Decision, Strategy

if TYPE_CHECKING:  # pragma: no cover
    from kfitx.plan import FitPlan

__all__ = ["AutoStrategy", "Decision", "explain"]

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
        source = cast(ArraySource, source)  # in memory: arrays (Source.in_memory)
        budgeted = MemoryStrategy(memory_budget=options.get("memory_budget", 0.5))
        refusal = budgeted.supports(source)
        if refusal:
            name = "generator"
            reason = (f"the arrays ({_size(source.nbytes)}) are over the memory budget of "
                      f"{_size(budgeted.budget_bytes(source))}, so they are streamed")
        else:
            name = "memory"
            reason = (f"the arrays ({_size(source.nbytes)}) fit the memory budget of "
                      f"{_size(budgeted.budget_bytes(source))} and there is no augmentation")
    accepted = _CHOICES[name].defaults
    passed = {k: v for k, v in options.items() if k in accepted}
    unused = tuple(sorted(k for k in options if k not in accepted and k != "memory_budget"))
    return Decision(name, reason, passed, unused)


@hookimpl(trylast=True)
def kfitx_choose_strategy(source: Source, options: dict[str, Any]) -> Decision:
    return decide(source, options)


def _choose(source: Source, options: dict[str, Any]) -> Decision:
    from kfitx.registry import get_registry

    decision = get_registry().pm.hook.kfitx_choose_strategy(source=source, options=dict(options))
    if decision is None:  # a registry without kfitx's built-ins
        decision = decide(source, options)
    if not isinstance(decision, Decision):
        raise OptionError(message("kfitx_choose_strategy to return a kfitx.Decision or None",
                                  repr(decision), "Fix the plugin that answered."))
    return decision


def explain(data: Any, y: Any = None, **options: Any) -> Decision:
    """What ``strategy="auto"`` would choose for this data and these options, and why.

    Example:
        ```python
        >>> print(kfitx.explain(x_train, y_train, augment=ImageDataGenerator(rotation_range=20)))
        kfitx auto: generator -- augmentation on the fly is the generator strategy's job
        ```
    """
    strategy = AutoStrategy(**options)
    return _choose(coerce(data, y), strategy.given)


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

    def resolve(self, source: Source) -> tuple[Strategy, Decision]:
        from kfitx.registry import get_registry

        decision = _choose(source, self.given)
        try:
            return get_registry().get(decision.strategy, **decision.options), decision
        except StrategyNotFoundError:
            if decision.strategy not in _CHOICES:
                raise
            # kfitx's own rules chose a built-in that this registry lacks (one made with builtins=False)
            return _CHOICES[decision.strategy](**decision.options), decision

    def supports(self, source: Source) -> str | None:
        return self.resolve(source)[0].supports(source)

    def fit(self, model: Any, plan: FitPlan) -> Any:
        """Trains with the strategy chosen for ``plan.train`` (``kfitx.fit`` resolves it before the plan)."""
        return self.resolve(plan.train)[0].fit(model, plan)


@hookimpl
def kfitx_strategies() -> list[type[Strategy]]:
    return [AutoStrategy]
