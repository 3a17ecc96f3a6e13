"""The kfitx hooks. Plugins implement them with ``@kfitx.hookimpl``.

Hooks are always called with keyword arguments. There are three, and no more
until a real plugin needs one:

* :func:`kfitx_strategies` -- collect-all: every plugin returns the strategy classes it provides.
* :func:`kfitx_fit_start` / :func:`kfitx_fit_end` -- observers around each ``kfitx.fit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from kfitx.data import Source
    from kfitx.strategy import Strategy

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("kfitx")
hookimpl = pluggy.HookimplMarker("kfitx")


@hookspec
def kfitx_strategies() -> list[type[Strategy]]:
    """Returns the :class:`kfitx.Strategy` subclasses this plugin provides.

    Called once when the registry is first used; every plugin's answer is
    collected (no first-answer-wins). Each class needs a unique ``name``.
    """


@hookspec
def kfitx_fit_start(strategy: Strategy, model: Any, source: Source, fit_args: dict[str, Any]) -> None:
    """Called before a strategy trains, after the data and options were checked.

    ``fit_args`` is the dict the strategy will receive; an observer may read it
    and should not change it. Every implementation is called; return nothing.
    """


@hookspec
def kfitx_fit_end(
    strategy: Strategy, model: Any, source: Source, history: Any, error: BaseException | None
) -> None:
    """Called after a strategy trained, also when it raised (then ``error`` is set
    and ``history`` is ``None``; the error is re-raised after the hook).

    Every implementation is called; return nothing.
    """
