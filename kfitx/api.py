"""``kfitx.fit``: resolve the strategy, coerce the data, call the hooks, run.

Separation of concerns: the registry finds strategies, :mod:`kfitx.data` turns
what the user passed into a source and validates it, :mod:`kfitx.strategy`
checks fit arguments, and the strategy trains. This module only wires them.
"""

from __future__ import annotations

from typing import Any

from kfitx.data import coerce
from kfitx.errors import KfitxError, message
from kfitx.registry import get_registry
from kfitx.strategy import FIT_ARGS, Strategy, check_fit_args, check_model

__all__ = ["fit"]


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
        The ``keras.callbacks.History`` of the run, whichever strategy ran.

    Raises:
        KfitxError: for every foreseeable mistake, with what to do about it.
    """
    check_model(model)
    registry = get_registry()
    fit_args = {k: v for k, v in kwargs.items() if k in FIT_ARGS}
    options = {k: v for k, v in kwargs.items() if k not in FIT_ARGS}
    if isinstance(strategy, str):
        cls: Any = registry.lookup(strategy).cls
    else:
        cls = strategy if isinstance(strategy, type) else type(strategy)
    unknown = {k: v for k, v in options.items() if k not in getattr(cls, "defaults", {})}
    if unknown:
        check_fit_args(unknown, strategy_options=sorted(getattr(cls, "defaults", {})))
    instance = registry.get(strategy, **options)
    check_fit_args(fit_args)
    source = coerce(data, y)
    instance.require(source)

    hook = registry.pm.hook
    hook.kfitx_fit_start(strategy=instance, model=model, source=source, fit_args=fit_args)
    try:
        history = instance.fit(model, source, **fit_args)
    except BaseException as err:
        hook.kfitx_fit_end(strategy=instance, model=model, source=source, history=None, error=err)
        raise
    hook.kfitx_fit_end(strategy=instance, model=model, source=source, history=history, error=None)
    import keras

    if not isinstance(history, keras.callbacks.History):
        raise KfitxError(message(f"Strategy '{instance.name}' must return a keras.callbacks.History",
                                 type(history).__name__, "Return model.fit(...)'s result or the "
                                 "History callback the strategy drove (a bug in the strategy)."))
    return history
