"""A time budget for a keras-tuner search: no trial starts once it is spent, running trials stop at an epoch's end.

Separation of concerns:

* :func:`parse_duration` / :func:`format_duration` -- ``20m``, ``90s``, ``1h30m`` or plain seconds.
* The ledger, ``<project dir>/kfitx-budget.json`` (:data:`LEDGER`): the budget, the seconds spent
  by earlier runs of the search, this run's start and the last moment a process of it was seen
  (``seen``), and the deadline (this run's start + budget - spent before). It lives in the search
  directory, so the clock survives resumption: a later run with a larger budget continues where
  the last one stopped, and one whose budget is spent ends at once. A run is known by its start;
  a process started again within the same run (``kfitx tune`` restarting its chief) continues it.
  Every process of the search writes ``seen`` (:func:`tick`) at each epoch's end; the time after a
  run's last epoch end before it was killed is not counted, nor is a run that found the budget
  spent (it starts nothing).
* Who starts the clock: in one process, :func:`kfitx.tuner.fit` at the first trial of the run
  (:func:`start`); under ``kfitx tune``, the chief, from the supervisor's start
  (``KFITX_TUNE_TIME_BUDGET`` and ``KFITX_TUNE_RUN_START`` in each process's environment).
  The same process makes keras-tuner's oracle answer "stopped" once the deadline has passed
  (:func:`kfitx._keras.stop_trials_when`): keras-tuner then ends the search, in every worker.
* :func:`stopper` -- the Keras callback in every trial: at an epoch's end past the deadline it sets
  ``model.stop_training`` (keras-tuner keeps the trial's best epoch as its score) and writes
  ``stopped_by: "budget"`` and ``stopped_epoch`` into the trial's ``kfitx-trial.json``.

Hyperband is refused (:func:`refuse_hyperband`): it trains trials for set numbers of epochs and
continues the best ones from their checkpoints, so a trial the budget stopped mid-way would be
continued as if it had trained them all.

Imports nothing heavy at module level; ``clock`` is the one source of the time (tests replace it).
"""

from __future__ import annotations

import math
import os
import re
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypedDict, cast

from kfitx.errors import OptionError, TuneError, message
from kfitx.search import trial_record

if TYPE_CHECKING:
    import keras
    import keras_tuner
    from keras_tuner.src.engine.base_tuner import BaseTuner
    from keras_tuner.src.engine.tuner_utils import TunerCallback

__all__ = ["ENV_RUN_START", "ENV_TIME_BUDGET", "LEDGER", "environment", "format_duration", "parse_duration",
           "read", "refuse_hyperband", "spent_s", "start", "stopper", "tick"]

#: The search's budget ledger, in keras-tuner's project directory.
LEDGER = "kfitx-budget.json"
#: Under ``kfitx tune``: the budget in seconds, and when the command started (``time.time()``).
ENV_TIME_BUDGET = "KFITX_TUNE_TIME_BUDGET"
ENV_RUN_START = "KFITX_TUNE_RUN_START"

#: The time, as ``time.time()``; tests replace it to run a budget without waiting.
clock: Callable[[], float] = time.time

_FORMS = "plain seconds (1200, 90.5) or hours, minutes and seconds such as 90s, 20m, 1h30m, 2h"
_NUMBER = r"\d+(?:\.\d+)?"
_PARTS = re.compile(rf"(?:({_NUMBER})h)?(?:({_NUMBER})m)?(?:({_NUMBER})s)?")


def parse_duration(value: object, what: str = "time_budget") -> float:
    """Seconds in ``value``: a number of seconds, a ``datetime.timedelta``, or text such as ``"1h30m"``.

    Raises:
        OptionError: for anything else, or a duration that is not positive.
    """
    import datetime

    seconds: float | None = None
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(_NUMBER, text):
            seconds = float(text)
        elif text and (match := _PARTS.fullmatch(text)) is not None:
            hours, minutes, secs = (float(part or 0) for part in match.groups())
            seconds = hours * 3600 + minutes * 60 + secs
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise OptionError(message(f"`{what}` to be a positive duration: {_FORMS}", repr(value)))
    return seconds


def format_duration(seconds: float) -> str:
    """``45s``, ``20m00s``, ``1h30m00s``."""
    whole = max(0, int(round(seconds)))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m{whole % 60:02d}s"


def environment(time_budget: object, run_start: float, joining: str | None = None) -> dict[str, str]:
    """What ``kfitx tune`` adds to each process's environment: the budget (``""``: none) and the command's start.

    Raises:
        OptionError: ``time_budget`` is not a duration.
        TuneError: a budget given to a ``kfitx tune`` joining another's search (``joining``: its ``--chief``).
    """
    if time_budget is not None and joining is not None:
        raise TuneError(message("--time-budget on the kfitx tune that starts the search (its chief keeps the "
                                "clock)", f"--time-budget with --chief {joining}",
                                "Drop --time-budget here; give it to the kfitx tune that started the search."))
    seconds = None if time_budget is None else parse_duration(time_budget, "--time-budget")
    return {ENV_RUN_START: repr(run_start), ENV_TIME_BUDGET: "" if seconds is None else repr(seconds)}


def _path(project_dir: str) -> str:
    return os.path.join(project_dir, LEDGER)


class RunClock(TypedDict, total=False):
    """This run's clock in the ledger: when it started, when a process of it was last seen alive, and whether
    earlier runs had spent the budget before it started (then it starts nothing and counts nothing)."""

    start: float
    seen: float
    refused: bool


class Ledger(TypedDict, total=False):
    """A search's time budget as ``kfitx-budget.json`` keeps it (:func:`start` writes it; ``{}``: none)."""

    budget_s: float | None
    spent_before_s: float
    deadline: float
    run: RunClock
    ended: bool


def read(project_dir: str) -> Ledger:
    """The ledger of the search in ``project_dir`` (``{}`` when it has none)."""
    return cast(Ledger, trial_record.read_json(_path(project_dir)))  # the file start() wrote


def spent_s(ledger: Ledger) -> float:
    """Seconds the search has spent: earlier runs, plus this run up to the last moment a process was seen."""
    run = ledger.get("run") or {}
    before = float(ledger.get("spent_before_s") or 0.0)
    if isinstance(run.get("start"), (int, float)) and isinstance(run.get("seen"), (int, float)):
        before += max(0.0, run["seen"] - run["start"])
    return before


def start(project_dir: str, budget_s: float | None, run_start: float) -> Ledger:
    """Starts (or, for the same ``run_start``, continues) this run's clock; returns the ledger.

    The seconds spent by earlier runs are carried over; the deadline is this run's start plus
    what is left of ``budget_s``. A run whose budget earlier runs spent starts nothing and its
    time is not counted (``refused``); so is a run without a budget (``budget_s=None``: what was
    spent is kept, no deadline is set).
    """
    earlier = read(project_dir)
    run = earlier.get("run") or {}
    same = run.get("start") == run_start  # a process of the same run started again
    before = float(earlier.get("spent_before_s") or 0.0) if same else spent_s(earlier)
    if budget_s is None:
        ledger: Ledger = {"budget_s": None, "spent_before_s": before}
    elif before >= budget_s:  # spent by earlier runs: this run starts nothing, and its time is not counted
        ledger = {"budget_s": budget_s, "spent_before_s": before, "deadline": run_start + budget_s - before,
                  "run": {"start": run_start, "seen": run_start, "refused": True}}
    else:
        seen = max(clock(), run_start, float(run.get("seen") or 0.0) if same else 0.0)
        ledger = {"budget_s": budget_s, "spent_before_s": before, "deadline": run_start + budget_s - before,
                  "run": {"start": run_start, "seen": seen}}
    os.makedirs(project_dir, exist_ok=True)
    trial_record.write_json(_path(project_dir), ledger)
    return ledger


def tick(project_dir: str) -> Ledger:
    """Records that the run was alive now (``seen``); returns the ledger (``{}`` when there is no budget)."""
    ledger = read(project_dir)
    run = ledger.get("run")
    if not isinstance(run, dict) or not isinstance(ledger.get("deadline"), (int, float)):
        return {}
    if not run.get("refused"):
        run["seen"] = max(float(run.get("seen") or 0.0), clock())
        trial_record.write_json(_path(project_dir), ledger)
    return ledger


def spent(project_dir: str) -> bool:
    """Whether the search in ``project_dir`` has a budget and it is spent (records the moment, :func:`tick`)."""
    ledger = tick(project_dir)
    return bool(ledger) and clock() >= ledger["deadline"]


def describe(ledger: Ledger) -> str:
    """``time budget 20m00s, 20m04s spent``."""
    budget_s = cast(float, ledger["budget_s"])  # called on a ledger with a budget
    return f"time budget {format_duration(budget_s)}, {format_duration(spent_s(ledger))} spent"


def refuse_hyperband(budget_s: float) -> OptionError:
    """The error for a time budget with Hyperband (see the module docstring)."""
    return OptionError(message(
        "a time budget with a tuner that trains each trial for the epochs search() is given (RandomSearch, "
        "BayesianOptimization, GridSearch)", f"a time budget of {format_duration(budget_s)} with Hyperband",
        "Hyperband trains trials for set numbers of epochs and continues the best from their checkpoints: a trial "
        "the budget stopped mid-way would be continued as if it had trained them all. Bound Hyperband with "
        "max_epochs and hyperband_iterations, or search with RandomSearch or BayesianOptimization."))


#: Oracles whose trials this process limits (one clock per oracle, started at its run's first trial).
_limited: weakref.WeakKeyDictionary[keras_tuner.Oracle, bool] = weakref.WeakKeyDictionary()
#: Project directories whose search this process's oracle ended because the budget was spent.
_ended: set[str] = set()


def begin(oracle: keras_tuner.Oracle, project_dir: str, budget_s: float, run_start: float | None = None,
          say: Callable[[str], None] = print) -> tuple[Ledger, bool]:
    """Starts this run's clock and makes ``oracle`` start no trial past the deadline; once per oracle.

    Args:
        oracle: The keras-tuner oracle that hands out trials (the chief's under ``kfitx tune``).
        project_dir: keras-tuner's project directory.
        budget_s: The budget in seconds.
        run_start: When this run began (default: now).
        say: Where the line saying the budget ended the search goes.

    Returns:
        ``(ledger, first)``: ``first`` is whether this call started the clock (the run's first trial).
    """
    from kfitx import _keras

    if oracle in _limited:
        return read(project_dir), False
    ledger = start(project_dir, budget_s, clock() if run_start is None else run_start)
    _limited[oracle] = True

    def over() -> bool:
        if not spent(project_dir):
            return False
        now = read(project_dir)
        _ended.add(project_dir)
        if not now.get("ended"):
            trial_record.write_json(_path(project_dir), {**now, "ended": True})
            say(f"kfitx: {describe(now)}: no new trial starts, and the search ends once the running trials stop "
                "at their next epoch end. A larger time budget continues it.")
        return True

    _keras.stop_trials_when(oracle, over)
    return ledger, True


def spent_error(ledger: Ledger, project_dir: str, option: str) -> OptionError:
    """A rerun whose budget was spent by earlier runs: it starts nothing."""
    return OptionError(message(
        "a time budget larger than what the search has spent already",
        f"{option} {format_duration(cast(float, ledger['budget_s']))}; the search in {project_dir} has spent "
        f"{format_duration(float(ledger.get('spent_before_s') or 0.0))}",
        f"Pass a larger {option} to continue it, or start a new search (another project_name, or overwrite=True)."))


def stopper(project_dir: str, trial_dir: Callable[[], str | None]) -> keras.callbacks.Callback:
    """The Keras callback that stops a trial at the first epoch end past the search's deadline.

    Args:
        project_dir: keras-tuner's project directory (where the ledger is).
        trial_dir: Gives the running trial's folder (its ``kfitx-trial.json`` gets ``stopped_by``), or ``None``.
    """
    import keras

    class KfitxTimeBudget(keras.callbacks.Callback):
        """Stops training at an epoch's end once the search's time budget is spent (see :mod:`kfitx.search.budget`)."""

        kfitx_time_budget = True  # how kfitx.tuner.fit knows kfitx tune's runner added one already

        def __init__(self) -> None:
            super().__init__()
            self.project_dir, self.trial_dir = project_dir, trial_dir
            self.stopped_epoch: int | None = None

        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            if not spent(self.project_dir):
                return
            epochs = (self.params or {}).get("epochs")
            if isinstance(epochs, int) and epoch + 1 >= epochs:
                return  # its last epoch: it was not stopped
            self.model.stop_training = True
            self.stopped_epoch = epoch + 1
            folder = self.trial_dir()
            if folder is not None:
                trial_record.update(folder, stopped_by="budget", stopped_epoch=epoch + 1)

        def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
            tick(self.project_dir)

    return KfitxTimeBudget()


def for_trial(budget_s: float | None, tuner_callback: TunerCallback | None, hp_values: Mapping[str, object],
              callbacks: list[keras.callbacks.Callback],
              say: Callable[[str], None] = print) -> keras.callbacks.Callback | None:
    """In :func:`kfitx.tuner.fit`: the callback stopping this trial at the deadline, or ``None``.

    In one process the run's first trial starts the clock (:func:`begin`); under ``kfitx tune``
    the chief keeps it and the runner has added the callback already.

    Raises:
        OptionError: with Hyperband, or when earlier runs spent the whole budget.
    """
    if budget_s is None or tuner_callback is None or any(getattr(cb, "kfitx_time_budget", False) for cb in callbacks):
        return None
    import keras_tuner

    tuner, trial_id = tuner_callback.tuner, tuner_callback.trial.trial_id
    if isinstance(tuner, keras_tuner.Hyperband) or "tuner/bracket" in hp_values:
        raise refuse_hyperband(budget_s)
    if "KERASTUNER_ORACLE_IP" in os.environ:  # keras-tuner's own distributed search, not kfitx tune: no clock
        return None
    project_dir = os.path.abspath(tuner.project_dir)
    ledger, first = begin(tuner.oracle, project_dir, budget_s, say=say)
    if first and clock() >= ledger["deadline"]:
        raise spent_error(ledger, project_dir, "time_budget")
    return stopper(project_dir, lambda: tuner.get_trial_dir(trial_id))


def chief_begin(tuner: BaseTuner, environ: Mapping[str, str],
                say: Callable[[str], None] = print) -> Ledger | None:
    """Under ``kfitx tune``, in the chief before it serves: the budget (``--time-budget``, else the
    hypermodel's ``time_budget``) starts or continues its clock from the command's start.

    Returns:
        The ledger, or ``None`` without a budget (then the directory's clock, if any, is paused).

    Raises:
        OptionError: with Hyperband.
    """
    text = environ.get(ENV_TIME_BUDGET)
    seconds = float(text) if text else getattr(getattr(tuner, "hypermodel", None), "time_budget", None)
    run_start = float(environ.get(ENV_RUN_START) or clock())
    project_dir = os.path.abspath(tuner.project_dir)
    if seconds is None:
        if read(project_dir):
            start(project_dir, None, run_start)
        return None
    import keras_tuner

    if isinstance(tuner.oracle, keras_tuner.oracles.HyperbandOracle):
        raise refuse_hyperband(seconds)
    ledger, _ = begin(tuner.oracle, project_dir, seconds, run_start, say)
    if clock() >= ledger["deadline"]:
        say(f"kfitx tune: the time budget of {format_duration(seconds)} is spent: this search has used "
            f"{format_duration(ledger['spent_before_s'])}. No trial starts; run the command again with a larger "
            "--time-budget to continue it.")
    else:
        at = time.strftime("%H:%M:%S", time.localtime(ledger["deadline"]))
        say(f"kfitx tune: time budget {format_duration(seconds)} ({format_duration(ledger['spent_before_s'])} "
            f"spent before this run): no trial starts after {at}; running trials stop at their next epoch end.")
    return ledger


def chief_end(project_dir: str) -> tuple[str, str | None]:
    """Under ``kfitx tune``, in the chief after its search: the marker's state and the line to print.

    ``"budget"`` when the budget ended the search (the next ``kfitx tune`` there continues it,
    as an interrupted one), else ``"finished"``.
    """
    ledger = tick(project_dir)
    if not ledger:
        return "finished", None
    import glob

    stopped = sum(trial_record.read_json(path).get("stopped_by") == "budget"
                  for path in glob.glob(os.path.join(glob.escape(project_dir), "trial_*", trial_record.RECORD)))
    if not ledger.get("ended") and project_dir not in _ended:
        return "finished", f"kfitx tune: {describe(ledger)}; the search finished within it."
    return "budget", (f"kfitx tune: {describe(ledger)}: it ended the search ({stopped} trial(s) stopped at an "
                      "epoch end by it so far). Run the command again with a larger --time-budget to continue.")
