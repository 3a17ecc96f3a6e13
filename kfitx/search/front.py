"""Cost on the leaderboard: which trials are worth their training time, and the best one within a cost.

* :func:`pareto_front` -- the completed trials no other trial beats on both counts: a score at
  least as good in no more training seconds (and better on one). Every trial off the front has
  one on it that scores as well for less time.
* :func:`within` -- the trials, best first, that trained within ``max_seconds`` (the trial's
  wall time, ``kfitx-trial.json``'s start to end) or ``max_epoch_seconds`` (that time per epoch
  run); ``kfitx report --best --max-seconds S`` names the first.
* :func:`draw` -- score against training seconds, with the front as a line (``kfitx report --plot``).

Works on :class:`kfitx.search.trial_record.TrialRow`s (``score``, ``seconds``, ``status``, ``record``);
imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from kfitx.errors import OptionError, message

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from kfitx.search.trial_record import TrialRow

__all__ = ["check_limits", "draw", "epoch_seconds", "limits_text", "nothing_within", "pareto_front", "within"]


class _Costed(NamedTuple):
    """A completed trial with its score and its training seconds (both known)."""

    trial: TrialRow
    score: float
    seconds: float


def _costed(trials: Sequence[TrialRow]) -> list[_Costed]:
    return [_Costed(t, t.score, t.seconds) for t in trials
            if t.status == "COMPLETED" and t.score is not None and t.seconds is not None]


def pareto_front(trials: Sequence[TrialRow], direction: str) -> set[str]:
    """Ids of the completed trials on the front of score (``direction`` ``"max"`` or ``"min"``) against seconds."""
    sign = -1.0 if direction == "max" else 1.0  # lower is better once signed
    costed = _costed(trials)

    def dominates(a: _Costed, b: _Costed) -> bool:
        cost, loss = (a.seconds, sign * a.score), (b.seconds, sign * b.score)
        return cost[0] <= loss[0] and cost[1] <= loss[1] and cost != loss

    return {c.trial.trial_id for c in costed if not any(dominates(o, c) for o in costed if o is not c)}


def epoch_seconds(trial: TrialRow) -> float | None:
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


def within(trials: Sequence[TrialRow], max_seconds: float | None = None, max_epoch_seconds: float | None = None,
           direction: str = "max") -> list[TrialRow]:
    """The completed trials that trained within both limits, best first (of equal scores, the quickest)."""
    check_limits(max_seconds, max_epoch_seconds)
    fits = []
    for c in _costed(trials):
        per_epoch = epoch_seconds(c.trial)
        if max_seconds is not None and c.seconds > max_seconds:
            continue
        if max_epoch_seconds is not None and (per_epoch is None or per_epoch > max_epoch_seconds):
            continue
        fits.append(c)
    sign = -1.0 if direction == "max" else 1.0
    # stable: the given order breaks ties
    return [c.trial for c in sorted(fits, key=lambda c: (sign * c.score, c.seconds))]


def limits_text(max_seconds: float | None, max_epoch_seconds: float | None) -> str:
    """``within 30 s of training`` / ``within 2.5 s an epoch`` / both."""
    parts = ([f"{max_seconds:g} s of training"] if max_seconds is not None else []) + \
        ([f"{max_epoch_seconds:g} s an epoch"] if max_epoch_seconds is not None else [])
    return "within " + " and ".join(parts)


def nothing_within(trials: Sequence[TrialRow], max_seconds: float | None, max_epoch_seconds: float | None) -> str:
    """Why no trial is named: none completed, or the cheapest completed one and what it cost."""
    costed = _costed(trials)
    if not costed:
        return "No completed trial has a training time recorded (kfitx-trial.json): nothing to choose from."
    by_time = min(costed, key=lambda c: c.seconds)
    cheapest = f"the quickest, trial {by_time.trial.trial_id}, trained in {by_time.seconds:.1f} s"
    per_epoch = [(seconds, c.trial) for c in costed if (seconds := epoch_seconds(c.trial)) is not None]
    if max_epoch_seconds is not None and per_epoch:
        seconds, trial = min(per_epoch, key=lambda pair: pair[0])
        cheapest += f"; the quickest an epoch, trial {trial.trial_id}, took {seconds:.2f} s an epoch"
    return f"No completed trial trained {limits_text(max_seconds, max_epoch_seconds)}: {cheapest}."


def draw(axis: Axes, trials: Sequence[TrialRow], direction: str, label: str) -> None:
    """Score against training seconds on ``axis``, by strategy, with the Pareto front as a step line."""
    costed = _costed(trials)
    strategies = sorted({t.strategy or "-" for t in trials})
    for name in strategies:
        mine = [c for c in costed if (c.trial.strategy or "-") == name]
        axis.scatter([c.seconds for c in mine], [c.score for c in mine], label=name)
    on = pareto_front(trials, direction)
    front = sorted((c for c in costed if c.trial.trial_id in on), key=lambda c: c.seconds)
    if front:
        axis.step([c.seconds for c in front], [c.score for c in front], where="post", color="black",
                  linewidth=1.0, label="Pareto front")
    axis.set_xlabel("training seconds of the trial")
    axis.set_ylabel(label)
    axis.set_title("score against cost")
    axis.legend()
