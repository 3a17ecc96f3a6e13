"""``kfitx.fit``: resolve the strategy, build the plan, run the ``kfitx_fit`` hook.

Separation of concerns: the registry finds strategies (and refuses ones written
against another plugin API), :mod:`kfitx.data` turns what the user passed into a
source and validates it, the strategy checks its own options and says whether
it serves the data, :mod:`kfitx.plan` resolves every fit argument once, and the
``kfitx_fit`` hook trains (kfitx's implementation calls ``strategy.fit(model,
plan)``; plugins wrap it). ``history.kfitx`` is written here, from the plan's
report, and nowhere else. A plugin strategy's fit is answered for here too: what it
raises becomes a :class:`kfitx.errors.StrategyFitError` naming it, and what it returned
is checked against the plan (:mod:`kfitx.plan.outcome`).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import sys
from collections.abc import Iterator
from typing import Any

from kfitx.data import boundary, coerce
from kfitx.errors import KfitxError, PluginError, StrategyFitError, describe_error, message
from kfitx.plan import FIT_ARGS, FitPlan, build_plan, check_fit_args, check_model
from kfitx.registry import get_registry, is_builtin
from kfitx.runtime import resolve
from kfitx.strategies.auto import AutoStrategy, choose
from kfitx.strategy import Decision, Strategy

__all__ = ["explain", "fit", "outcome_checks"]

logger = logging.getLogger("kfitx")


def fit(model: Any, data: Any, y: Any = None, *, strategy: str | Strategy | type[Strategy] = "memory",
        **kwargs: Any) -> Any:
    """Trains ``model`` on ``data`` with the chosen strategy.

    Args:
        model: A compiled ``keras.Model``.
        data: A :mod:`kfitx.data` source, or anything :func:`kfitx.data.coerce`
            accepts: ``x`` (with ``y``), ``(x, y)``, a ``.npy`` path, a generator
            factory, a tf.data.Dataset, a PyDataset.
        y: Targets when ``data`` is ``x``, as in ``model.fit(x, y)``.
        strategy: A strategy name (``kfitx list`` shows them), class or instance.
        **kwargs: ``model.fit`` arguments (``epochs``, ``batch_size``, ``callbacks``,
            ``validation_data``, ... and ``seed``) and the strategy's own options.

    Returns:
        The ``keras.callbacks.History`` of the run, whichever strategy ran, with
        ``history.kfitx``: what kfitx decided (strategy, steps per call and why, ...).

    Raises:
        KfitxError: for every foreseeable mistake, with what to do about it.
    """
    check_model(model)
    runtime = resolve(model)  # the backend and the distribution, once: the plan carries them
    registry = get_registry()
    cls = registry.strategy_class(strategy)  # the one look-up of the name
    fit_args = {k: v for k, v in kwargs.items() if k in FIT_ARGS}
    options = {k: v for k, v in kwargs.items() if k not in FIT_ARGS}
    unknown = {k: v for k, v in options.items() if k not in cls.defaults and k not in cls.renamed_options}
    # neither a fit argument nor an option (a renamed option: the strategy's __init__ says so)
    checked = check_fit_args({**fit_args, **unknown}, strategy_options=sorted(cls.defaults))
    instance = registry.get(strategy if isinstance(strategy, Strategy) else cls, **options)
    source = coerce(data, y)
    chosen, decision = instance.resolve(source, registry)  # `auto` asks the kfitx_choose_strategy hook
    chosen.require_backend(runtime.backend)
    chosen.require(source)
    plan = build_plan(model, source, chosen, checked, runtime)
    with contextlib.ExitStack() as measured:
        if isinstance(instance, AutoStrategy) and decision is not None:  # the fastest by a probe, where it may
            chosen, decision, plan = measured.enter_context(
                instance.measured(model, source, chosen, decision, plan, checked, registry))
        if decision is not None:
            logger.info("%s", decision)
            if fit_args.get("verbose", "auto") != 0:
                print(decision, flush=True)
            plan.report.note(**{instance.name: decision.reason})
        plugin = not is_builtin(type(chosen))  # a plugin's fit is checked after it returns, and named
        plan, witness = _witnessed(plan) if plugin and _CHECKS.get() else (plan, None)
        try:
            with boundary():  # pipeline and worker faults become the fit's KfitxError; workers stopped
                history = registry.pm.hook.kfitx_fit(strategy=chosen, model=model, plan=plan)
        except Exception as err:
            if not plugin or isinstance(err, KfitxError):  # kfitx's own errors, and a plugin's, as they are
                raise
            raise _raised(chosen, registry.provider(type(chosen)), err) from err
    import keras

    if not isinstance(history, keras.callbacks.History):
        if plugin and not _CHECKS.get():
            return history  # the conformance kit's rules say what is wrong with it
        raise PluginError(message(f"Strategy '{chosen.name}' ({registry.provider(type(chosen))}) must return a "
                                  "keras.callbacks.History", type(history).__name__,
                                  "Return model.fit(...)'s result or the History callback the strategy drove "
                                  "(a bug in the strategy)."))
    if plugin and _CHECKS.get():
        from kfitx.plan.outcome import check_outcome

        check_outcome(chosen.name, lambda: registry.provider(type(chosen)), plan, history, witness)
    history.kfitx = plan.report.as_dict()
    return history


#: Whether ``kfitx.fit`` checks a plugin's fit after it returns (the conformance kit turns it off to see more).
_CHECKS: contextvars.ContextVar[bool] = contextvars.ContextVar("kfitx_outcome_checks", default=True)


@contextlib.contextmanager
def outcome_checks(enabled: bool) -> Iterator[None]:
    """Turns ``kfitx.fit``'s checks of what a plugin's ``fit`` returned on or off, in this context."""
    token = _CHECKS.set(enabled)
    try:
        yield
    finally:
        _CHECKS.reset(token)


def _witnessed(plan: FitPlan) -> tuple[FitPlan, Any]:
    """The plan with a callback that sees whether the strategy ran the fit's callbacks (a list only)."""
    if not isinstance(plan.callbacks, list):  # a CallbackList given by the user: model.fit takes it as it is
        return plan, None
    from kfitx.plan.outcome import Witness

    witness = Witness()
    return dataclasses.replace(plan, callbacks=[*plan.callbacks, witness]), witness


def _raised(strategy: Strategy, who: str, error: Exception) -> StrategyFitError:
    module = sys.modules.get(type(strategy).__module__)
    files = [getattr(module, "__file__", None)]
    return StrategyFitError(message(
        f"Strategy '{strategy.name}' ({who}) to train without raising",
        describe_error(error, files),
        "The cause below has the whole traceback. If the error names your data, model or callbacks, fix them; "
        "else it is a bug in the strategy: report it to its author, or train with another strategy."))


def explain(data: Any, y: Any = None, **options: Any) -> Decision:
    """What ``strategy="auto"`` would choose for this data and these options, and why.

    Example:
        ```python
        >>> print(kfitx.explain(x_train, y_train, augment=ImageDataGenerator(rotation_range=20)))
        kfitx auto: generator -- augmentation on the fly is the generator strategy's job
        ```
    """
    strategy = AutoStrategy(**options)
    return choose(coerce(data, y), strategy.given, get_registry())
