"""Which candidate strategies of a search can serve its data: asked before a trial trains.

Separation of concerns: :func:`kfitx.fit` refuses data its strategy cannot serve
(``Strategy.supports``, ``Strategy.backends``), one fit at a time; in a search that would end the
search at the first trial that draws such a strategy, after other trials trained. So the tuner
bridge asks every candidate here first, with the search's data, in every trial before it trains:

* ``unsupported="error"`` (the default): one :class:`kfitx.UnsupportedDataError` listing each
  strategy that cannot serve the data and why (fatal to the search, before anything trains);
* ``unsupported="skip"``: those strategies are left out, with one warning naming them. The
  tuner's space still holds them (keras-tuner declares it before the search's data is known, and
  its oracles keep a choice's values fixed), so a trial that draws one trains one of the others
  instead and is recorded under that one's name (:func:`substitute`): no trial is lost or failed,
  and none trains or is recorded as a strategy that cannot serve the data.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from kfitx.errors import KfitxError, OptionError, UnsupportedDataError, message
from kfitx.search.tunable import Tunable
from kfitx.strategy import Strategy

if TYPE_CHECKING:
    import keras_tuner

    from kfitx.data import Source

__all__ = ["UNSUPPORTED", "check_unsupported", "served", "substitute", "unserved"]

#: What a search does with candidates that cannot serve its data.
UNSUPPORTED = ("error", "skip")

_warned: set[tuple[str, ...]] = set()


def check_unsupported(value: object) -> str:
    """``value`` if it is one of :data:`UNSUPPORTED`, else an :class:`kfitx.OptionError`."""
    if value not in UNSUPPORTED:
        raise OptionError(message("`unsupported` to be 'error' (refuse the search) or 'skip' (leave out the "
                                  "strategies that cannot serve the data, with a warning)", repr(value)))
    return str(value)


def unserved(names: Sequence[str], source: Source, strategy_options: Mapping[str, Mapping[str, object]],
             lookup: Callable[[str], type[Strategy]], backend: str) -> dict[str, str]:
    """``{name: why}`` for each candidate that cannot serve ``source`` on ``backend``.

    A candidate whose fixed options it refuses is left for the option checks to report.
    """
    reasons: dict[str, str] = {}
    for name in names:
        cls = lookup(name)
        if backend not in cls.backends:
            reasons[name] = f"it trains on {', '.join(cls.backends)}, not on KERAS_BACKEND={backend}"
            continue
        fixed = {k: v for k, v in strategy_options.get(name, {}).items() if not isinstance(v, Tunable)}
        try:
            reason = cls(**fixed).supports(source)
        except KfitxError:
            continue
        if reason:
            reasons[name] = str(reason).rstrip(".")
    return reasons


def served(names: Sequence[str], reasons: Mapping[str, str], unsupported: str, described: str) -> list[str]:
    """The candidates to search among: all of them, or (``"skip"``) those that serve the data.

    Raises:
        UnsupportedDataError: some cannot serve it and ``unsupported="error"``, or none can.
    """
    if not reasons:
        return list(names)
    listed = "; ".join(f"'{name}' ({why})" for name, why in reasons.items())
    left = [n for n in names if n not in reasons]
    if unsupported == "error" or not left:
        raise UnsupportedDataError(message(
            "every strategy of the search to serve its data, checked before the first trial trains",
            f"{described}, which {len(reasons)} of {len(names)} cannot serve: {listed}",
            "Remove them from `strategies`, give them data they serve, or pass unsupported='skip' to leave them "
            "out with a warning." if left else "Choose strategies that serve this data (`kfitx list`)."))
    key = tuple(sorted(reasons))
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"kfitx: the search leaves out {len(reasons)} strategies that cannot serve its data "
                      f"({described}): {listed}. It searches among {', '.join(left)}.", UserWarning, stacklevel=3)
    return left


def substitute(hp: keras_tuner.HyperParameters, left: Sequence[str]) -> str | None:
    """Under ``unsupported="skip"``, a trial that drew a left-out strategy trains one of ``left`` instead.

    Sets the trial's ``strategy`` value (what keras-tuner records for it) to one of ``left``,
    chosen from the trial's other values, so the trial trains what it is recorded as. Returns
    the strategy it drew and gave up, or ``None`` when it drew one of ``left``.
    """
    drawn = hp.values.get("strategy")
    if drawn is None or drawn in left:
        return None
    others = repr(sorted((k, repr(v)) for k, v in hp.values.items() if k != "strategy"))
    hp.values["strategy"] = left[zlib.crc32(others.encode()) % len(left)]
    return str(drawn)
