"""Pruning of poor trials: a trial stops early when it is losing to the trials that finished.

Separation of concerns:

* :class:`MedianPruning` is the rule and its settings (Optuna's ``MedianPruner``):
  after epoch ``k`` (counted from 1) with ``k > warmup_epochs``, the trial's best
  objective so far is compared with the median, at epoch ``k``, of the trials that
  finished training without being pruned and reached epoch ``k``; if at least
  ``min_trials`` such trials exist and it is worse, the trial stops
  (``model.stop_training = True`` at the epoch's end). keras-tuner then records
  its best epoch as usual: its score is what it reached.
* Curves: keras-tuner 1.4.8 passes no intermediate result to its oracle, and the
  tuner bridge's resume log is deleted when an execution ends. So each trial keeps
  its own per-epoch objective in ``<trial dir>/kfitx-epochs.json``
  (:data:`CURVE`: per execution, the objective at each epoch and a state:
  ``running``, ``finished`` or ``pruned``), written atomically at every epoch's end.
  Every process of a parallel search (``kfitx tune``) reads the other trials'
  files in the project directory, so pruning sees the trials of all workers.
* :class:`Pruner` is the per-execution callback doing both (made by
  :func:`callback`, which imports Keras lazily).

Imports nothing heavy at module level.
"""

from __future__ import annotations

import glob
import os
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kfitx.errors import OptionError, message
from kfitx.search import trial_record

if TYPE_CHECKING:
    import keras
    import keras_tuner

__all__ = ["CURVE", "MedianPruning", "as_pruning", "callback", "median_at", "read_curve"]

#: Each trial's per-epoch objective, inside keras-tuner's ``trial_<id>`` folder.
CURVE = "kfitx-epochs.json"


@dataclass(frozen=True, init=False)
class MedianPruning:
    """Stops a trial whose objective is worse than the median of finished trials at the same epoch.

    Args:
        warmup_epochs: Epochs every trial trains before it can be stopped (default 1).
        min_trials: Trials that must have finished training (and reached the epoch)
            before any trial is stopped (default 4): the first ``min_trials`` trials of
            a search are never pruned.

    ``StrategyHyperModel(..., pruning="median")`` is ``pruning=MedianPruning()``.
    """

    warmup_epochs: int = 1
    min_trials: int = 4

    def __init__(self, warmup_epochs: int = 1, min_trials: int = 4, **unknown: object) -> None:
        if unknown:
            from kfitx.plan.checks import closest

            name = sorted(unknown)[0]
            raise OptionError(message("MedianPruning's arguments to be warmup_epochs and min_trials",
                                      ", ".join(f"{k}={v!r}" for k, v in sorted(unknown.items())),
                                      "Fix the keyword." + closest(name, ["warmup_epochs", "min_trials"])))
        object.__setattr__(self, "warmup_epochs", warmup_epochs)
        object.__setattr__(self, "min_trials", min_trials)
        for name, low in (("warmup_epochs", 0), ("min_trials", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise OptionError(message(f"MedianPruning's `{name}` must be an int >= {low}", repr(value)))


def as_pruning(value: object) -> MedianPruning | None:
    """``None``, ``"median"`` or a :class:`MedianPruning` as the rule; anything else is an :class:`OptionError`."""
    if value is None or isinstance(value, MedianPruning):
        return value
    if value == "median":
        return MedianPruning()
    raise OptionError(message("`pruning` must be None, 'median' or kfitx.tuner.MedianPruning(...)", repr(value),
                              "Pass pruning='median', or MedianPruning(warmup_epochs=..., min_trials=...)."))


def read_curve(trial_dir: str) -> dict[str, Any]:
    """A trial's curve file (``{}`` when it has none or it cannot be read)."""
    return trial_record.read_json(os.path.join(trial_dir, CURVE))


def _finished_value(curve: dict[str, Any], epoch: int) -> float | None:
    """The mean objective at ``epoch`` over the finished executions, ``None`` if pruned or none reached it."""
    runs = list((curve.get("executions") or {}).values())
    if not runs or any(r.get("state") == "pruned" for r in runs):
        return None
    values = [r["values"][str(epoch)] for r in runs
              if r.get("state") == "finished" and str(epoch) in (r.get("values") or {})]
    return sum(values) / len(values) if values else None


@dataclass
class _Cache:
    """Curves already read, by path; a file is read again only when it changed."""

    files: dict[str, tuple[tuple[int, int], dict[str, Any]]] = field(default_factory=dict)

    def read(self, path: str) -> dict[str, Any]:
        try:
            stat = os.stat(path)
        except OSError:
            return {}
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self.files.get(path)
        if cached is None or cached[0] != key:
            cached = (key, trial_record.read_json(path))
            self.files[path] = cached
        return cached[1]


def median_at(project_dir: str, epoch: int, exclude: str,
              cache: _Cache | None = None) -> tuple[float | None, list[str]]:
    """The median objective at ``epoch`` (0-based) over finished, unpruned trials other than ``exclude``.

    Returns:
        ``(median or None, the trial ids it is over)``.
    """
    cache = cache or _Cache()
    found: dict[str, float] = {}
    for path in glob.glob(os.path.join(glob.escape(project_dir), "trial_*", CURVE)):
        curve = cache.read(path)
        trial_id = str(curve.get("trial_id") or os.path.basename(os.path.dirname(path)).removeprefix("trial_"))
        if trial_id == exclude:
            continue
        value = _finished_value(curve, epoch)
        if value is not None:
            found[trial_id] = value
    ids = sorted(found, key=lambda t: (len(t), t))
    return (statistics.median(found[t] for t in ids) if ids else None), ids


def callback(rule: MedianPruning, objective: keras_tuner.Objective, trial_dir: str, trial_id: str,
             execution: int) -> keras.callbacks.Callback:
    """The Keras callback that keeps this execution's curve and stops it when the rule says so.

    Args:
        rule: The pruning rule.
        objective: keras-tuner's ``Objective`` (``has_value``, ``get_value``, ``better_than``, ``direction``).
        trial_dir: ``<project dir>/trial_<id>``.
        trial_id: keras-tuner's trial id.
        execution: The execution's index within the trial (0 for the first).
    """
    import keras

    class Pruner(keras.callbacks.Callback):
        """Writes the objective of each epoch; stops training when the trial is losing.

        See :mod:`kfitx.search.pruning`.
        """

        def __init__(self) -> None:
            super().__init__()
            self.rule, self.objective = rule, objective
            self.path = os.path.join(trial_dir, CURVE)
            self.project_dir = os.path.dirname(os.path.abspath(trial_dir))
            self.pruned_epoch: int | None = None  # counted from 1: the epoch it stopped after
            self.decision: dict[str, Any] = {}
            self._begun = False
            self._cache = _Cache()

        def _runs(self) -> dict[str, Any]:
            curve = read_curve(trial_dir) or {"trial_id": trial_id, "executions": {}}
            curve.update(objective=getattr(objective, "name", None), direction=getattr(objective, "direction", None))
            curve.setdefault("executions", {})
            return curve

        def _write(self, values: dict[str, float], state: str) -> None:
            curve = self._runs()
            curve["executions"][str(execution)] = {"values": values, "state": state}
            os.makedirs(trial_dir, exist_ok=True)
            trial_record.write_json(self.path, curve)

        def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            if self._begun:
                return
            self._begun = True  # a resumed execution keeps the epochs before the one it starts at
            earlier = (self._runs()["executions"].get(str(execution)) or {}).get("values") or {}
            self.values = {k: v for k, v in earlier.items() if int(k) < epoch}

        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            if not self._begun:
                self.on_epoch_begin(epoch)
            if not self.objective.has_value(logs or {}):
                return
            self.values[str(epoch)] = float(self.objective.get_value(logs))
            state = "running"
            if epoch + 1 > self.rule.warmup_epochs:
                best = None
                for k, v in self.values.items():
                    if int(k) <= epoch and (best is None or self.objective.better_than(v, best)):
                        best = v
                median, over = median_at(self.project_dir, epoch, trial_id, self._cache)
                if (median is not None and len(over) >= self.rule.min_trials
                        and self.objective.better_than(median, best)):
                    state, self.pruned_epoch = "pruned", epoch + 1
                    self.decision = {"epoch": epoch + 1, "value": best, "median": median, "trials": over}
                    self.model.stop_training = True
            self._write(self.values, state)

        def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
            if self.pruned_epoch is None and self._begun:
                self._write(self.values, "finished")

    return Pruner()
