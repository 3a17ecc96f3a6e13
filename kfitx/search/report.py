"""``kfitx report``: a keras-tuner search directory read back, finished or running.

Separation of concerns:

* :func:`find_project` / :func:`load` read the files only -- keras-tuner's
  ``trial_<id>/trial.json`` (hyperparameters, metrics, score, status), kfitx's
  ``trial_<id>/kfitx-trial.json`` (:mod:`kfitx.search.trial_record`: start, end, epochs,
  strategy, worker, peak memory, the epoch a pruned trial stopped after) and ``kfitx-tune.json`` (the objective) -- into
  a :class:`Search`; nothing heavy is imported, so it works beside a running search.
* :func:`leaderboard` is the table ``kfitx report`` prints, and the one
  ``examples/search_digits.py`` prints after its search; its ``front`` column marks the trials
  on the Pareto front of score against training seconds (:mod:`kfitx.search.front`). A search
  that prunes (``pruning="median"``) gets a ``pruned`` column, one with a time budget that
  stopped trials a ``budget`` column: the epoch each such trial stopped after.
* :func:`plot` draws score against wall time (coloured by strategy), score against training
  seconds with the front, and samples/s per strategy (needs matplotlib: ``kfitx[plot]``).
* :func:`best_hyperparameters` gives the best trial's ``keras_tuner.HyperParameters`` (or the
  best that trained within ``max_seconds`` / ``max_epoch_seconds``) to retrain with:
  ``hypermodel.fit(hp, hypermodel.build(hp), x, y, ...)``.
"""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from kfitx.errors import OptionError, message
from kfitx.search import budget, front, trial_record
from kfitx.search.launch.status import MARKER, read_json
from kfitx.search.plot import plot, require_matplotlib
from kfitx.search.trial_record import TrialRow

if TYPE_CHECKING:
    import keras_tuner

__all__ = ["Search", "TrialRow", "best_hyperparameters", "find_project", "leaderboard", "load", "plot",
           "require_matplotlib"]

FINISHED = ("COMPLETED", "FAILED", "INVALID")
UNREADABLE = "UNREADABLE"  # the status of a trial whose trial.json cannot be read


@dataclass
class Search:
    """A search directory's trials, best first."""

    project_dir: str
    objective: str | None
    direction: str  # "max" or "min"
    max_trials: int | None
    trials: list[TrialRow]

    @property
    def best(self) -> TrialRow | None:
        scored = [t for t in self.trials if t.score is not None and t.status == "COMPLETED"]
        return scored[0] if scored else None

    @property
    def finished(self) -> list[TrialRow]:
        return [t for t in self.trials if t.status in FINISHED]

    @property
    def prunes(self) -> bool:
        """Whether the search prunes trials (its trials' records say whether each one was pruned)."""
        return any("pruned_epoch" in t.record for t in self.trials)

    @property
    def front(self) -> set[str]:
        """Ids of the trials on the Pareto front of score against training seconds."""
        return front.pareto_front(self.trials, self.direction)


def _best(observations: list[dict[str, Any]], direction: str) -> float | None:
    values = []
    for obs in observations:
        value = obs.get("value")
        value = sum(value) / len(value) if isinstance(value, list) and value else value
        if isinstance(value, (int, float)) and not math.isnan(value):
            values.append(float(value))
    if not values:
        return None
    return min(values) if direction == "min" else max(values)


def read_trial(trial_dir: str) -> TrialRow | None:
    """A trial from keras-tuner's ``trial.json`` (its on-disk format) and kfitx's record.

    ``None`` while keras-tuner has not written ``trial.json`` yet; a ``trial.json`` that
    cannot be read is a row with status ``UNREADABLE`` and the cause as its message.
    """
    path = os.path.join(trial_dir, "trial.json")
    if not os.path.exists(path):
        return None
    data, cause = _read_trial_json(path)
    if cause is not None:
        trial_id = os.path.basename(os.path.normpath(trial_dir)).removeprefix("trial_")
        return TrialRow(trial_id=trial_id, status=UNREADABLE, score=None, values={},
                        record=trial_record.read(trial_dir), message=f"{path}: {cause}")
    metrics = {}
    for name, metric in ((data.get("metrics") or {}).get("metrics") or {}).items():
        best = _best(metric.get("observations") or [], metric.get("direction", "max"))
        if best is not None:
            metrics[name] = best
    score = data.get("score")
    score = float(score) if isinstance(score, (int, float)) and not math.isnan(score) else None
    return TrialRow(trial_id=str(data["trial_id"]), status=str(data.get("status") or "-"), score=score,
                    values=dict((data.get("hyperparameters") or {}).get("values") or {}), metrics=metrics,
                    record=trial_record.read(trial_dir), message=data.get("message"))


def _read_trial_json(path: str) -> tuple[dict[str, Any], str | None]:
    """``(data, None)``, or ``({}, why it cannot be read)``."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        return {}, f"{type(err).__name__}: {err}"
    if not isinstance(data, dict) or not data.get("trial_id"):
        return {}, "not a keras-tuner trial (no trial_id)"
    return data, None


def find_project(directory: str, project: str | None = None) -> str:
    """The project folder: ``directory/project``, ``directory`` itself, or its only project.

    Raises:
        OptionError: when there is no search there, or several and no ``project``.
    """
    if project is not None:
        path = os.path.join(directory, project)
        if not os.path.isfile(os.path.join(path, "oracle.json")) and not glob.glob(os.path.join(path, "trial_*")):
            raise OptionError(message(f"a keras-tuner project named {project!r} in {directory}", "none there",
                                      "Check --project (the tuner's project_name)."))
        return path
    if os.path.isfile(os.path.join(directory, "oracle.json")) or glob.glob(os.path.join(directory, "trial_*")):
        return directory
    projects = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(directory, "*", "oracle.json")))
    if len(projects) == 1:
        return projects[0]
    if not projects:
        raise OptionError(message("a keras-tuner search directory (the tuner's `directory`, holding "
                                  "<project>/oracle.json)", directory, "Pass the directory the script gave its tuner."))
    names = ", ".join(os.path.basename(p) for p in projects)
    raise OptionError(message("one project, or --project NAME", f"{len(projects)} projects in {directory}",
                              f"Available: {names}."))


def load(directory: str, project: str | None = None) -> Search:
    """Every trial of the search in ``directory`` (see :func:`find_project`), best first."""
    path = find_project(directory, project)
    trials = [row for d in glob.glob(os.path.join(path, "trial_*")) if (row := read_trial(d)) is not None]
    marker = read_json(os.path.join(path, MARKER))
    objective, direction = marker.get("objective"), marker.get("direction")
    if direction not in ("min", "max"):  # no kfitx marker: the direction of the metric the score came from
        direction = "max"
        for t in trials:
            data = _read_trial_json(os.path.join(path, f"trial_{t.trial_id}", "trial.json"))[0]
            for name, metric in ((data.get("metrics") or {}).get("metrics") or {}).items():
                if t.score is not None and t.metrics.get(name) == t.score:
                    objective, direction = objective or name, metric.get("direction", "max")
                    break
            else:
                continue
            break
    sign = -1.0 if direction == "max" else 1.0
    trials.sort(key=lambda t: (t.score is None, sign * (t.score or 0.0), _order(t.trial_id)))
    return Search(project_dir=path, objective=cast("str | None", objective), direction=direction,
                  max_trials=cast("int | None", marker.get("max_trials")), trials=trials)


def _order(trial_id: str) -> tuple[int, str]:
    return (int(trial_id), "") if trial_id.isdigit() else (1 << 30, trial_id)


def format_value(name: str, value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 0.01 or "rate" in name or "lr" == name else f"{value:.3g}"
    return str(value)


def leaderboard(search: Search) -> str:
    """The trials as a table, best first: every hyperparameter, strategy, score, samples/s, peak MiB, ...

    A search that prunes also shows, per trial, the epoch it was pruned at (``pruned``: ``at 3``, or ``-``);
    one whose time budget stopped trials, the epoch it stopped each at (``budget``). ``front``: ``*`` for
    the trials on the Pareto front of score against training seconds.
    """
    names = sorted({n for t in search.trials for n in t.values if n != "strategy"})
    score = search.objective or "score"
    pruned = ["pruned"] if search.prunes else []  # the column only where the search prunes
    stopped = ["budget"] if any(t.budget_epoch is not None for t in search.trials) else []
    on_front = search.front
    header = ["rank", "trial", *names, "strategy", score, "samples/s", "peak MiB", "epochs", *pruned, *stopped,
              "seconds", "front", "status"]
    rows = []
    for rank, t in enumerate(search.trials, 1):
        number = lambda v, fmt: "-" if v is None else fmt.format(v)
        rows.append([str(rank), t.trial_id, *(format_value(n, t.values[n]) if n in t.values else "-" for n in names),
                     t.strategy or "-", number(t.score, "{:.4f}"), number(t.samples_per_s, "{:,.0f}"),
                     number(t.peak_mib, "{:,.0f}"), number(t.record.get("epochs"), "{}"),
                     *([number(t.pruned_epoch, "at {}")] if pruned else []),
                     *([number(t.budget_epoch, "at {}")] if stopped else []), number(t.seconds, "{:.1f}"),
                     "*" if t.trial_id in on_front else "", t.status])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def failures(search: Search) -> str:
    """The failed trials, each with its cause (the last line keras-tuner kept of the error), and the trials
    whose ``trial.json`` cannot be read, with why; or ``""``."""
    lines = []
    for t in search.trials:
        if t.status == UNREADABLE:
            lines.append(f"  trial {t.trial_id}: unreadable, {t.message}")
            continue
        if t.status != "FAILED":
            continue
        text = [line.strip() for line in (t.message or "").strip().splitlines() if line.strip()]
        cause = next((line for line in reversed(text) if not line.startswith("kfitx: trial")), "no message kept")
        named = next((line.removeprefix("kfitx: ") for line in text if line.startswith("kfitx: trial")), None)
        lines.append(f"  trial {t.trial_id}: {cause}" + (f"  [{named}]" if named else ""))
    if not lines:
        return ""
    unreadable = any(t.status == UNREADABLE for t in search.trials)
    return ("Failed or unreadable trials:\n" if unreadable else "Failed trials:\n") + "\n".join(lines)


def summary(search: Search) -> str:
    """One line: trials finished of the total, and the best."""
    done = len(search.finished)
    total = search.max_trials or len(search.trials)
    best = search.best
    text = f"{search.project_dir}: {done}/{total} trial(s) finished"
    pruned = sum(t.pruned_epoch is not None for t in search.trials)
    stopped = sum(t.budget_epoch is not None for t in search.trials)
    notes = ([f"{pruned} pruned"] if pruned else []) + ([f"{stopped} stopped by the time budget"] if stopped else [])
    if notes:
        text += f" ({', '.join(notes)})"
    if best is not None:
        text += f"; best trial {best.trial_id}: {search.objective or 'score'} {best.score:.4f}"
        if best.strategy:
            text += f" (strategy {best.strategy})"
    ledger = budget.read(search.project_dir)
    if ledger.get("budget_s"):
        text += f"; {budget.describe(ledger)}"
    return text


def _chosen(search: Search, max_seconds: float | None, max_epoch_seconds: float | None) -> TrialRow | None:
    """The best trial, or the best that trained within the limits given; ``None`` if there is none."""
    if max_seconds is None and max_epoch_seconds is None:
        return search.best
    fits = front.within(search.trials, max_seconds, max_epoch_seconds, search.direction)
    return fits[0] if fits else None


def describe_best(search: Search, max_seconds: float | None = None, max_epoch_seconds: float | None = None) -> str:
    """The best trial (or the best that trained within ``max_seconds`` / ``max_epoch_seconds``), its strategy,
    hyperparameters and cost, and the lines that train it again."""
    best = _chosen(search, max_seconds, max_epoch_seconds)
    limited = max_seconds is not None or max_epoch_seconds is not None
    if best is None:
        return front.nothing_within(search.trials, max_seconds, max_epoch_seconds) if limited else \
            "No trial has completed yet: nothing to retrain."
    values = json.dumps(best.values, sort_keys=True)
    directory = os.path.dirname(os.path.abspath(search.project_dir))
    project = os.path.basename(os.path.abspath(search.project_dir))
    epochs = best.record.get("epochs")
    cost = "-" if best.seconds is None else f"{best.seconds:.1f} s of training"
    if best.seconds is not None and isinstance(epochs, int) and epochs > 0:
        cost += f", {epochs} epoch(s), {best.seconds / epochs:.2f} s an epoch"
    if best.budget_epoch is not None:
        cost += ", stopped by the time budget"
    cost += "; on the Pareto front of score against training seconds" if best.trial_id in search.front else ""
    limits = "".join(f", {name}={value!r}" for name, value in (("max_seconds", max_seconds),
                                                               ("max_epoch_seconds", max_epoch_seconds))
                      if value is not None)
    within = f" {front.limits_text(max_seconds, max_epoch_seconds)}" if limited else ""
    return "\n".join([
        f"Best trial {best.trial_id}{within}: {search.objective or 'score'} {best.score:.4f}, "
        f"strategy {best.strategy or '- (not a kfitx strategy search)'}",
        f"cost: {cost}",
        f"hyperparameters: {values}",
        "Retrain it with the same strategy and settings:",
        f"    hp = kfitx.report.best_hyperparameters({directory!r}, project={project!r}{limits})",
        "    model = hypermodel.build(hp)",
        f"    history = hypermodel.fit(hp, model, x, y, epochs={epochs if isinstance(epochs, int) else '...'}, "
        "validation_data=...)",
        "(hypermodel: the script's StrategyHyperModel or HyperModel; for a StrategyHyperModel the fit trains "
        "through hp['strategy'].)",
    ])


def best_hyperparameters(directory: str, project: str | None = None, *, max_seconds: float | None = None,
                         max_epoch_seconds: float | None = None) -> keras_tuner.HyperParameters:
    """The best trial's ``keras_tuner.HyperParameters`` (its search space and values), to retrain with.

    With ``max_seconds`` (the trial's training wall time) or ``max_epoch_seconds`` (that time per
    epoch), the best trial that trained within them. ``hypermodel.fit(hp, hypermodel.build(hp),
    x, y, epochs=...)`` trains it again with the same strategy and settings (for a
    :class:`kfitx.tuner.StrategyHyperModel`, ``hp["strategy"]``).

    Raises:
        OptionError: when no trial has completed (within the limits).
    """
    import keras_tuner

    search = load(directory, project)
    best = _chosen(search, max_seconds, max_epoch_seconds)
    if best is None:
        if max_seconds is None and max_epoch_seconds is None:
            raise OptionError(message("a completed trial", f"none in {search.project_dir}",
                                      "Wait for the search, or see `kfitx report` for the failures."))
        raise OptionError(message(f"a completed trial that trained {front.limits_text(max_seconds, max_epoch_seconds)}",
                                  f"none in {search.project_dir}",
                                  front.nothing_within(search.trials, max_seconds, max_epoch_seconds)))
    data = read_json(os.path.join(search.project_dir, f"trial_{best.trial_id}", "trial.json"))
    hp = keras_tuner.HyperParameters.from_config(data["hyperparameters"])
    hp.values.update(best.values)
    return hp
