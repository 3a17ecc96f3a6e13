"""The ``kfitx tune`` process: starts keras-tuner's chief and the workers, watches them, stops them.

Separation of concerns:

* :mod:`kfitx.search.launch.workers` decides ids, ports, devices and each environment;
* :mod:`kfitx.search.launch.runner` runs the user's script in each process and reports
  through status files (:mod:`kfitx.search.launch.status`);
* this module owns the processes. Each runs in its own session (Ctrl-C reaches
  only the supervisor, which then stops every process group it started: SIGTERM,
  then SIGKILL after ``STOP_GRACE_S``). Every wait is bounded. A worker that
  exits to be recycled is replaced under the same tuner id; one that dies is
  replaced too, and its trial counted (:class:`Deaths`): after ``max_deaths``
  deaths the fresh process ends that trial as FAILED with the cause. A worker
  whose search ended is released. A chief that dies during its search is started
  again (up to ``max_deaths`` times) on the same port, from the oracle's saved state;
  the workers wait for it and go on. The chief's search ends when every worker id
  has left; then the chief runs the script's code after ``tuner.search``.
* Nothing here imports TensorFlow or keras-tuner: it starts in a fraction of a second.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kfitx.errors import TuneError, message
from kfitx.search import budget, trial_record
from kfitx.search.launch import status
from kfitx.search.launch import workers as w
from kfitx.search.launch.options import DEFAULT_RECYCLE_AFTER, TuneOptions, TuneResult
from kfitx.search.launch.processes import Deaths, RunnerProcess, check_syntax, describe_exit, stop
from kfitx.search.launch.processes import Process as _Process
from kfitx.search.launch.processes import tail as _tail
from kfitx.search.launch.progress import Progress

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["DEFAULT_RECYCLE_AFTER", "Supervisor", "TuneOptions", "TuneResult", "run"]

STOP_GRACE_S = 3.0
POLL_S = 0.1
#: Seconds a joining host waits for a chief that stopped answering (its host may be restarting it).
CHIEF_LOST_S = 60.0


@dataclass
class _Slot:
    tuner_id: str
    env: dict[str, str]
    process: RunnerProcess | None = None
    pids: list[int] = field(default_factory=list)
    trial: str | None = None  # the trial assigned to this id at the chief, as last reported
    idle_deaths: int = 0
    released: bool = False
    state: str = ""


class Supervisor:
    def __init__(self, options: TuneOptions) -> None:
        self.o = options
        import importlib.util

        if importlib.util.find_spec("grpc") is None:
            raise TuneError(message("grpcio, through which keras-tuner's chief and workers talk",
                                    "it is not installed", "pip install grpcio"))
        if not os.path.isfile(options.script):
            raise TuneError(message("the search script to run (a .py file calling tuner.search)",
                                    repr(options.script), "Check the path."))
        check_syntax(options.script)
        if options.trials_per_worker < 0:
            raise TuneError(message("`--trials-per-worker` must be 0 (never replace) or more",
                                    options.trials_per_worker))
        self.environ = dict(os.environ if options.env is None else options.env)
        self.environ.update(budget.environment(options.time_budget, time.time(), joining=options.chief))
        self.chief: RunnerProcess | None = None
        self.chief_deaths = 0
        self.deaths = Deaths(options.max_deaths)
        self.recycled = 0
        self.project_dir: str | None = None
        self.progress: Progress | None = None
        self.shown_searched = False  # every finished trial's line printed once the chief's search returned
        self.invite = True  # print the command other hosts join with, when the chief listens beyond loopback
        self.start = time.time()
        self._plan()

    def _plan(self) -> None:
        """Workers, their ids, devices and environments, and the chief's address (this host's processes)."""
        options = self.o
        self.cores = w.usable_cores()
        self.gpus = w.visible_gpus(self.environ)
        per = w.whole_gpus(options.gpus_per_worker)
        count = options.workers if options.workers is not None else w.default_workers(self.cores, self.gpus, per)
        if count < 1:
            raise TuneError(message("`--workers` must be at least 1", count))
        devices = w.gpu_assignment(count, self.gpus, per) if self.gpus else [None] * count
        self.joining = options.chief is not None
        if self.joining:
            self.address = w.parse_address(options.chief or "")
            import socket

            ids = w.worker_ids(count, options.name or socket.gethostname())
        else:
            port = options.port or w.free_port(options.bind if options.bind not in ("0.0.0.0", "::") else "127.0.0.1")
            self.address = (options.bind, port)
            ids = w.worker_ids(count, options.name)
        self.connect = ("127.0.0.1" if self.address[0] in ("0.0.0.0", "::") else self.address[0], self.address[1])
        if not self.joining and options.port and w.port_open(self.connect, 0.2):
            raise TuneError(message("a free port for the chief", f"{options.port} is in use",
                                    "Pick another --port or leave it out (a free one is chosen); to join the "
                                    "search listening there, use --chief HOST:PORT."))
        bound = None if self.joining or not options.port else w.bind_error(options.bind, options.port)
        if bound is not None:
            raise TuneError(message("a port the chief can bind", f"--port {options.port} on {options.bind}: "
                                    f"{bound.strerror or bound}", "Pick another --port, or leave it out (a free "
                                    "one is chosen)."))
        self.control = tempfile.mkdtemp(prefix="kfitx-tune-")
        self.slots = [_Slot(tid, w.worker_env(self.environ, self.connect, tid, self.control, gpus=dev,
                                              cores=self.cores, workers=count,
                                              recycle_after=options.trials_per_worker))
                      for tid, dev in zip(ids, devices)]
        for slot in self.slots:
            slot.env["KFITX_TUNE_START_TIMEOUT"] = str(options.start_timeout)

    # -- processes ----------------------------------------------------------------------------------------
    def _argv(self) -> list[str]:
        return [self.o.python, "-m", "kfitx.search.launch.runner", os.path.abspath(self.o.script), *self.o.args]

    # Where the processes run: here, overridden by the Ray supervisor (actors on the cluster's nodes).
    def _spawn(self, name: str, env: dict[str, str], prelog: str | None) -> RunnerProcess:
        return _Process(self._argv(), env, prelog)

    def _read(self, name: str) -> dict[str, Any]:
        return status.read(self.control, name)

    def _write(self, name: str, **values: object) -> None:
        status.write(self.control, name, **values)

    def _tick(self) -> None:
        """Called once per poll, before anything is read (the Ray supervisor asks its actors then)."""

    def _start_worker(self, slot: _Slot, fail: tuple[str, str] | None = None) -> None:
        env = dict(slot.env)
        if fail is not None:
            env[w.ENV_FAIL_TRIAL], env[w.ENV_FAIL_CAUSE] = fail
        self._write(slot.tuner_id, state="starting", pid=None)
        slot.process = self._spawn(slot.tuner_id, env, os.path.join(self.control, f"{slot.tuner_id}.start.log"))
        slot.pids.append(slot.process.pid)

    def _stop_all(self) -> None:
        # processes of this host: each one _spawn made here
        stop([p for p in [self.chief, *(s.process for s in self.slots)] if isinstance(p, _Process)], STOP_GRACE_S)

    # -- the search -----------------------------------------------------------------------------------------
    def _say_started(self) -> None:
        host, port = self.address
        ids = ", ".join(s.tuner_id for s in self.slots)
        recycle = (f"a fresh process after {self.o.trials_per_worker} trial(s) each" if self.o.trials_per_worker
                   else "no recycling")
        gpus = ""
        if self.gpus:
            gpus = "; GPUs " + ", ".join(f"{s.tuner_id}={s.env.get('CUDA_VISIBLE_DEVICES')}" for s in self.slots)
        role = f"joining the keras-tuner chief at {host}:{port}" if self.joining else \
            f"keras-tuner chief on {host}:{port}"
        self.o.out(f"kfitx tune: {role}; {len(self.slots)} worker(s) ({ids}), {recycle}{gpus}")

    def _learn_project(self) -> None:
        if self.project_dir is not None:
            return
        names = ["chief"] if not self.joining else [s.tuner_id for s in self.slots]
        for name in names:
            found = self._read(name)
            if found.get("project_dir"):
                self.project_dir = found["project_dir"]
                marker = status.read_json(status.marker_path(self.project_dir))
                about = {**marker, **found}
                logs = os.path.join(self.project_dir, status.LOGS)
                files = ([] if self.joining else ["chief.log"]) + [f"{s.tuner_id}.log" for s in self.slots]
                self.o.out(f"kfitx tune: search directory {self.project_dir}")
                self.o.out(f"kfitx tune: logs in {logs}{os.sep}: {', '.join(files)}")
                if self.invite and not self.joining and self.address[0] not in ("127.0.0.1", "localhost", "::1"):
                    self.o.out(f"kfitx tune: other hosts join with: kfitx tune --chief {self.address[0]}:"
                               f"{self.address[1]} --workers N {self.o.script}")
                self.progress = Progress(self.project_dir, about.get("objective"), about.get("direction"),
                                         about.get("max_trials"),
                                         workers={s.tuner_id for s in self.slots} if self.joining else None,
                                         start=self.start)
                for line in self.progress.poll():
                    self.o.out(line)
                return

    def _check_chief(self) -> int | None:
        """The chief's exit status once it has exited; raises if it ended the search early."""
        if self.chief is None:
            return None
        code = self.chief.poll()
        if code is None:
            return None
        chief = self._read("chief")
        searched = chief.get("state") == "searched"
        if code == 0 and searched:
            return 0
        log = chief.get("log")
        if code != 0 and "project_dir" not in chief:  # the script failed before it reached tuner.search
            cause = f": the script raised {chief['message']}" if chief.get("message") else ""
            raise TuneError(f"The keras-tuner chief {describe_exit(code)} before its search started{cause} (its "
                            "traceback is above). Nothing was searched: fix the script, then run the command again.")
        if code == 0:
            raise TuneError(message("the script to call tuner.search (keras-tuner's chief serves the search "
                                    "from there)", "the script ended in the chief without a search",
                                    "Call tuner.search(...) unconditionally in the script."))
        if not searched and not self.joining and self.chief_deaths < self.deaths.limit:
            self._restart_chief(code, log)
            return None
        what = "after its search" if searched else \
            f"before the search finished ({self.chief_deaths + 1} time(s); --max-deaths {self.deaths.limit})"
        raise TuneError(f"The keras-tuner chief {describe_exit(code)} {what}. Run the same command again to "
                        f"continue the search.\n{_tail(log) or '    (no output)'}")

    def _start_chief(self, restart: int = 0) -> None:
        env = w.chief_env(self.environ, self.address, self.control)
        if restart:
            env[w.ENV_CHIEF_RESTART] = str(restart)
        captured = os.path.join(self.control, "chief.out") if self.o.capture_chief else None
        self.chief = self._spawn("chief", env, captured)

    def _restart_chief(self, code: int, log: str | None) -> None:
        """The chief died during its search: a fresh one reloads the oracle's saved state on the same port (the
        workers wait for it on every call and keep their running trials: see the runner)."""
        self.chief_deaths += 1
        if self.chief is not None:
            self.chief.signal(signal.SIGKILL)  # anything left in the dead chief's process group
        self.o.out(f"kfitx tune: the keras-tuner chief {describe_exit(code)} during the search; starting it again "
                   f"from the search's saved state ({self.chief_deaths} of at most {self.deaths.limit}; its log: "
                   f"{log})")
        self._write("chief", state="restarting", pid=None)
        self._start_chief(restart=self.chief_deaths)

    def _on_worker_exit(self, slot: _Slot, code: int) -> None:
        report = self._read(slot.tuner_id)
        slot.state = report.get("state", "")
        if slot.process is not None and report.get("pid") == slot.process.pid and slot.state in ("running", "recycle"):
            slot.trial = report.get("trial")  # its last word, even if it came after the last poll
        log = report.get("log") or (slot.process.prelog if slot.process else None)
        slot.process = None
        if code == 0:
            slot.released = True
            return
        if code == w.EXIT_RECYCLE:
            self.recycled += 1
            self._start_worker(slot)
            return
        if code == w.EXIT_FATAL:
            raise TuneError(f"A configuration error ended the search in {slot.tuner_id}: "
                            f"{report.get('message', '?')}\n{_tail(log)}")
        cause = f"{slot.tuner_id} {describe_exit(code)}"
        if slot.trial is None:
            slot.idle_deaths += 1
            self.o.out(f"kfitx tune: {cause} between trials; starting a fresh worker (its log: {log})")
            if slot.idle_deaths >= self.deaths.limit:
                raise TuneError(f"Worker {slot.tuner_id} {describe_exit(code)} {slot.idle_deaths} times without "
                                f"running a trial; the script fails in workers.\n{_tail(log) or '    (no output)'}")
            self._start_worker(slot)
            return
        failed = self.deaths.add(slot.trial, cause)
        if self.project_dir:
            trial_record.update(os.path.join(self.project_dir, f"trial_{slot.trial}"),
                                 deaths=[{"worker": slot.tuner_id, "cause": describe_exit(code), "time": time.time()}])
        self.o.out(f"kfitx tune: {cause} running trial {slot.trial}; starting a fresh worker"
                   + (" to end that trial as FAILED" if failed else " to retry it") + f" (its log: {log})")
        self._start_worker(slot, (slot.trial, self.deaths.failure(slot.trial)) if failed else None)

    def _watch_workers(self) -> None:
        for slot in self.slots:
            if slot.process is None:
                continue
            report = self._read(slot.tuner_id)
            if report.get("pid") == slot.process.pid and report.get("state") in ("running", "recycle"):
                if report.get("trial") is None and slot.trial is not None:
                    slot.idle_deaths = 0  # it finished its trial
                slot.trial = report.get("trial")
            code = slot.process.poll()
            if code is not None:
                self._on_worker_exit(slot, code)

    def run(self) -> TuneResult:
        self._say_started()
        if self.joining:
            deadline = time.monotonic() + self.o.start_timeout
            while not w.port_open(self.connect):
                if time.monotonic() > deadline:
                    raise TuneError(message("a keras-tuner chief answering at --chief", f"{self.o.chief} (no answer "
                                            f"within {self.o.start_timeout:.0f} s)",
                                            "Start the search there first with `kfitx tune --bind ADDRESS SCRIPT`."))
                time.sleep(0.1)
        else:
            self._start_chief()
        for slot in self.slots:  # they import TensorFlow now and wait for the chief's port themselves
            self._start_worker(slot)
        chief_code: int | None = None
        lost_since: float | None = None
        while True:
            self._tick()
            chief_code = self._check_chief() if chief_code is None else chief_code
            self._learn_project()
            self._watch_workers()
            searched = not (self.joining or self.shown_searched) and self._read(w.CHIEF_ID).get("state") == "searched"
            if self.progress is not None:
                for line in self.progress.poll():
                    self.o.out(line)
            if searched:  # the chief waits for this before the script prints what follows its search
                self.shown_searched = True
                self._write(w.CHIEF_ID, shown=True)
            if all(s.released for s in self.slots) and (self.joining or chief_code is not None):
                break
            if all(s.released and s.state == "no-search" for s in self.slots):
                raise TuneError(message("the script to call tuner.search in every process (keras-tuner's "
                                        "workers run the trials there)", "the workers ended without a search",
                                        "Call tuner.search(...) unconditionally; put code for the chief only "
                                        "under `if kfitx.tuner.is_chief():`."))
            if self.joining:  # a chief that went away leaves workers waiting up to keras-tuner's one hour
                lost_since = None if w.port_open(self.connect, 0.2) else (lost_since or time.monotonic())
                if lost_since is not None and time.monotonic() - lost_since > CHIEF_LOST_S:
                    raise TuneError(f"The keras-tuner chief at {self.o.chief} stopped answering for "
                                    f"{CHIEF_LOST_S:.0f} s; stopping this host's workers.")
            elif chief_code is not None:
                left = [s.tuner_id for s in self.slots if not s.released]
                raise TuneError(f"The chief finished but worker(s) {', '.join(left)} had not: stopped them.")
            time.sleep(POLL_S)
        return self._result(chief_code)

    def _result(self, chief_code: int | None) -> TuneResult:
        seconds = time.time() - self.start
        if self.chief is not None and self.chief.prelog and os.path.exists(self.chief.prelog):
            with open(self.chief.prelog, errors="replace") as f:
                for line in f.read().splitlines():
                    self.o.out(line)
        if self.progress is not None:
            for line in self.progress.poll():
                self.o.out(line)
        started = {s.tuner_id: s.pids for s in self.slots}
        restarts = sum(len(p) - 1 for p in started.values())
        dead = sum(self.deaths.counts.values())
        self.o.out(f"kfitx tune: {'this host is done' if self.joining else 'search finished'} in {seconds:.1f} s; "
                   f"worker processes: {sum(len(p) for p in started.values())} ({self.recycled} recycled, "
                   f"{dead} replaced after dying, {restarts - self.recycled - dead} restarted otherwise)"
                   + (f"; the chief was restarted {self.chief_deaths} time(s)" if self.chief_deaths else ""))
        if self.project_dir and not self.joining:
            self.o.out(f"kfitx tune: the table: kfitx report {self.project_dir}")
        return TuneResult(self.project_dir, chief_code, seconds, started, self.recycled, dict(self.deaths.counts))

    def close(self) -> None:
        self._stop_all()
        shutil.rmtree(self.control, ignore_errors=True)


class _Terminated(Exception):
    """SIGTERM arrived: unwind and stop every process."""


def run(options: TuneOptions, handle_signals: bool = False, kind: type[Supervisor] = Supervisor) -> TuneResult:
    """Runs the search; every process it started is gone when it returns or raises.

    Raises:
        TuneError: the search could not start or go on (message says why and what to do).
        KeyboardInterrupt: on Ctrl-C (or SIGTERM with ``handle_signals``), after stopping everything.

    ``kind``: :class:`Supervisor` (processes on this host) or the Ray supervisor (actors on a cluster).
    """
    supervisor = kind(options)
    previous: signal.Handlers | Callable[[int, FrameType | None], object] | int | None = None
    if handle_signals:
        def on_term(signum: int, frame: FrameType | None) -> None:
            raise _Terminated()

        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        return supervisor.run()
    except (KeyboardInterrupt, _Terminated):
        supervisor.close()
        options.out("kfitx tune: stopped; every process it started has ended. Run the same command again to "
                    "continue the search.")
        raise KeyboardInterrupt from None
    finally:
        supervisor.close()
        if handle_signals:
            signal.signal(signal.SIGTERM, previous)
