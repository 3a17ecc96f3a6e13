"""Cost on the leaderboard: which trials are worth their training time, and the best one within a cost.

* :func:`pareto_front` -- the completed trials no other trial beats on both counts: a score at
  least as good in no more training seconds (and better on one). Every trial off the front has
  one on it that scores as well for less time.
* :func:`within` -- the trials, best first, that trained within ``max_seconds`` (the trial's
  wall time, ``kfitx-trial.json``'s start to end) or ``max_epoch_seconds`` (that time per epoch
  run); ``kfitx report --best --max-seconds S`` names the first.
* :func:`draw` -- score against training seconds, with the front as a line (``kfitx report --plot``).

Works on :class:`kfitx.search.report.TrialRow`s (``score``, ``seconds``, ``status``, ``record``);
imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kfitx.errors import OptionError, message

__all__ = ["check_limits", "draw", "epoch_seconds", "limits_text", "nothing_within", "pareto_front", "within"]


def _costed(trials: Sequence[Any]) -> list[Any]:
    return [t for t in trials if t.status == "COMPLETED" and t.score is not None and t.seconds is not None]


def pareto_front(trials: Sequence[Any], direction: str) -> set[str]:
    """Ids of the completed trials on the front of score (``direction`` ``"max"`` or ``"min"``) against seconds."""
    sign = -1.0 if direction == "max" else 1.0  # lower is better once signed
    costed = _costed(trials)

    def dominates(a: Any, b: Any) -> bool:
        cost, loss = (a.seconds, sign * a.score), (b.seconds, sign * b.score)
        return cost[0] <= loss[0] and cost[1] <= loss[1] and cost != loss

    return {t.trial_id for t in costed if not any(dominates(o, t) for o in costed if o is not t)}


def epoch_seconds(trial: Any) -> float | None:
    """The trial's seconds per epoch run (``None`` without both)."""
    epochs = trial.record.get("epochs")
    if trial.seconds is None or not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        return None
    return float(trial.seconds) / epochs


def check_limits(max_seconds: float | None, max_epoch_seconds: float | None) -> None:
    """Both limits, if given, are positive numbers of seconds."""
    for name, value in (("max_seconds", max_seconds), ("max_epoch_seconds", max_epoch_seconds)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise OptionError(message(f"`{name}` to be a positive number of seconds", repr(value)))


def within(trials: Sequence[Any], max_seconds: float | None = None, max_epoch_seconds: float | None = None,
           direction: str = "max") -> list[Any]:
    """The completed trials that trained within both limits, best first (of equal scores, the quickest)."""
    check_limits(max_seconds, max_epoch_seconds)
    fits = []
    for t in _costed(trials):
        per_epoch = epoch_seconds(t)
        if max_seconds is not None and t.seconds > max_seconds:
            continue
        if max_epoch_seconds is not None and (per_epoch is None or per_epoch > max_epoch_seconds):
            continue
        fits.append(t)
    sign = -1.0 if direction == "max" else 1.0
    return sorted(fits, key=lambda t: (sign * t.score, t.seconds))  # stable: the given order breaks ties


def limits_text(max_seconds: float | None, max_epoch_seconds: float | None) -> str:
    """``within 30 s of training`` / ``within 2.5 s an epoch`` / both."""
    parts = ([f"{max_seconds:g} s of training"] if max_seconds is not None else []) + \
        ([f"{max_epoch_seconds:g} s an epoch"] if max_epoch_seconds is not None else [])
    return "within " + " and ".join(parts)


def nothing_within(trials: Sequence[Any], max_seconds: float | None, max_epoch_seconds: float | None) -> str:
    """Why no trial is named: none completed, or the cheapest completed one and what it cost."""
    costed = _costed(trials)
    if not costed:
        return "No completed trial has a training time recorded (kfitx-trial.json): nothing to choose from."
    by_time = min(costed, key=lambda t: t.seconds)
    cheapest = f"the quickest, trial {by_time.trial_id}, trained in {by_time.seconds:.1f} s"
    per_epoch = [(seconds, t) for t in costed if (seconds := epoch_seconds(t)) is not None]
    if max_epoch_seconds is not None and per_epoch:
        seconds, trial = min(per_epoch, key=lambda pair: pair[0])
        cheapest += f"; the quickest an epoch, trial {trial.trial_id}, took {seconds:.2f} s an epoch"
    return f"No completed trial trained {limits_text(max_seconds, max_epoch_seconds)}: {cheapest}."


def draw(axis: Any, trials: Sequence[Any], direction: str, label: str) -> None:
    """Score against training seconds on ``axis``, by strategy, with the Pareto front as a step line."""
    costed = _costed(trials)
    strategies = sorted({t.strategy or "-" for t in trials})
    for name in strategies:
        mine = [t for t in costed if (t.strategy or "-") == name]
        axis.scatter([t.seconds for t in mine], [t.score for t in mine], label=name)
    on = pareto_front(trials, direction)
    front = sorted((t for t in costed if t.trial_id in on), key=lambda t: t.seconds)
    if front:
        axis.step([t.seconds for t in front], [t.score for t in front], where="post", color="black",
                  linewidth=1.0, label="Pareto front")
    axis.set_xlabel("training seconds of the trial")
    axis.set_ylabel(label)
    axis.set_title("score against cost")
    axis.legend()
