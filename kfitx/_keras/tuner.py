"""keras-tuner internals kfitx uses (part of the boundary, :mod:`kfitx._keras`): ``kfitx tune``'s runner
reaches into keras-tuner only through these functions, each pinned in ``tests/test_keras_boundary.py``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from kfitx._keras.versions import internal

if TYPE_CHECKING:
    import keras
    import keras_tuner
    from keras_tuner.src.distribute.oracle_client import OracleClient
    from keras_tuner.src.engine.base_tuner import BaseTuner
    from keras_tuner.src.engine.trial import Trial
    from keras_tuner.src.engine.tuner_utils import SaveBestEpoch, TunerCallback

    #: ``hook(trial)``: what the runner does at a trial's start or end.
    TrialHook = Callable[[Trial], object]

#: The kfitx features that need keras-tuner's internals, for the error a keras-tuner without one raises.
TUNE, SEARCH = "kfitx tune", "kfitx.tuner (trials measured and resumed)"
BUDGET = "the time budget of a search (time_budget=, kfitx tune --time-budget)"

# --- keras-tuner internals -------------------------------------------------
#
# ``kfitx tune`` runs an unchanged search script in keras-tuner's chief and worker
# processes; kfitx's runner (``kfitx/search/launch/runner.py``) reaches into
# keras-tuner only through these functions.


def tuner_base_class() -> type[BaseTuner]:
    """keras-tuner's ``BaseTuner``, the base of every tuner (``RandomSearch``, ``Hyperband``, custom ones)."""
    return internal("keras_tuner.src.engine.base_tuner", "BaseTuner", TUNE)


def wrap_tuner_methods(init: Callable[..., None], search: Callable[..., object]) -> None:
    """Routes every tuner's ``__init__`` and ``search`` through ``init(original, self, *args, **kwargs)``
    and ``search(original, self, *args, **kwargs)`` (in this process, once).

    keras-tuner offers no hook for a launcher: the runner must see each tuner's
    directory, force ``overwrite=False`` in workers (a worker's ``overwrite=True``
    would delete the search the chief is running) and watch each trial's start and end.
    """
    import functools

    base = tuner_base_class()
    if getattr(base, "_kfitx_wrapped", False):
        return
    original_init, original_search = base.__init__, base.search

    @functools.wraps(original_init)
    def wrapped_init(self: BaseTuner, *args: object, **kwargs: object) -> None:
        init(original_init, self, *args, **kwargs)

    @functools.wraps(original_search)
    def wrapped_search(self: BaseTuner, *args: object, **kwargs: object) -> object:
        return search(original_search, self, *args, **kwargs)

    base.__init__, base.search = wrapped_init, wrapped_search
    base._kfitx_wrapped = True


def tuner_init_arguments(original_init: Callable[..., None], self: BaseTuner, args: tuple[object, ...],
                         kwargs: dict[str, object]) -> inspect.BoundArguments:
    """``BaseTuner.__init__``'s arguments bound by name (``directory``, ``project_name``, ``overwrite``, ...)."""
    bound = inspect.signature(original_init).bind(self, *args, **kwargs)
    bound.apply_defaults()
    return bound


def serve_oracle(oracle: keras_tuner.Oracle, poll_s: float = 0.1, grace_s: float = 2.0) -> None:
    """keras-tuner's chief server (``oracle_chief.start_server``), without its 20 s wait.

    keras-tuner's loop, once a worker was told the search is over, checks only every
    20 s whether every worker has left, and never stops its gRPC server. This is the
    same servicer and the same exit rule (``exit_chief``: no trial running, no worker
    id left), checked every ``poll_s``; the server is then stopped, in-flight answers
    given ``grace_s`` to reach their workers, and ``search`` returns in the chief.
    """
    import os
    import time
    from concurrent import futures

    import grpc

    protos = internal("keras_tuner.src.protos", "", TUNE)
    oracle_chief = internal("keras_tuner.src.distribute.oracle_chief", "", TUNE)
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(address)
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_s)
    finally:
        server.stop(grace_s).wait(grace_s + 1.0)


def use_chief_server(serve: Callable[[keras_tuner.Oracle], None]) -> None:
    """Makes the chief's ``tuner.search`` call ``serve(oracle)`` instead of ``oracle_chief.start_server``."""
    oracle_chief = internal("keras_tuner.src.distribute.oracle_chief", "", TUNE)
    oracle_chief.start_server = serve


def tuner_callbacks(
    callbacks: Iterable[keras.callbacks.Callback] | keras.callbacks.CallbackList | None,
) -> tuple[TunerCallback | None, list[SaveBestEpoch]]:
    """keras-tuner's ``TunerCallback`` among ``callbacks`` (``None`` outside a trial) and its ``SaveBestEpoch``s.

    keras-tuner adds both to the callbacks of every ``fit`` in a trial (``tuner_utils``);
    they are found by class, and only if keras-tuner is imported (nothing is imported here).
    Callers read the ``TunerCallback``'s ``tuner`` and ``trial`` (and that tuner's
    ``get_trial_dir`` and ``tuner_id``); the pin covers those too.
    ``callbacks`` may be a list or a ``keras.callbacks.CallbackList``.
    """
    import sys

    if "keras_tuner" not in sys.modules:
        return None, []
    tuner_utils = internal("keras_tuner.src.engine.tuner_utils", "", SEARCH)
    if callbacks is not None and hasattr(callbacks, "callbacks") and not isinstance(callbacks, (list, tuple)):
        callbacks = callbacks.callbacks
    found: TunerCallback | None = None
    best: list[SaveBestEpoch] = []
    for cb in callbacks or []:
        if isinstance(cb, tuner_utils.TunerCallback):
            found = cb
        elif isinstance(cb, tuner_utils.SaveBestEpoch):
            best.append(cb)
    return found, best


def route_trials(tuner: BaseTuner, begin: TrialHook, run: Callable[..., object], end: TrialHook,
                 reported: TrialHook) -> tuple[TrialHook, Callable[..., object], TrialHook]:
    """Routes this ``tuner``'s ``on_trial_begin``, ``run_trial`` and ``on_trial_end`` through ``begin(trial)``,
    ``run(trial, *args, **kwargs)`` and ``end(trial)``, and calls ``reported(trial)`` each time its oracle's
    ``end_trial`` returned (in a worker: the chief has the trial). Returns the three original methods, which the
    routes call to do keras-tuner's own work.

    keras-tuner offers no per-trial hook to a launcher; these are the methods
    ``BaseTuner._try_run_and_update_trial`` and ``search`` call for each trial.
    """
    originals = tuner.on_trial_begin, tuner.run_trial, tuner.on_trial_end
    tuner.on_trial_begin, tuner.run_trial, tuner.on_trial_end = begin, run, end
    end_trial = tuner.oracle.end_trial

    def end_and_report(trial: Trial) -> object:
        result = end_trial(trial)
        reported(trial)
        return result

    tuner.oracle.end_trial = end_and_report
    return originals


def stop_trials_when(oracle: keras_tuner.Oracle, spent: Callable[[], bool]) -> None:
    """Makes ``oracle.create_trial`` answer a STOPPED trial, starting none, whenever ``spent()`` is true.

    keras-tuner ends a search when its oracle answers STOPPED (``BaseTuner.search``; in the
    chief, the servicer then lets each worker go). Done as keras-tuner does it at ``max_trials``,
    under the oracle's lock: the tuner id leaves ``tuner_ids`` (the chief exits once every
    worker has left), and a trial still held for that id (a worker restarted mid-trial) goes to
    the retry queue, so a later run of the search trains it. The oracle is saved: keras-tuner's
    ``end_trial`` saves it before it forgets the trial as running, and its ``reload`` would send
    that finished trial to the retry queue. Applies to this oracle object only.
    """
    import types

    import keras_tuner

    trial_module = internal("keras_tuner.src.engine.trial", "", BUDGET)
    original = oracle.create_trial

    @keras_tuner.synchronized  # the oracle's own lock, as its create_trial takes it
    def create_trial(self: keras_tuner.Oracle, tuner_id: str) -> Trial:
        if not spent():
            return original(tuner_id)
        held = self.ongoing_trials.pop(tuner_id, None)
        if held is not None and held.trial_id not in self._retry_queue:
            self._retry_queue.append(held.trial_id)
        self.tuner_ids.discard(tuner_id)
        self.save()  # end_trial saved before it forgot the trial as running: a reload would train it again
        return trial_module.Trial(self.get_space(), trial_id="stopped", status=trial_module.TrialStatus.STOPPED)

    oracle.create_trial = types.MethodType(create_trial, oracle)


def saw_epoch(save_best_epoch: SaveBestEpoch, logs: Mapping[str, float]) -> None:
    """Tells keras-tuner's ``SaveBestEpoch`` callback that an epoch with ``logs`` was seen before it was made.

    A resumed trial starts at a later epoch; the checkpoint on disk is the best of
    the earlier ones, so the callback's best value must be theirs, or it would
    overwrite that checkpoint with a worse epoch.
    """
    objective = save_best_epoch.objective
    if objective.has_value(logs):
        value = objective.get_value(logs)
        if objective.better_than(value, save_best_epoch.best_value):
            save_best_epoch.best_value = value


def search_directory(
    callbacks: Iterable[keras.callbacks.Callback] | keras.callbacks.CallbackList | None,
) -> str | None:
    """The directory of the keras-tuner search whose trial ``callbacks`` belong to (``tuner.project_dir``,
    reached through keras-tuner's ``TunerCallback``), or ``None`` outside a trial with a directory."""
    tuner_callback, _ = tuner_callbacks(callbacks)
    directory = getattr(getattr(tuner_callback, "tuner", None), "project_dir", None)
    return None if directory is None else str(directory)


def resume_ongoing_trials(oracle: keras_tuner.Oracle, keep_running: bool = True) -> dict[str, str]:
    """Sets right what keras-tuner's ``Oracle.reload`` does with the trials that were running when the chief stopped.

    ``reload`` sends each of them to the retry queue (``oracle.json`` lists them as
    running), including one that had already ended: keras-tuner saves the oracle
    before it forgets an ended trial as running, so a continued search would train
    that trial again. Ended trials are taken out of the queue, always.

    With ``keep_running`` (the chief died, its workers go on training), the others
    are taken out too, as running trials of the tuner ids that ran them: the retry
    queue would hand each to a second worker while the first still trains it, and
    both would end it. The worker ends it once; a replaced worker of that id is
    given it back, as before the chief died. Without it (the whole search was
    stopped: no worker runs them any more) they stay in the queue, to be retried.

    Returns:
        ``{tuner_id: trial_id}`` of the trials kept running.
    """
    import json
    import os

    from keras_tuner.src.engine import trial as trial_module

    path = oracle._get_oracle_fname()
    if not os.path.exists(path):  # the chief stopped before its first save: nothing was running
        return {}
    with open(path) as f:
        saved = json.load(f).get("ongoing_trials", {})
    resumed, changed = {}, False
    for tuner_id, trial_id in saved.items():
        trial = oracle.trials.get(trial_id)
        if trial is None or trial_id not in oracle._retry_queue:
            continue
        if trial_id in oracle.end_order:  # it had ended: keras-tuner forgets it as running only at its next save
            oracle._retry_queue.remove(trial_id)
            changed = True
        elif keep_running:
            oracle._retry_queue.remove(trial_id)
            trial.status = trial_module.TrialStatus.RUNNING
            oracle.ongoing_trials[tuner_id] = trial
            oracle.tuner_ids.add(tuner_id)  # the chief serves until that worker has left, as the first one did
            resumed[tuner_id] = trial_id
            changed = True
    if changed:
        oracle.save()
    return resumed


def reconnect_quickly(max_backoff_s: float = 1.0) -> None:
    """Makes each keras-tuner worker's connection to the chief retry at least every ``max_backoff_s`` (in this process).

    keras-tuner's ``OracleClient`` waits for the chief on every call (``wait_for_ready``),
    on a gRPC channel whose reconnection back-off grows to two minutes: a worker
    would find a restarted chief only minutes after it listens. The client is made
    as keras-tuner makes it, then given a channel to the same address whose back-off
    stays under ``max_backoff_s``.
    """
    import functools
    import os

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_client

    client = oracle_client.OracleClient
    if getattr(client, "_kfitx_reconnects", False):
        return
    original = client.__init__
    backoff_ms = max(100, int(max_backoff_s * 1000))

    @functools.wraps(original)
    def init(self: OracleClient, oracle: keras_tuner.Oracle) -> None:
        original(self, oracle)
        address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
        channel = grpc.insecure_channel(address, options=[
            ("grpc.initial_reconnect_backoff_ms", min(200, backoff_ms)),
            ("grpc.min_reconnect_backoff_ms", min(200, backoff_ms)),
            ("grpc.max_reconnect_backoff_ms", backoff_ms)])
        self.stub = protos.get_service_grpc().OracleStub(channel)

    client.__init__ = init
    client._kfitx_reconnects = True
