"""The keras-tuner bridge: the training strategy becomes one more hyperparameter.

Separation of concerns:

* :func:`fit` does the work for one trial: it declares ``strategy`` (a
  ``Choice``, or ``Fixed`` when there is one candidate), lets every candidate
  declare its own tunables under its own name scope inside a conditional scope
  (active only when that strategy is chosen), optionally tunes ``batch_size``,
  and runs :func:`kfitx.fit`. kfitx's ``kfitx_fit`` wrapper for trials
  (:mod:`kfitx.search.measure`) adds what the trial cost (samples/s, peak resident
  memory) to the History, so keras-tuner records it next to the score.
* :class:`StrategyHyperModel` wraps a ``build_model(hp)`` function; its ``build``
  declares the strategy side of the space too (so a tuner knows it before the
  first trial, in parallel searches as well), and its ``fit`` calls :func:`fit`.
* Options as hyperparameters (:mod:`kfitx.search.tunable`): a :class:`Tunable` option
  value is computed from the trial's ``hp`` under the strategy's name scope (never for an
  option the strategy tunes itself: an ``OptionError``).
* Candidates (:mod:`kfitx.search.candidates`): before a trial trains, every candidate is asked
  whether it serves the search's data; ``unsupported="error"`` ends the search with one error
  listing those that cannot, ``"skip"`` leaves them out with a warning.
* Pruning (:mod:`kfitx.search.pruning`): with ``pruning="median"`` (or a
  :class:`MedianPruning`), a trial whose objective is worse than the median of
  the finished trials at the same epoch stops; each trial's per-epoch objective
  is kept in ``<trial dir>/kfitx-epochs.json``, which every worker reads.
* Resume (:class:`kfitx.search.resume.Resume`): inside a tuner (found through keras-tuner's own
  ``TunerCallback``), each execution of a trial trains with a
  ``keras.callbacks.BackupAndRestore`` in ``<trial dir>/kfitx-backup/execution-<i>``
  and keeps its epochs' logs beside it. keras-tuner, reloading a killed search
  (``overwrite=False``), runs a trial that was RUNNING again under the same id
  and hyperparameters (``Oracle.reload`` sends it to the retry queue); the
  execution then restarts from its last finished epoch, its History is given
  back the epochs run before the kill, and keras-tuner's best-epoch checkpoint
  keeps its best value. The backup is deleted when the execution finishes.
* Records (:mod:`kfitx.search.trial_record`): inside a tuner, each trial's strategy,
  epochs run, samples/s and peak memory also go to ``<trial dir>/kfitx-trial.json``,
  which ``kfitx report`` reads (keras-tuner's ``trial.json`` has no timestamps or epochs).
* Parallel searches: :func:`launch` (and ``kfitx tune``) run a search script as
  keras-tuner's chief plus worker processes (:mod:`kfitx.tune`); :func:`is_chief`
  says whether this process's result counts.
* A time budget (:mod:`kfitx.search.budget`, ``time_budget="20m"``): no trial starts once it
  is spent and running trials stop at their next epoch end; its clock is kept in the search
  directory, so a later run with a larger budget continues the search.
* Configuration mistakes (a :class:`kfitx.KfitxError`) are re-raised as
  keras-tuner's fatal errors, which end the search with kfitx's message;
  keras-tuner would otherwise record them as failed trials and go on. Failures
  of training itself (NaN, out of memory, a callback raising) stay ordinary
  exceptions, so keras-tuner counts them as failed trials as usual; so does a plugin's
  :class:`kfitx.errors.StrategyFitError` (what its ``fit`` raised, naming the plugin).

keras-tuner is imported only here.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import keras_tuner

from kfitx import _keras
from kfitx.api import fit as kfitx_fit
from kfitx.errors import KfitxError, OptionError, StrategyFitError, message
from kfitx.plan.checks import closest
from kfitx.registry import get_registry
from kfitx.runtime import resolve
from kfitx.runtime.compile_cache import share_compiled
from kfitx.search import budget, candidates, trial_record
from kfitx.search.launch import is_chief, launch
from kfitx.search.pruning import MedianPruning, as_pruning
from kfitx.search.pruning import callback as _pruner
from kfitx.search.resume import Resume as _Resume
from kfitx.search.resume import build_for_backup
from kfitx.search.trial_record import PEAK_RSS_MIB, SAMPLES_PER_S
from kfitx.search.tunable import Tunable, check_collisions, declare

if TYPE_CHECKING:
    import keras
    from keras_tuner.src.engine.trial import Trial
    from keras_tuner.src.engine.tuner_utils import SaveBestEpoch, TunerCallback

__all__ = ["PEAK_RSS_MIB", "SAMPLES_PER_S", "MedianPruning", "StrategyHyperModel", "Tunable", "fit", "is_chief",
           "launch"]

#: Executions of each trial started in this process (keras-tuner runs them in order).
_executions: weakref.WeakKeyDictionary[Trial, int] = weakref.WeakKeyDictionary()


def _next_execution(trial: Trial) -> int:
    execution = _executions.get(trial, 0)
    _executions[trial] = execution + 1
    return execution


def _fatal(err: KfitxError) -> keras_tuner.errors.FatalError:
    """The keras-tuner fatal error of the same stdlib kind, carrying kfitx's message."""
    kind = keras_tuner.errors.FatalTypeError if isinstance(err, TypeError) else keras_tuner.errors.FatalValueError
    return kind(f"{type(err).__name__}: {err}")


def _in_tuner(callbacks: list[keras.callbacks.Callback]) -> tuple[TunerCallback | None, list[SaveBestEpoch]]:
    """keras-tuner's ``TunerCallback`` (``None`` outside a tuner with trial folders) and its ``SaveBestEpoch``s."""
    tuner_callback, best_epoch = _keras.tuner_callbacks(callbacks)
    if tuner_callback is None or not hasattr(tuner_callback.tuner, "get_trial_dir"):
        return None, []
    return tuner_callback, best_epoch


def _resumer(callbacks: list[keras.callbacks.Callback], execution: int) -> _Resume | None:
    """A :class:`_Resume` when running inside a tuner with no ``BackupAndRestore`` of the user's."""
    import keras

    if any(isinstance(cb, keras.callbacks.BackupAndRestore) for cb in callbacks):
        return None
    tuner_callback, best_epoch = _in_tuner(callbacks)
    return None if tuner_callback is None else _Resume(tuner_callback, best_epoch, execution)


def _pruning_callback(rule: MedianPruning | None, hp: keras_tuner.HyperParameters,
                      callbacks: list[keras.callbacks.Callback], execution: int) -> keras.callbacks.Callback | None:
    """The pruning callback of this execution, inside a tuner with ``rule`` set; refuses Hyperband."""
    tuner_callback, best_epoch = _in_tuner(callbacks)
    if rule is None or tuner_callback is None or not best_epoch:
        return None
    if isinstance(tuner_callback.tuner, keras_tuner.Hyperband) or "tuner/bracket" in hp.values:
        raise OptionError(message("`pruning` with a tuner that trains every trial to its end (RandomSearch, "
                                  "BayesianOptimization, GridSearch)", f"pruning={rule!r} with Hyperband",
                                  "Drop `pruning`: Hyperband already stops the weaker half of its trials."))
    trial = tuner_callback.trial
    return _pruner(rule, best_epoch[0].objective, tuner_callback.tuner.get_trial_dir(trial.trial_id),
                   str(trial.trial_id), execution)


def _candidates(strategies: str | Sequence[str]) -> list[str]:
    names = [strategies] if isinstance(strategies, str) else list(strategies)
    if not names or not all(isinstance(n, str) for n in names):
        raise OptionError(message("`strategies` must be a strategy name or a non-empty list of names",
                                  repr(strategies)))
    for name in names:
        get_registry().lookup(name)  # unknown / conflicting names fail before any training
    return names


def fit(
    hp: keras_tuner.HyperParameters,
    model: keras.Model,
    x: object = None,
    y: object = None,
    *,
    strategies: str | Sequence[str] = "memory",
    strategy_options: Mapping[str, Mapping[str, object]] | None = None,
    tune_batch_size: Sequence[int] | None = None,
    resume: bool = True,
    pruning: str | MedianPruning | None = None,
    time_budget: str | float | None = None,
    unsupported: str = "error",
    **kwargs: Any,
) -> keras.callbacks.History:
    """Trains one keras-tuner trial through kfitx; call it from ``HyperModel.fit``.

    Args:
        hp: The trial's hyperparameters.
        model: The compiled model ``build(hp)`` returned.
        x: Training data, anything :func:`kfitx.fit` accepts (what ``tuner.search`` got,
            positionally or as ``x=``).
        y: Targets when ``x`` holds only the inputs.
        strategies: One strategy name, or several to choose from (``hp.Choice("strategy", ...)``).
        strategy_options: Options per strategy name, e.g. ``{"memory": {"memory_budget": 0.3}}``;
            a value may be a :class:`Tunable`, computed from the trial's hyperparameters.
        tune_batch_size: Batch sizes to choose from (``hp.Choice("batch_size", ...)``);
            ``None`` keeps the ``batch_size`` passed to ``search`` (or the default).
        resume: Inside a tuner, back up each epoch so that a trial killed mid-way goes on
            from its last finished epoch when the search is reloaded (``overwrite=False``).
            Skipped when ``callbacks`` already hold a ``BackupAndRestore``.
        pruning: ``None``, ``"median"`` or a :class:`MedianPruning`: stop a trial whose
            objective is worse than the median of the finished trials at the same epoch
            (not with Hyperband: an ``OptionError``).
        time_budget: ``None``, or the search's wall-time budget (``"20m"``, ``"1h30m"``, ``90``
            seconds): no trial starts once it is spent, and this one stops at its first epoch end
            past it (its record says ``stopped_by: budget``). In one process the clock starts at the
            run's first trial; it is kept in the search directory, so a later run with a larger
            budget continues the search (``overwrite=False``), and one whose budget is spent is an
            ``OptionError``. Under ``kfitx tune`` the chief keeps the clock. Not with Hyperband.
        unsupported: What to do, before the trial trains, with candidate strategies that cannot
            serve the search's data (``Strategy.supports``, ``Strategy.backends``): ``"error"``
            (one ``UnsupportedDataError`` listing them, which ends the search) or ``"skip"``
            (a warning; a trial that draws one trains one of the others, recorded under its name).
        **kwargs: What ``tuner.search`` passed on: ``epochs``, ``callbacks`` (keras-tuner's
            own among them), ``validation_data``, ...

    Returns:
        The History, with ``kfitx_samples_per_s`` and ``kfitx_peak_rss_mib`` added; with
        ``pruning``, ``history.kfitx["pruned_epoch"]`` is the epoch it stopped after, or ``None``.

    Raises:
        keras_tuner.errors.FatalError: for a kfitx configuration mistake; it ends the search.
    """
    _check_hp(hp, model)
    if "strategy" in kwargs:
        raise OptionError(message("kfitx.tuner.fit to get the strategies to try as `strategies`",
                                  f"strategy={kwargs['strategy']!r}", "Did you mean 'strategies'? "
                                  f"e.g. strategies={kwargs['strategy']!r} or strategies=['memory', 'loop']."))
    try:
        names = _candidates(strategies)
        _check_option_keys(strategy_options, names)
        rule = as_pruning(pruning)
        budget_s = None if time_budget is None else budget.parse_duration(time_budget)
        source = get_registry().coerce(x, y)  # the plugins' kfitx_sources first, as kfitx.fit
        reasons = candidates.unserved(names, source, strategy_options or {}, lambda n: get_registry().lookup(n).cls,
                                      resolve().backend)  # every candidate, before anything trains
        left = candidates.served(names, reasons, candidates.check_unsupported(unsupported), source.describe())
        candidates.substitute(hp, left)  # unsupported="skip": a left-out draw trains (and is recorded as) another
        chosen, options = declare(hp, names, strategy_options or {}, get_registry().get)
        if tune_batch_size:
            kwargs["batch_size"] = hp.Choice("batch_size", list(tune_batch_size))
        callbacks = kwargs.get("callbacks")
        callbacks = list(getattr(callbacks, "callbacks", callbacks) or [])  # a list or a CallbackList
        started = time.time()
        tuner_callback, _ = _in_tuner(callbacks)
        execution = _next_execution(tuner_callback.trial) if tuner_callback is not None else 0
        if tuner_callback is not None:  # on JAX, a trial compiling what an earlier one compiled reuses it
            share_compiled(str(tuner_callback.tuner.project_dir))
        pruner = _pruning_callback(rule, hp, callbacks, execution)
        stopper = budget.for_trial(budget_s, tuner_callback, hp.values, callbacks)
        resumer = _resumer(callbacks, execution) if resume else None
        if resumer is not None:
            unbuildable = build_for_backup(model, source)
            if unbuildable is not None:
                logging.getLogger("kfitx").warning("kfitx: trial trains without resume: %s.", unbuildable)
                resumer = None
        extra = [*(cb for cb in (pruner, stopper) if cb is not None),
                 *(resumer.callbacks() if resumer is not None else [])]
        if extra:
            kwargs["callbacks"] = [*callbacks, *extra]
        # kfitx's kfitx_fit wrapper measures the trial (samples/s, peak RSS) into the History
        history = kfitx_fit(model, source, strategy=chosen, **options, **kwargs)
    except StrategyFitError as err:  # a plugin's fit raised: a failed trial (as any training failure) naming it
        _failed(err, kwargs.get("callbacks"), hp)
        raise
    except KfitxError as err:
        raise _fatal(err) from err
    except Exception as err:  # a training failure stays a failed trial, now naming the trial
        _failed(err, kwargs.get("callbacks"), hp)
        raise
    if resumer is not None:
        resumer.merge(history, model)
        for key in (SAMPLES_PER_S, PEAK_RSS_MIB):  # one constant per epoch, the earlier epochs too
            if history.history.get(key):
                history.history[key] = [history.history[key][-1]] * len(history.epoch)
    if pruner is not None:
        history.kfitx["pruned_epoch"] = pruner.pruned_epoch
    tuner_callback, _ = _keras.tuner_callbacks(callbacks)
    if tuner_callback is not None and hasattr(tuner_callback.tuner, "get_trial_dir"):  # inside a tuner
        trial_id = tuner_callback.trial.trial_id
        trial_record.finish(tuner_callback.tuner.get_trial_dir(trial_id), trial_id, chosen, history.history,
                            len(history.epoch), started, getattr(tuner_callback.tuner, "tuner_id", None), pruner)
    return history


def _failed(err: BaseException, callbacks: Iterable[keras.callbacks.Callback] | None, hp: object) -> None:
    """Names the trial on an exception that fails it (a note in the traceback keras-tuner keeps, and a log line)."""
    note = _trial_note(callbacks, hp)
    err.add_note(note)  # in the traceback keras-tuner prints and keeps in trial.json
    logging.getLogger("kfitx").error("%s failed: %s: %s", note.removeprefix("kfitx: "), type(err).__name__, err)


def _check_hp(hp: object, model: object) -> None:
    """``kfitx.tuner.fit`` takes the trial's hyperparameters first, as ``HyperModel.fit(hp, model, ...)`` gets them."""
    if not isinstance(hp, keras_tuner.HyperParameters):
        raise OptionError(message(
            "kfitx.tuner.fit(hp, model, x, y, ...) to get the trial's keras_tuner.HyperParameters first",
            f"fit({type(hp).__name__}, {type(model).__name__}, ...)",
            "Call it from HyperModel.fit(self, hp, model, *args, **kwargs) as kfitx.tuner.fit(hp, model, "
            "*args, **kwargs); outside a search, use kfitx.fit(model, x, y, strategy=...)."))


def _check_option_keys(strategy_options: Mapping[str, object] | None, names: list[str]) -> None:
    unknown = sorted(set(strategy_options or {}) - set(names))
    if unknown:
        raise OptionError(message("`strategy_options` keys must be among the strategies tried",
                                  ", ".join(unknown), f"Tried: {', '.join(names)}."))


def _trial_note(callbacks: Iterable[keras.callbacks.Callback] | None, hp: object) -> str:
    """``kfitx: trial <id> (strategy=memory, units=32, ...)``: which trial failed, with what."""
    tuner_callback, _ = _keras.tuner_callbacks(callbacks)
    trial = f"trial {tuner_callback.trial.trial_id}" if tuner_callback is not None else "the trial"
    values = ", ".join(f"{k}={v!r}" for k, v in sorted(getattr(hp, "values", {}).items()))
    return f"kfitx: {trial} ({values})"


class StrategyHyperModel(keras_tuner.HyperModel):
    """A ``keras_tuner.HyperModel`` whose training strategy is a hyperparameter.

    Args:
        build_model: ``build_model(hp) -> compiled keras.Model``; it never changes.
        strategies: A name, or names to choose from as ``hp.Choice("strategy", ...)``.
        strategy_options: Options per strategy name; a value may be a :class:`Tunable`.
        tune_batch_size: Batch sizes to choose from, or ``None``.
        resume: Whether a trial killed mid-way goes on from its last finished epoch (see :func:`fit`).
        pruning: ``None``, ``"median"`` or a :class:`MedianPruning`: stop trials that are losing
            (see :func:`fit`; RandomSearch, BayesianOptimization, GridSearch, not Hyperband).
        time_budget: ``None``, or the search's wall-time budget: ``"20m"``, ``"90s"``, ``"1h30m"``
            or seconds (see :func:`fit`; under ``kfitx tune``, ``--time-budget`` wins over it).
        unsupported: ``"error"`` (default): before the first trial trains, a search whose data some
            candidate strategy cannot serve ends with one error listing them; ``"skip"``: they are
            left out with a warning (see :func:`fit`). A :class:`Tunable` for an option a strategy
            tunes itself is an ``OptionError`` here.
        **kwargs: ``name`` and ``tunable``, as for ``keras_tuner.HyperModel``.

    Example:
        ```python
        hypermodel = kfitx.tuner.StrategyHyperModel(build_model, strategies=["memory", "loop"])
        tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=10)
        tuner.search(x, y, epochs=10, validation_data=(x_val, y_val))
        ```
    """

    def __init__(
        self,
        build_model: Callable[[keras_tuner.HyperParameters], keras.Model],
        strategies: str | Sequence[str] = "memory",
        strategy_options: Mapping[str, Mapping[str, object]] | None = None,
        tune_batch_size: Sequence[int] | None = None,
        resume: bool = True,
        pruning: str | MedianPruning | None = None,
        time_budget: str | float | None = None,
        unsupported: str = "error",
        **kwargs: object,
    ) -> None:
        unknown = sorted(set(kwargs) - {"name", "tunable"})
        if unknown:
            accepted = ["strategies", "strategy_options", "tune_batch_size", "resume", "pruning", "time_budget",
                        "unsupported", "name", "tunable"]
            raise OptionError(message(
                "StrategyHyperModel's keyword arguments to be among " + ", ".join(accepted),
                ", ".join(f"{k}={kwargs[k]!r}" for k in unknown),
                "Fix the keyword." + closest(unknown[0], accepted)))
        super().__init__(**kwargs)
        if not callable(build_model):
            raise OptionError(message("`build_model` must be a function hp -> compiled keras.Model",
                                      type(build_model).__name__))
        names = _candidates(strategies)  # a bad list or an unknown name fails here, not in trial 1
        _check_option_keys(strategy_options, names)
        #: What a trial does with candidates that cannot serve the search's data: "error" or "skip".
        self.unsupported = candidates.check_unsupported(unsupported)
        for name, given in (strategy_options or {}).items():  # a Tunable colliding with a strategy's own tunable
            try:
                strategy = get_registry().get(name, **{k: v for k, v in given.items() if not isinstance(v, Tunable)})
            except KfitxError:  # a refused fixed option: declare says so in trial 1, fatally
                continue
            check_collisions(name, given, strategy, keras_tuner.HyperParameters)
        self.pruning = as_pruning(pruning)
        #: The budget in seconds, or ``None`` (``kfitx tune``'s chief reads it too).
        self.time_budget = None if time_budget is None else budget.parse_duration(time_budget)
        self.build_model = build_model
        self.strategies = strategies
        self.strategy_options = strategy_options
        self.tune_batch_size = tune_batch_size
        self.resume = resume

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """``build_model(hp)``, then the strategy side of the space (``strategy``, each one's tunables).

        Declared here, the whole space is known when the tuner starts (it builds once
        per conditional scope), so every trial -- the first ones of a parallel search
        too -- draws its strategy; :func:`fit` finds the values already set.
        """
        model = self.build_model(hp)
        # a configuration mistake is raised by fit, which declares the same again (fatal, naming the trial)
        with contextlib.suppress(KfitxError):
            declare(hp, _candidates(self.strategies), self.strategy_options or {}, get_registry().get)
        if self.tune_batch_size:
            hp.Choice("batch_size", list(self.tune_batch_size))
        return model

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args: object,
            **kwargs: Any) -> keras.callbacks.History:
        return fit(hp, model, *args, strategies=self.strategies, strategy_options=self.strategy_options,
                   tune_batch_size=self.tune_batch_size, resume=self.resume, pruning=self.pruning,
                   time_budget=self.time_budget, unsupported=self.unsupported, **kwargs)
