"""``kfitx.fit``: find the strategy, let it choose what trains, run the ``kfitx_fit`` hook.

Separation of concerns: the registry finds strategies (and refuses ones written
against another plugin API), :mod:`kfitx.data` turns what the user passed into a
source and validates it, the strategy checks its own options (every keyword that
is not a fit argument is one) and, in :meth:`kfitx.Strategy.choose` -- the same
hook for every strategy, ``auto`` included --, says which strategy trains and with
which plan (:mod:`kfitx.plan` resolves every fit argument once), and the
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

from kfitx.data import boundary
from kfitx.errors import KfitxError, PluginError, StrategyFitError, describe_error, message
from kfitx.plan import FIT_ARGS, FitPlan, check_fit_args, check_model
from kfitx.registry import Registry, get_registry, is_builtin
from kfitx.runtime import resolve
from kfitx.strategies.auto import AutoStrategy
from kfitx.strategy import Choice, Decision, FitRequest, Strategy

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
    checked = check_fit_args({k: v for k, v in kwargs.items() if k in FIT_ARGS})
    options = {k: v for k, v in kwargs.items() if k not in FIT_ARGS}  # the strategy's, or unknown: it says so
    instance = registry.get(strategy if isinstance(strategy, Strategy) else cls, **options)
    source = registry.coerce(data, y)  # the plugins' kfitx_sources first, then kfitx's own rules
    if checked.get("validation_data") is not None:  # so too validation_data, once, for every plan made of it
        checked = type(checked)({**checked, "validation_data": registry.coerce(checked["validation_data"])})
    with instance.choose(FitRequest(model, source, runtime, registry, checked)) as choice:  # every strategy
        chosen, plan, decision = _checked(choice, instance, registry)
        if decision is not None:
            logger.info("%s", decision)
            if checked.get("verbose", "auto") != 0:
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


def _checked(choice: Any, instance: Strategy, registry: Registry) -> tuple[Strategy, FitPlan, Decision | None]:
    """What ``instance.choose`` yielded, as ``(strategy, plan, decision)``; a plugin's wrong answer is a PluginError."""
    if not (isinstance(choice, Choice) and isinstance(choice.strategy, Strategy) and isinstance(choice.plan, FitPlan)
            and (choice.decision is None or isinstance(choice.decision, Decision))):
        raise PluginError(message(
            f"Strategy '{instance.name}' ({registry.provider(type(instance))}) to yield a kfitx.Choice(strategy, plan, "
            "decision) from choose()", repr(choice),
            "Yield kfitx.Choice(strategy, request.plan(strategy), decision), or leave choose() as Strategy's "
            "(a bug in the strategy)."))
    return choice.strategy, choice.plan, choice.decision


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
    registry = get_registry()
    return AutoStrategy(**options).decision(registry.coerce(data, y), registry)
