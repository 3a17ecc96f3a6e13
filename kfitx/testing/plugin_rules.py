"""The rules about the plugin rather than its training: ``registration``, ``options``, ``tuner-trial``.

Each reads the :class:`kfitx.testing.runs.Checker` and returns a detail line, or raises
:class:`~kfitx.testing.runs.Broken` / :class:`~kfitx.testing.runs.Skip`, as the rules of
:mod:`kfitx.testing.rules` do.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import io
import math
import sys
import tempfile
import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING

from kfitx.errors import OptionError, StrategyFitError, describe_error
from kfitx.strategy import Strategy
from kfitx.testing.runs import Broken, Checker, Skip

if TYPE_CHECKING:
    import keras
    import keras_tuner

__all__ = ["rule_options", "rule_registration", "rule_tuner_trial"]


def rule_registration(c: Checker) -> str:
    cls = c.cls
    if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
        raise Broken("a kfitx.Strategy subclass", repr(cls), "Subclass kfitx.Strategy.")
    for attr in ("name", "description"):
        value = getattr(cls, attr, None)
        if not isinstance(value, str) or not value.strip():
            raise Broken(f"a non-empty class attribute `{attr}` (str)", repr(value),
                         f"Set `{attr} = \"...\"` on {cls.__name__}; `kfitx list` shows it.")
    if not isinstance(cls.defaults, Mapping):
        raise Broken("`defaults` to be a mapping of option name to default", repr(cls.defaults),
                     "Declare `defaults = {\"my_option\": 1}` (or leave it out).")
    if inspect.isabstract(cls):
        raise Broken(f"{cls.__name__} to implement fit()", "an abstract class",
                     "Define fit(self, model, plan) returning a keras.callbacks.History.")
    plugin = c.plugin if c.plugin is not None else _plugin_of(cls)
    if plugin is None:
        raise Skip(f"no plugin module with a kfitx_strategies hook found for {cls.__module__}; pass plugin=")
    import pluggy

    from kfitx.registry import PluginWarning, Registry, undecorated_hooks

    undecorated = undecorated_hooks(plugin)
    if undecorated:
        label = getattr(plugin, "__name__", type(plugin).__name__)
        raise Broken("every kfitx hook of the plugin decorated with @kfitx.hookimpl",
                     f"{label} defines {', '.join(h + '()' for h in undecorated)} without it, so pluggy never "
                     "calls it and the strategy is not registered",
                     f"Put @kfitx.hookimpl on the line above `def {undecorated[0]}`.")

    registry = Registry(autoload=False, builtins=False)
    label = getattr(plugin, "__name__", type(plugin).__name__)
    try:
        registry.register(plugin, name=f"kfitx-check:{label}")
    except pluggy.PluginValidationError as err:
        raise Broken("hook implementations that match kfitx's hook specs (pluggy's validation)", str(err),
                     "Implement only kfitx_strategies(), kfitx_choose_strategy(source, options) and "
                     "kfitx_fit(strategy, model, plan) with the argument names in kfitx.hookspecs, "
                     "each decorated with @kfitx.hookimpl.") from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        provided = {info.name: info.cls for info in registry.available()}
    problems = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    if provided.get(cls.name) is not cls:
        raise Broken(f"{label}.kfitx_strategies() to return [{cls.__name__}, ...]",
                     "; ".join(problems) or f"the strategies {sorted(provided) or 'none'}",
                     "Decorate the module-level function with @kfitx.hookimpl and return a list of classes.")
    if problems:
        raise Broken(f"{label}.kfitx_strategies() to return only Strategy subclasses", "; ".join(problems),
                     "Return a list of kfitx.Strategy subclasses, each with a name.")
    return f"hook OK ({label}); " + _entry_point_of(plugin)


def _plugin_of(cls: type) -> ModuleType | None:
    """The class's module when it holds a ``kfitx_strategies`` function (decorated or not: the rule says which)."""
    module = sys.modules.get(cls.__module__)
    return module if callable(getattr(module, "kfitx_strategies", None)) else None


def _entry_point_of(plugin: object) -> str:
    name = getattr(plugin, "__name__", None)
    if isinstance(name, str) and name.startswith("kfitx.strategies."):
        return "built into kfitx"
    for ep in importlib.metadata.entry_points(group="kfitx"):
        if ep.module == name:
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"
            return f"entry point '{ep.name} = {ep.value}' in {dist}"
    return (f"no installed entry point names {name} (fine in a source checkout; users need "
            "[project.entry-points.kfitx] in pyproject.toml)")


def rule_options(c: Checker) -> str:
    try:
        strategy = c.instance()
    except Exception as err:
        raise Broken(f"{c.cls.__name__}(**{c.options!r}) to construct", describe_error(err, c.files),
                     "Declare every option in `defaults` and call super().__init__(**options).") from None
    try:
        c.cls(kfitx_check_no_such_option=1)
    except OptionError:
        pass
    except Exception as err:
        raise Broken("an unknown option to raise kfitx.OptionError", describe_error(err, c.files),
                     "Call super().__init__(**options) first in __init__; it checks option names.") from None
    else:
        raise Broken("an unknown option to raise kfitx.OptionError", "it was accepted silently",
                     "Call super().__init__(**options) in __init__ instead of taking **options yourself.")
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    tuned = strategy.hyperparameters(hp)
    if not isinstance(tuned, Mapping) or set(tuned) - set(c.cls.defaults):
        raise Broken("hyperparameters(hp) to return a dict of the strategy's own option names", repr(tuned),
                     "Return e.g. {'my_option': hp.Int('my_option', 1, 4)}: keys from `defaults`.")
    c.cls(**{**c.options, **tuned})
    reason = strategy.supports(c.source())
    if reason:
        raise Broken(f"the strategy to support the kit's data ({c.source().describe()})", f"the reason {reason!r}",
                     "Pass make_source=lambda x, y: <a source your strategy serves> to check_strategy (or "
                     "--source MODULE:FUNCTION to kfitx check); it serves the training data, the validation data "
                     "and the reference run alike.")
    return f"options {sorted(c.cls.defaults) or 'none'}; tunables {sorted(tuned) or 'none'}"


def rule_tuner_trial(c: Checker) -> str:
    import keras_tuner

    import kfitx.registry
    from kfitx.hookspecs import hookimpl
    from kfitx.tuner import StrategyHyperModel

    class _Provides:
        @hookimpl
        def kfitx_strategies(self) -> list[type[Strategy]]:
            return [c.cls]

    class _Watched(StrategyHyperModel):
        raised: BaseException | None = None

        def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args: object, **kwargs: object) -> object:
            try:
                return super().fit(hp, model, *args, **kwargs)
            except Exception as err:  # keras-tuner keeps only the traceback's text
                type(self).raised = err
                raise

    registry = kfitx.registry.Registry(autoload=False, builtins=False)
    registry.register(_Provides(), name="kfitx-check")
    old = kfitx.registry.reset_registry(registry)
    out = io.StringIO()
    try:
        with tempfile.TemporaryDirectory(prefix="kfitx-check-") as directory, contextlib.redirect_stdout(out), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # keras-tuner's own, not the strategy's
            hypermodel = _Watched(lambda hp: c.build_model(0), strategies=[c.name],
                                            strategy_options={c.name: c.options} if c.options else None)
            tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=1, seed=0,
                                             directory=directory, project_name="trial", overwrite=True,
                                             max_consecutive_failed_trials=1)
            tuner.search(c.source(), epochs=1, batch_size=32, validation_data=c.source("validation"), verbose=0)
            trials = list(tuner.oracle.trials.values())
    except Exception as err:
        raised = _Watched.raised or err
        while isinstance(raised.__cause__, Exception) and (isinstance(raised, StrategyFitError)
                                                           or type(raised).__module__.startswith("keras_tuner")):
            raised = raised.__cause__  # what the strategy (or kfitx, about it) raised, not the wrappers
        raise Broken("one keras-tuner RandomSearch trial (StrategyHyperModel, 1 epoch) to complete",
                     describe_error(raised, c.files),
                     "Accept every fit argument keras-tuner passes (callbacks with its TunerCallback, "
                     "validation_data, epochs, verbose) and return the History.") from None
    finally:
        kfitx.registry.reset_registry(old)
    done = [t for t in trials if t.status == "COMPLETED" and t.score is not None and math.isfinite(t.score)]
    if not done or done[0].hyperparameters.get("strategy") != c.name:
        raise Broken("a COMPLETED trial with a finite val_accuracy", [(t.status, t.score) for t in trials],
                     "Report val_accuracy in the History returned (validation_data must be honoured).")
    return f"trial COMPLETED with val_accuracy {done[0].score:.3f}"
