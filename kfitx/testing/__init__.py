"""The conformance kit: does a strategy keep the fit contract (docs/architecture.md)?

For plugin authors, in their own test suite::

    from kfitx.testing import check_strategy

    def test_my_strategy_keeps_the_contract():
        report = check_strategy(MyStrategy, my_option=3)   # raises ConformanceError if a rule breaks
        assert report.ok

or one pytest test per rule::

    class TestMyStrategy(kfitx.testing.StrategyConformance):
        strategy = MyStrategy

and on the command line, for an installed strategy: ``kfitx check NAME`` (with
``--source MODULE:FUNCTION``, ``--model MODULE:FUNCTION`` and ``--option KEY=VALUE``
for a strategy that needs data, a model or options of its own).

Layout: :mod:`kfitx.testing.spy` (the callback spy, weight comparisons, the
tiny model and data), :mod:`kfitx.testing.runs` (the training runs the rules
read), :mod:`kfitx.testing.rules` (the rules; :mod:`kfitx.testing.plugin_rules`:
those about the plugin rather than its training), :mod:`kfitx.testing.report`
(what was found), :mod:`kfitx.testing.scaffold` (``kfitx plugin new``). This module runs them:
:func:`check_strategy` runs *all* selected rules (a broken rule does not stop
the others) and raises one :class:`kfitx.ConformanceError` listing every broken
rule, or returns the :class:`ConformanceReport`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, ClassVar, cast

from kfitx.data import Source
from kfitx.errors import ConformanceError, OptionError, message
from kfitx.strategy import Strategy
from kfitx.testing.report import ConformanceReport, RuleResult
from kfitx.testing.rules import RULES, Checker, check_one
from kfitx.testing.spy import (
    DEFAULT_TOLERANCE,
    HOOKS,
    Spy,
    max_weight_difference,
    tiny_data,
    tiny_model,
    weights_close,
)

if TYPE_CHECKING:
    import keras
    import numpy as np

__all__ = [
    "DEFAULT_TOLERANCE",
    "HOOKS",
    "RULES",
    "ConformanceReport",
    "RuleResult",
    "Spy",
    "StrategyConformance",
    "check_strategy",
    "max_weight_difference",
    "tiny_data",
    "tiny_model",
    "weights_close",
]


def _resolve(strategy: str | type[Strategy] | Strategy | None, options: dict[str, object],
             plugin: object) -> tuple[type[Strategy], dict[str, object], object]:
    if isinstance(strategy, str):
        from kfitx.registry import get_registry

        registry = get_registry()
        info = registry.lookup(strategy)
        return info.cls, options, plugin if plugin is not None else registry.pm.get_plugin(info.plugin)
    if isinstance(strategy, Strategy):
        if options:
            raise OptionError(message("Options go either into the strategy instance or to check_strategy",
                                      f"an instance {strategy!r} plus options {sorted(options)}"))
        changed = {k: v for k, v in strategy.options.items() if strategy.defaults.get(k) is not v}
        return type(strategy), changed, plugin
    return cast("type[Strategy]", strategy), options, plugin  # the class given


def _tolerance(cls: type[Strategy], tolerance: float | None | str) -> float | None:
    if tolerance == "class":
        return getattr(cls, "weight_tolerance", DEFAULT_TOLERANCE)
    if tolerance is not None and not (isinstance(tolerance, (int, float)) and tolerance >= 0):
        raise OptionError(message("`tolerance` must be a number >= 0, None (no claim) or 'class'", repr(tolerance)))
    return tolerance


def check_strategy(
    strategy: str | type[Strategy] | Strategy,
    *,
    rules: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    tolerance: float | None | str = "class",
    plugin: object = None,
    make_source: Callable[[np.ndarray, np.ndarray], Source] | None = None,
    build_model: Callable[[int], keras.Model] | None = None,
    raise_on_failure: bool = True,
    on_result: Callable[[RuleResult], None] | None = None,
    **options: object,
) -> ConformanceReport:
    """Checks a strategy against the fit contract on a tiny model; see :data:`RULES`.

    Every selected rule runs (a few seconds in all on a CPU); a broken rule does
    not stop the others.

    Args:
        strategy: The class (or an instance, or an installed strategy's name).
        rules: Only these rules (default: all of :data:`RULES`).
        skip: Rules not to run.
        tolerance: Largest absolute weight difference from ``memory`` on the same
            batches that the strategy claims (rule ``same-weights``); ``None``: no
            claim, the rule is skipped. Default (``"class"``): the strategy class's
            ``weight_tolerance`` attribute if it has one, else :data:`DEFAULT_TOLERANCE`.
        plugin: The module or object carrying the strategy's ``@kfitx.hookimpl``
            (default: the class's module if it has a ``kfitx_strategies`` hook).
        make_source: ``(x, y) -> Source`` (or anything ``kfitx.fit`` takes as data)
            turning the kit's arrays into the data your strategy serves, e.g. one-hot
            labels or a directory of shards (default: :func:`kfitx.data.arrays`). It
            makes the training data, the validation data and the data of the reference
            run through ``memory`` alike, so that data must be something ``model.fit``
            trains on too.
        build_model: ``seed -> compiled keras.Model`` replacing :func:`tiny_model`,
            compiled for what ``make_source`` gives (the kit's 8 features and 3
            classes; e.g. a categorical loss for one-hot labels). The same seed must
            give the same initial weights.
        raise_on_failure: Raise one :class:`kfitx.ConformanceError` listing every
            broken rule (default), or return the report.
        on_result: Called with each :class:`RuleResult` as it is decided (progress).
        **options: The strategy's options.

    Returns:
        The :class:`ConformanceReport`: the rules checked, passed, failed and skipped, and the tolerance.

    Raises:
        ConformanceError: if a rule broke (and ``raise_on_failure``); ``.report`` holds the report.
        PluginError: the strategy's ``fit`` is kfitx 0.1's ``fit(model, source, **fit_args)``.
    """
    cls, options, plugin = _resolve(strategy, dict(options), plugin)
    if inspect.isclass(cls) and issubclass(cls, Strategy):
        from kfitx.registry import get_registry

        get_registry().strategy_class(cls)  # a strategy still on kfitx 0.1's fit signature: PluginError
    selected = list(RULES) if rules is None else list(rules)
    unknown = sorted((set(selected) | set(skip)) - set(RULES))
    if unknown:
        raise OptionError(message("Expected rule names among: " + ", ".join(RULES), ", ".join(unknown)))
    checker = Checker(cls, options, tolerance=_tolerance(cls, tolerance), plugin=plugin,
                      make_source=make_source, build_model=build_model)
    report = ConformanceReport(checker.name, checker.tolerance)
    for rule in (r for r in RULES if r in selected and r not in set(skip)):
        report.results.append(check_one(checker, rule))
        if on_result is not None:
            on_result(report.results[-1])
    if report.failed and raise_on_failure:
        errors = [r.error for r in report.results if r.error is not None]
        head = (f"Strategy '{report.strategy}' breaks {len(errors)} rule(s) of the fit contract: "
                + ", ".join(f"'{r}'" for r in report.failed) + ".\n")
        err = ConformanceError(head + "\n".join(f"- {e}" for e in errors))
        err.report = report  # type: ignore[attr-defined]
        raise err
    return report


class StrategyConformance:
    """A pytest base class: one test per rule of the fit contract.

    Subclass it in a class whose name starts with ``Test`` and set ``strategy``::

        class TestMyStrategy(kfitx.testing.StrategyConformance):
            strategy = MyStrategy
            options = {"my_option": 2}
            tolerance = 1e-5          # or None: no claim to train like 'memory'
            make_source = staticmethod(lambda x, y: kfitx.data.arrays(x, one_hot(y)))  # optional
            build_model = staticmethod(my_tiny_model)                                  # optional

    The runs are shared by the class's tests (made once, on first use).
    """

    strategy: ClassVar[str | type[Strategy] | Strategy | None] = None
    options: ClassVar[Mapping[str, object]] = {}
    tolerance: ClassVar[float | None | str] = "class"
    plugin: ClassVar[object] = None
    #: ``(x, y) -> data``, as for :func:`check_strategy` (set it with ``staticmethod(...)``).
    make_source: ClassVar[Callable[[np.ndarray, np.ndarray], Source] | None] = None
    #: ``seed -> compiled keras.Model``, as for :func:`check_strategy` (set it with ``staticmethod(...)``).
    build_model: ClassVar[Callable[[int], keras.Model] | None] = None

    @classmethod
    def _kfitx_checker(cls) -> Checker:
        checker = cls.__dict__.get("_kfitx_cached")
        if checker is None:
            strategy, options, plugin = _resolve(cls.strategy, dict(cls.options), cls.plugin)
            checker = Checker(strategy, options, tolerance=_tolerance(strategy, cls.tolerance), plugin=plugin,
                              make_source=cls.make_source, build_model=cls.build_model)
            cls._kfitx_cached = checker  # type: ignore[attr-defined]
        return checker

    def check(self, rule: str) -> None:
        """Runs one rule; raises its ConformanceError, or skips the test if the rule does not apply."""
        result = check_one(self._kfitx_checker(), rule)
        if result.error is not None:
            raise result.error
        if result.status == "skipped":
            import pytest

            pytest.skip(result.detail)

    def test_registration(self) -> None:
        self.check("registration")

    def test_options(self) -> None:
        self.check("options")

    def test_history(self) -> None:
        self.check("history")

    def test_callback_order(self) -> None:
        self.check("callback-order")

    def test_epochs(self) -> None:
        self.check("epochs")

    def test_initial_epoch(self) -> None:
        self.check("initial-epoch")

    def test_validation_data(self) -> None:
        self.check("validation-data")

    def test_early_stopping(self) -> None:
        self.check("early-stopping")

    def test_stop_training(self) -> None:
        self.check("stop-training")

    def test_backup_and_restore(self) -> None:
        self.check("backup-restore")

    def test_same_weights(self) -> None:
        self.check("same-weights")

    def test_no_leftovers(self) -> None:
        self.check("no-leftovers")

    def test_tuner_trial(self) -> None:
        self.check("tuner-trial")
