"""The process ``kfitx tune`` starts for keras-tuner's chief and for each worker.

``python -m kfitx.search.launch.runner SCRIPT [ARGS...]``, with the environment of
:mod:`kfitx.search.launch.workers`, runs the user's script unchanged (``runpy``, as
``__main__``) after routing every tuner's ``__init__`` and ``search`` through
this module (:func:`kfitx._keras.wrap_tuner_methods`).

Separation of concerns:

* ``__init__`` -- a worker first waits (bounded) until the chief's port accepts
  connections, so it never meets gRPC's long reconnect back-off, and is built
  with ``overwrite=False`` (its ``overwrite=True`` would delete the search the
  chief runs). The chief is built with ``overwrite=False`` too when the last
  ``kfitx tune`` of that directory was interrupted (marker ``running``): the same
  command then continues the search. A chief that ``kfitx tune`` started again after
  the last one died (``KFITX_TUNE_CHIEF_RESTART``) is built with ``overwrite=False``,
  so keras-tuner reloads the oracle's saved state, and the trials its workers are
  still running stay theirs (:func:`kfitx._keras.resume_ongoing_trials`). Workers
  reconnect to a restarted chief within a second (:func:`kfitx._keras.reconnect_quickly`).
* ``search`` in the chief -- writes the marker, tells the supervisor the search
  directory, sends its output to ``kfitx-logs/chief.log`` while it serves the
  oracle (:func:`kfitx._keras.serve_oracle`: returns as soon as every worker has
  left, not up to 20 s later), then gives the script its terminal back: the code
  after ``tuner.search`` runs in the chief, and only there.
* ``search`` in a worker -- output to ``kfitx-logs/<tuner id>.log``; one record
  per trial (:mod:`kfitx.search.trial_record`: start, end, epochs, worker, peak memory);
  after ``KFITX_TUNE_RECYCLE_AFTER`` trials the process exits when handed the next
  trial, which stays assigned to its tuner id, so the fresh process that the
  supervisor starts under that id gets it back; a trial named in
  ``KFITX_TUNE_FAIL_TRIAL`` is ended as FAILED with its cause. When keras-tuner
  says the search is over the worker exits at once: code after ``search`` does
  not run in workers.
* The end -- once the script returns, the chief runs its ``atexit`` handlers and
  exits without the interpreter's teardown, which takes ~1.3 s with TensorFlow loaded.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, cast

from kfitx.errors import TuneError, message
from kfitx.search import budget, trial_record
from kfitx.search.launch import status
from kfitx.search.launch.workers import (
    ENV_CHIEF_RESTART,
    ENV_CONTROL,
    ENV_FAIL_CAUSE,
    ENV_FAIL_TRIAL,
    ENV_NODE,
    ENV_RECYCLE_AFTER,
    ENV_ROLE,
    ENV_SEARCH_ID,
    EXIT_FATAL,
    EXIT_RECYCLE,
    port_open,
)

if TYPE_CHECKING:
    import keras
    import keras_tuner
    from keras_tuner.src.engine.base_tuner import BaseTuner
    from keras_tuner.src.engine.trial import Trial

    from kfitx.search.measure import PeakRSS

__all__ = ["main"]

#: Seconds a worker waits for the chief's port before giving up.
START_TIMEOUT_ENV = "KFITX_TUNE_START_TIMEOUT"


class _State:
    role = ""
    tuner_id = ""
    control = ""
    searched = False
    trial_dir: str | None = None  # the trial being trained, for the epoch counter


def _status(**values: object) -> None:
    status.write(_State.control, _State.tuner_id, pid=os.getpid(), **values)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def _output_to(path: str, keep: bool) -> Iterator[None]:
    """fds 1 and 2 go to ``path`` (appended); put back afterwards when ``keep``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _flush()
    saved = [os.dup(1), os.dup(2)] if keep else []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    prelog = os.environ.get("KFITX_TUNE_PRELOG")
    if prelog and not keep and os.path.exists(prelog):  # what the worker printed before its search began
        with open(prelog, "rb") as f:
            os.write(fd, f.read())
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        _flush()
        for target, fd in zip((1, 2), saved):
            os.dup2(fd, target)
            os.close(fd)


def _wait_for_chief() -> None:
    address = (os.environ["KERASTUNER_ORACLE_IP"], int(os.environ["KERASTUNER_ORACLE_PORT"]))
    if address[0] in ("0.0.0.0", "::"):
        address = ("127.0.0.1", address[1])
    deadline = time.monotonic() + float(os.environ.get(START_TIMEOUT_ENV, "600"))
    while not port_open(address):
        if time.monotonic() > deadline:
            raise TuneError(message("the keras-tuner chief to answer before the start timeout",
                                    f"no answer at {address[0]}:{address[1]}",
                                    "Check that the chief runs (its log: kfitx-logs/chief.log)."))
        time.sleep(0.05)


def _init(original: Callable[..., None], tuner: BaseTuner, *args: object, **kwargs: object) -> None:
    from kfitx import _keras

    bound = _keras.tuner_init_arguments(original, tuner, args, kwargs)
    arguments = bound.arguments
    restarted = _State.role == "chief" and bool(os.environ.get(ENV_CHIEF_RESTART))
    if _State.role == "worker":
        _wait_for_chief()
        arguments["overwrite"] = False
    elif restarted:
        arguments["overwrite"] = False
    elif arguments.get("overwrite"):
        project = os.path.join(str(arguments.get("directory") or "."),
                               str(arguments.get("project_name") or "untitled_project"))
        state = status.read_json(status.marker_path(project)).get("state")
        if state in ("running", "budget"):
            how = "interrupted search" if state == "running" else "search its time budget ended"
            print(f"kfitx tune: continuing the {how} in {project} (the script's overwrite=True applies again once "
                  "a search there has finished)", flush=True)
            arguments["overwrite"] = False
    original(*bound.args, **bound.kwargs)
    if _State.role == "chief" and not arguments.get("overwrite"):  # keras-tuner may have reloaded its oracle
        # a restarted chief's workers go on with the trials they were running when the last chief died
        resumed = _keras.resume_ongoing_trials(tuner.oracle, keep_running=restarted)
        if restarted:
            running = ", ".join(f"trial {t} ({tid})" for tid, t in sorted(resumed.items())) or "no trial"
            print(f"kfitx tune: the chief continues the search in {os.path.abspath(tuner.project_dir)} from its "
                  f"saved state; still running: {running}", flush=True)


def _objective(oracle: keras_tuner.Oracle) -> dict[str, object]:
    objective = getattr(oracle, "objective", None)
    return {"objective": getattr(objective, "name", None), "direction": getattr(objective, "direction", None),
            "max_trials": getattr(oracle, "max_trials", None)}


def _chief_search(original: Callable[..., object], tuner: BaseTuner, *args: object, **kwargs: object) -> object:
    project = os.path.abspath(tuner.project_dir)
    about = _objective(tuner.oracle)
    budget.chief_begin(tuner, os.environ)  # before the marker: a budget refused (Hyperband) starts nothing
    search_id = {"search_id": os.environ[ENV_SEARCH_ID]} if os.environ.get(ENV_SEARCH_ID) else {}
    status.write_json(status.marker_path(project), {"state": "running", "started": time.time(), **about, **search_id})
    _status(state="searching", project_dir=project, log=status.log_path(project, "chief"), **about)
    with _output_to(status.log_path(project, "chief"), keep=True):
        result = original(tuner, *args, **kwargs)
    state, spent = budget.chief_end(project)  # "budget" when the time budget ended it: a rerun continues it
    status.write_json(status.marker_path(project), {**status.read_json(status.marker_path(project)),
                                                    "state": state, "finished": time.time()})
    if spent is not None:
        print(spent, flush=True)
    _status(state="searched", shown=False)
    _State.searched = True
    _wait_until_shown()
    return result


def _wait_until_shown(timeout: float = 5.0) -> None:
    """Waits (bounded) until the supervisor has printed the line of every finished trial: what the script prints
    after its search (a leaderboard) then comes after them."""
    deadline = time.monotonic() + timeout
    while not status.read(_State.control, _State.tuner_id).get("shown") and time.monotonic() < deadline:
        time.sleep(0.02)


def _epoch_counter() -> keras.callbacks.Callback:
    import keras

    class KfitxEpochCount(keras.callbacks.Callback):
        """Writes the epochs run into the trial's record as they finish (keras-tuner deep-copies it)."""

        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            if _State.trial_dir is not None:
                trial_record.update(_State.trial_dir, epochs=epoch + 1)

    return KfitxEpochCount()


class _Trials:
    """A worker's wrappers of its tuner's ``on_trial_begin``, ``run_trial`` and ``on_trial_end``."""

    def __init__(self, tuner: BaseTuner) -> None:
        self.tuner = tuner
        self.recycle_after = int(os.environ.get(ENV_RECYCLE_AFTER, "0") or 0)
        self.fail_trial = os.environ.get(ENV_FAIL_TRIAL)
        self.fail_cause = os.environ.get(ENV_FAIL_CAUSE, "")
        self.done = 0
        self.peak: PeakRSS | None = None
        # keras-tuner's own methods, set by _keras.route_trials
        self.begin_: Callable[[Trial], object] | None = None
        self.run_: Callable[..., object] | None = None
        self.end_: Callable[[Trial], object] | None = None

    def trial_dir(self, trial: Trial) -> str:
        return os.path.join(self.tuner.project_dir, f"trial_{trial.trial_id}")

    def on_trial_begin(self, trial: Trial) -> None:
        if self.recycle_after and self.done >= self.recycle_after:
            # the trial stays assigned to this tuner id: the fresh process gets it back from the chief
            _status(state="recycle", trial=trial.trial_id, done=self.done)
            _flush()
            os._exit(EXIT_RECYCLE)
        from kfitx.search.measure import PeakRSS

        _State.trial_dir = self.trial_dir(trial)
        node = {"node": os.environ[ENV_NODE]} if os.environ.get(ENV_NODE) else {}
        trial_record.update(_State.trial_dir, trial_id=trial.trial_id, worker=_State.tuner_id, pid=os.getpid(),
                             host=socket.gethostname(), start=time.time(), status="RUNNING",
                             strategy=trial.hyperparameters.values.get("strategy"), **node)
        _status(state="running", trial=trial.trial_id, done=self.done)
        self.peak = PeakRSS(interval=0.05).__enter__()
        assert self.begin_ is not None  # routed before the search (_worker_search)
        self.begin_(trial)

    def run_trial(self, trial: Trial, *args: object, **kwargs: object) -> object:
        if self.fail_trial is not None and trial.trial_id == self.fail_trial:
            import keras_tuner

            raise keras_tuner.errors.FailedTrialError(self.fail_cause)
        assert self.run_ is not None
        return self.run_(trial, *args, **kwargs)

    def on_trial_end(self, trial: Trial) -> None:
        peak = 0.0
        if self.peak is not None:
            self.peak.__exit__(None, None, None)
            peak, self.peak = self.peak.peak / 2**20, None
        directory = self.trial_dir(trial)
        earlier = trial_record.read(directory).get("peak_rss_mib") or 0.0
        trial_record.update(directory, end=time.time(), status=str(trial.status), peak_rss_mib=max(peak, earlier))
        if trial.message:
            trial_record.update(directory, message=str(trial.message)[-2000:])
        _State.trial_dir = None
        assert self.end_ is not None
        self.end_(trial)  # keras-tuner reports the trial to the chief
        self.done += 1
        _status(state="running", trial=None, done=self.done)


def _check_shared(project: str, search_id: str, wait_s: float = 10.0) -> str | None:
    """Why this worker cannot share the chief's search directory (on Ray: another node's), or ``None``."""
    deadline = time.monotonic() + wait_s  # a network file system may show the chief's marker a little later
    while status.read_json(status.marker_path(project)).get("search_id") != search_id:
        if time.monotonic() > deadline:
            return (f"the search directory {project} on this node ({socket.gethostname()}) is not the chief's: "
                    "the search's kfitx-tune.json is not there")
        time.sleep(0.2)
    probe = os.path.join(project, f".kfitx-write-{_State.tuner_id}")
    try:
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as err:
        return f"this node ({socket.gethostname()}) cannot write into the search directory {project}: {err}"
    return None


def _worker_search(original: Callable[..., object], tuner: BaseTuner, *args: object, **kwargs: object) -> None:
    import keras_tuner

    from kfitx import _keras

    project = os.path.abspath(tuner.project_dir)
    if os.environ.get(ENV_SEARCH_ID):  # on a Ray cluster: said at once, not after the first trial
        problem = _check_shared(project, os.environ[ENV_SEARCH_ID])
        if problem is not None:
            _status(state="fatal", message=message("the search directory on a file system every node of the Ray "
                                                   "cluster mounts at the same path", problem,
                                                   "Give the tuner a `directory` on such a file system (NFS, "
                                                   "a mounted bucket, a Kubernetes volume), and run kfitx tune "
                                                   "from there."))
            _flush()
            os._exit(EXIT_FATAL)
    log = status.log_path(project, _State.tuner_id)
    with _output_to(log, keep=False):
        _status(state="running", project_dir=project, log=log, trial=None, done=0)
        trials = _Trials(tuner)
        # once the chief has the trial, a crash after it costs no retry
        trials.begin_, trials.run_, trials.end_ = _keras.route_trials(
            tuner, trials.on_trial_begin, trials.run_trial, trials.on_trial_end,
            reported=lambda trial: _status(state="running", trial=None, done=trials.done + 1))
        if isinstance(tuner, keras_tuner.Tuner):  # trains Keras models: count their epochs
            given = cast("list[keras.callbacks.Callback]", kwargs.get("callbacks") or [])
            kwargs["callbacks"] = [*given, _epoch_counter(),
                                   budget.stopper(project, lambda: _State.trial_dir)]
        original(tuner, *args, **kwargs)
        _status(state="finished", trial=None, done=trials.done)
        _exit_now(0)  # the search is over for this worker; only the chief runs the code after it


def _search(original: Callable[..., object], tuner: BaseTuner, *args: object, **kwargs: object) -> object:
    if _State.role == "chief":
        return _chief_search(original, tuner, *args, **kwargs)
    _worker_search(original, tuner, *args, **kwargs)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _State.role, _State.control = os.environ.get(ENV_ROLE, ""), os.environ.get(ENV_CONTROL, "")
    _State.tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "")
    if not argv or _State.role not in ("chief", "worker") or not _State.control:
        print("kfitx.search.launch.runner is started by `kfitx tune`, not by hand: use `kfitx tune SCRIPT [ARGS...]`.",
              file=sys.stderr)
        return 2
    script, *args = argv
    _status(state="starting")
    from kfitx.runtime.startup import quiet_start

    quiet_start()
    import keras_tuner  # imports TensorFlow while the chief starts

    from kfitx import _keras

    _keras.wrap_tuner_methods(_init, _search)
    if _State.role == "chief":
        _keras.use_chief_server(_keras.serve_oracle)
    else:  # a chief that died is started again: find it within a second of its listening
        _keras.reconnect_quickly()
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    code: str | int | None = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
    except keras_tuner.errors.FatalError as err:
        traceback.print_exc()
        _status(state="fatal", message=str(err))
        _flush()
        os._exit(EXIT_FATAL)
    except BaseException as err:  # the script's own error: its traceback, then a failed status
        traceback.print_exc()
        _status(state="error", message=f"{type(err).__name__}: {err}")
        _flush()
        os._exit(1)
    if _State.role == "worker" or not _State.searched:
        _status(state="no-search")
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    return _exit_now(code or 0)


def _exit_now(code: int) -> int:
    """Ends the process without Python's interpreter teardown (about 1.3 s with TensorFlow loaded).

    ``atexit`` handlers still run and standard output is flushed; what is skipped is
    the deallocation of every module's objects (files the script left open without
    closing them are not flushed: close them, e.g. with ``with open(...)``).
    """
    import atexit

    atexit._run_exitfuncs()
    _flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
