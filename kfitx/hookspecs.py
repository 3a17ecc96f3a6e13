"""The kfitx hooks. Plugins implement them with ``@kfitx.hookimpl``.

Hooks are always called with keyword arguments. There are four:

* :func:`kfitx_strategies` -- collect-all: every plugin returns the strategy classes it provides.
* :func:`kfitx_sources` -- first answer wins: a :class:`kfitx.data.Source` for an input kfitx does
  not know (a new input kind for ``kfitx.fit``, ``validation_data``, ``kfitx.explain``, the kit).
* :func:`kfitx_choose_strategy` -- first answer wins: which strategy ``strategy="auto"`` trains with.
* :func:`kfitx_fit` -- first answer wins: runs one fit. kfitx's own implementation
  calls ``strategy.fit(model, plan)``; plugins wrap it (``@kfitx.hookimpl(wrapper=True)``)
  to time, measure or observe fits, as pytest's plugins wrap ``pytest_runtest_protocol``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from kfitx.data import Source
    from kfitx.plan import FitPlan
    from kfitx.strategy import Decision, Strategy

__all__ = ["HOOK_NAMES", "UNCALLED", "hookimpl", "hookspec", "undecorated_hooks"]

hookspec = pluggy.HookspecMarker("kfitx")
hookimpl = pluggy.HookimplMarker("kfitx")


@hookspec
def kfitx_strategies() -> list[type[Strategy]]:
    """Returns the :class:`kfitx.Strategy` subclasses this plugin provides.

    Called once when the registry is first used; every plugin's answer is
    collected (no first-answer-wins). Each class needs a unique ``name``.
    """


@hookspec(firstresult=True)
def kfitx_sources(data: object, y: object) -> Source | None:
    """Turns what a user passed as data into a :class:`kfitx.data.Source`, or declines with ``None``.

    Called for each input a fit is given -- ``kfitx.fit``'s ``data`` (with ``y``), its
    ``validation_data`` (``y`` ``None``), ``kfitx.explain``'s and a search's data -- before kfitx's
    own coercion (:func:`kfitx.data.coerce`), so a plugin teaches kfitx a new input kind (a directory
    of shards, a database cursor, ...). It is not called for a :class:`kfitx.data.Source` passed as
    it is. Return an instance of a :class:`kfitx.data.Source` subclass, or ``None`` for data the
    plugin does not know (kfitx's own rules then apply, so answer only for data you recognise). The
    first non-``None`` answer wins. Every built-in strategy trains on the source (see ``docs/plugins.md``)::

        @kfitx.hookimpl
        def kfitx_sources(data, y):
            if isinstance(data, str) and data.endswith(".shards") and y is None:
                return ShardSource(data)
            return None
    """


@hookspec(firstresult=True)
def kfitx_choose_strategy(source: Source, options: dict[str, object]) -> Decision | None:
    """Chooses the strategy for ``strategy="auto"``.

    Called once per ``kfitx.fit(..., strategy="auto")`` (and ``kfitx.explain``)
    with the training source and the options the user gave. Return a
    :class:`kfitx.Decision` (the strategy's name, one sentence why, the options to
    pass it), or ``None`` to let the next plugin decide. The first non-``None``
    answer wins; kfitx's own rules answer last.
    """


@hookspec(firstresult=True)
def kfitx_fit(strategy: Strategy, model: keras.Model, plan: FitPlan) -> keras.callbacks.History:
    """Runs one fit and returns its ``keras.callbacks.History``.

    Called by ``kfitx.fit`` once the strategy is chosen and the :class:`kfitx.FitPlan`
    is built (every argument checked). kfitx's implementation, which runs last,
    calls ``strategy.fit(model, plan)``. To observe or measure fits, implement it
    as a wrapper::

        @kfitx.hookimpl(wrapper=True)
        def kfitx_fit(strategy, model, plan):
            start = time.perf_counter()
            history = yield          # the fit runs here; an exception is raised here too
            plan.report.note(seconds=time.perf_counter() - start)   # lands in history.kfitx
            return history

    The first non-``None`` answer wins: a plugin that returns a History itself
    replaces the training.
    """


#: The hooks a plugin may implement (kfitx.hookspecs).
HOOK_NAMES = ("kfitx_strategies", "kfitx_sources", "kfitx_choose_strategy", "kfitx_fit")

#: What each hook, left without ``@kfitx.hookimpl``, never does (pluggy never calls it).
UNCALLED = {"kfitx_strategies": "its strategies are not registered",
            "kfitx_sources": "kfitx.fit never asks it for a data source",
            "kfitx_choose_strategy": "strategy='auto' never asks it",
            "kfitx_fit": "it never runs around a fit"}


def undecorated_hooks(plugin: object) -> list[str]:
    """The kfitx hook names ``plugin`` defines as functions without ``@kfitx.hookimpl`` (pluggy ignores them)."""
    found = []
    for hook in HOOK_NAMES:
        fn = getattr(plugin, hook, None)
        if callable(fn) and not hasattr(fn, "kfitx_impl"):
            found.append(hook)
    return found
