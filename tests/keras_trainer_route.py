"""A pytest plugin that trains every ``fit`` of Keras's own tests through ``kfitx.fit``.

``KFITX_ROUTE_STRATEGY=memory python -m pytest -p keras_trainer_route --pyargs keras.src.trainers.trainer_test``
(with ``tests/`` on ``PYTHONPATH``; ``tests/test_keras_trainers.py`` runs it so, one process per
backend and strategy).

Most of Keras's trainer-test models are ``class M(Trainer, layers.Dense)``: the backend's trainer
mixed into a layer, not a ``keras.Model``. So the backend trainer's ``fit`` is routed (``keras.Model``
inherits it): a call from the test becomes ``kfitx.fit(self, x, y, strategy=S, **the arguments the
test passed)``, and a ``model.fit`` the strategy itself makes (``memory`` delegates to it) goes to
Keras's own. ``kfitx.fit`` takes any compiled Keras trainer, as ``model.fit`` does.

``KFITX_ROUTE_STRATEGY`` is a strategy name, or ``tfdata`` / ``accumulate`` for the plugins in
``plugins/`` (imported from there, not installed); unset, nothing is routed (plain fit's count).
``KFITX_ROUTE_REPORT`` names a JSON file that receives, per test, its outcome and the strategies of
the fits routed through kfitx, and the cases deselected because a package they need is missing.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_state: dict[str, Any] = {"inside": False, "test": None, "fits": {}, "outcomes": {}, "deselected": {}}

#: Cases that need a package kfitx does not install by default: deselected when it is missing (plain fit
#: fails them too, with ModuleNotFoundError), each with the reason.
NEEDS = {"grain": "the Grain cases need `pip install grain`",
         "torch": "the torch DataLoader cases need `pip install torch`"}


def _strategy(name: str) -> Any:
    if name in ("tfdata", "accumulate"):
        sys.path[:0] = [os.path.join(ROOT, "plugins", "kfitx-tfdata"), os.path.join(ROOT, "plugins", "kfitx-accumulate")]
        import kfitx_accumulate
        import kfitx_tfdata

        return {"tfdata": kfitx_tfdata.TFDataStrategy, "accumulate": kfitx_accumulate.AccumulateStrategy}[name]
    return name


def _trainer_class() -> Any:
    import keras

    from kfitx import _keras

    return _keras.backend_trainer(keras.backend.backend())


def pytest_configure(config: Any) -> None:
    name = os.environ.get("KFITX_ROUTE_STRATEGY")
    if not name:
        return
    os.environ.setdefault("KFITX_DISABLE_PLUGIN_AUTOLOAD", "1")
    import kfitx

    strategy = _strategy(name)
    trainer = _trainer_class()
    original = trainer.fit
    signature = inspect.signature(original)

    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _state["inside"]:  # the strategy's own model.fit
            return original(self, *args, **kwargs)
        given = signature.bind(self, *args, **kwargs).arguments  # what the test passed, as it passed it
        given.pop("self")
        x, y = given.pop("x", None), given.pop("y", None)
        _state["inside"] = True
        try:
            history = kfitx.fit(self, x, y, strategy=strategy, **given)
        finally:
            _state["inside"] = False
        _state["fits"].setdefault(_state["test"], []).append(history.kfitx["strategy"])
        return history

    fit.__wrapped__ = original  # type: ignore[attr-defined]
    trainer.fit = fit


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    import importlib.util

    missing = {name: why for name, why in NEEDS.items() if importlib.util.find_spec(name) is None}
    kept = []
    for item in items:
        why = next((why for name, why in missing.items() if f"_{name}_" in item.name + "_"), None)
        if why:
            _state["deselected"][item.nodeid] = why
        else:
            kept.append(item)
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.nodeid in _state["deselected"]])
        items[:] = kept


def pytest_runtest_setup(item: Any) -> None:
    _state["test"] = item.nodeid


def pytest_runtest_logreport(report: Any) -> None:
    if report.when == "call" or report.outcome != "passed":
        previous = _state["outcomes"].get(report.nodeid)
        if previous in (None, "passed"):
            _state["outcomes"][report.nodeid] = report.outcome


def pytest_unconfigure(config: Any) -> None:
    out = os.environ.get("KFITX_ROUTE_REPORT")
    if out:
        with open(out, "w") as f:
            json.dump({key: _state[key] for key in ("fits", "outcomes", "deselected")}, f)
