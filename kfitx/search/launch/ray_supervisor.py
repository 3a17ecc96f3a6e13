"""``kfitx tune --ray ADDRESS``: the same search, its chief and workers run as Ray actors placed by Ray.

Separation of concerns:

* :mod:`kfitx.search.launch.ray_plan` -- the options, the number of workers, each actor's resources
  and environment (pure);
* :mod:`kfitx.search.launch.ray_actor` -- the actor on a node: it runs the runner process there;
* this module -- the supervisor's processes as actors. It is :class:`Supervisor` with its four
  hooks (``_plan``, ``_spawn``, ``_read``, ``_write``, plus ``_tick``) answered by the cluster, so
  recycling after K trials, a replaced worker keeping its tuner id and its trial, deaths counted per
  trial, the chief restarted from the oracle's saved state, the time budget, the progress lines and
  Ctrl-C stopping everything are the same code as on one host.

Each worker actor holds ``--cpus-per-worker`` CPUs and ``--gpus-per-worker`` GPUs; Ray places it. A
worker whose actor or node is lost is started again under the same tuner id in a new actor, which
Ray places wherever there is room (keras-tuner hands that id its trial back; the death counts against
the trial). The chief runs on this node, holding no CPU, so its address never changes. Once per poll
every actor is asked at once (:meth:`RaySupervisor._tick`); a worker whose search ended gives its
resources back. When the search ends, fails or is interrupted, every process and actor is stopped,
and a cluster started with ``--ray local`` is shut down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import uuid
from types import ModuleType
from typing import TYPE_CHECKING, Any

from kfitx.errors import TuneError, message
from kfitx.search.launch import ray_plan
from kfitx.search.launch import workers as w
from kfitx.search.launch.processes import LOST
from kfitx.search.launch.ray_actor import Host
from kfitx.search.launch.supervisor import STOP_GRACE_S, Supervisor, _Slot

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.actor import ActorHandle

    from kfitx.search.launch.options import TuneOptions

__all__ = ["RaySupervisor"]

#: Seconds one poll waits for the actors' answers (an actor still being placed answers later).
ANSWER_S = 0.2


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise TuneError(message("Ray, to run the search on a Ray cluster (--ray)", "it is not installed",
                                "pip install 'kfitx[ray]'")) from None
    return ray


class RayProcess:
    """A runner process as the supervisor sees it (``pid``, ``poll``, ``signal``, ``prelog``), run by an actor."""

    def __init__(self, supervisor: RaySupervisor, name: str, started: ObjectRef[object], prelog: str | None) -> None:
        self.supervisor, self.name, self.started, self.prelog = supervisor, name, started, prelog
        self.pid = -1  # known once the actor has started it (after Ray placed the actor)
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code

    def signal(self, sig: int) -> None:
        host = self.supervisor.hosts.get(self.name)
        if host is not None:
            host.signal.remote(sig)


class RaySupervisor(Supervisor):
    """:class:`Supervisor` whose chief and workers are Ray actors (see the module's docstring)."""

    def _plan(self) -> None:
        options = self.o
        ray_plan.check_options(options)
        self.ray = ray = _import_ray()
        self.hosts: dict[str, ActorHandle] = {}
        self.calls: dict[str, ObjectRef[object]] = {}  # name -> the poll in flight
        self.placed: set[str] = set()  # actors Ray has placed (they started a process)
        self.reports: dict[str, dict[str, Any]] = {}
        self.closed = False
        self.actors = 0  # actors made: each has its own name (a lost one's may not be free yet)
        self.remote_host = ray.remote(Host)
        begun = time.monotonic()
        head = ray_plan.head_address(options.ray or "")
        if head is not None and not w.port_open(head, timeout=5.0):  # else Ray retries for minutes
            raise TuneError(message("a Ray cluster answering at --ray", f"{options.ray} (no answer)",
                                    "Start one there with `ray start --head --port PORT`, or use --ray local."))
        try:
            if options.ray == "local":
                ray.init(address="local", include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            else:
                ray.init(address=options.ray, log_to_driver=False, logging_level=logging.WARNING)
        except ConnectionError as err:
            raise TuneError(message("a Ray cluster to join at --ray", f"{options.ray}: {err}",
                                    "Start one with `ray start --head` (then `--ray auto` on its nodes), "
                                    "or use --ray local.")) from None
        self.ray_start_s = time.monotonic() - begun
        try:
            self._place(options)
        except BaseException:
            ray.shutdown()
            raise

    def _place(self, options: TuneOptions) -> None:
        ray = self.ray
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        self.cpus = 1.0 if options.cpus_per_worker is None else float(options.cpus_per_worker)
        self.gpus_each = ray_plan.default_gpus(nodes) if options.gpus_per_worker is None else \
            float(options.gpus_per_worker)
        room = ray_plan.workers_for(nodes, self.cpus, self.gpus_each)
        self.nodes = nodes
        if room < 1:
            have = "; ".join(f"{n.get('CPU', 0):g} CPU(s), {n.get('GPU', 0):g} GPU(s)" for n in nodes)
            raise TuneError(message(f"a node with room for one worker of {self.cpus:g} CPU(s) and {self.gpus_each:g} "
                                    "GPU(s)", f"the cluster's nodes: {have or 'none'}",
                                    "Lower --cpus-per-worker or --gpus-per-worker, or add nodes."))
        count = room if options.workers is None else options.workers
        if count < 1:
            raise TuneError(message("`--workers` must be at least 1", count))
        self.node = ray.get_runtime_context().get_node_id()
        ip = ray.util.get_node_ip_address()
        if options.port and w.bind_error(ip, options.port) is not None:
            raise TuneError(message("a port the chief can bind on this node", f"--port {options.port} on {ip}",
                                    "Pick another --port, or leave it out (a free one is chosen)."))
        self.address = self.connect = (ip, options.port or w.free_port(ip))
        self.joining, self.invite, self.cores, self.gpus = False, False, int(self.cpus), []
        self.search_id = f"kfitx-{uuid.uuid4().hex[:12]}"
        self.control = tempfile.mkdtemp(prefix="kfitx-tune-")  # what each process printed before its search
        self.slots = [_Slot(tid, ray_plan.worker_overlay(
            self.environ, self.address, tid, cpus=self.cpus, recycle_after=options.trials_per_worker,
            start_timeout=options.start_timeout, search_id=self.search_id)) for tid in w.worker_ids(count)]

    # -- the hooks of Supervisor ----------------------------------------------------------------------------
    def _host(self, name: str) -> ActorHandle:
        host = self.hosts.get(name)
        if host is None:
            chief = name == w.CHIEF_ID
            self.actors += 1
            options = ray_plan.actor_options(f"{name}-{self.actors}", self.search_id, cpus=0.0 if chief else self.cpus,
                                             gpus=0.0 if chief else self.gpus_each,
                                             node=self.node if chief else None)
            node = options.pop("node", None)
            if isinstance(node, str):  # the chief's node
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
            host = self.hosts[name] = self.remote_host.options(**options).remote(name, not chief)
        return host

    def _spawn(self, name: str, env: dict[str, str], prelog: str | None) -> RayProcess:
        args = [os.path.abspath(self.o.script), *self.o.args]
        started: ObjectRef[object] = self._host(name).start.remote(args, env, os.getcwd())
        self.calls.pop(name, None)  # a poll sent before this start would answer for the last process
        return RayProcess(self, name, started, None if name == w.CHIEF_ID else prelog)

    def _start_chief(self, restart: int = 0) -> None:
        env = ray_plan.chief_overlay(self.environ, self.address, self.search_id)
        if restart:
            env[w.ENV_CHIEF_RESTART] = str(restart)
        self.chief = self._spawn(w.CHIEF_ID, env, None)

    def _read(self, name: str) -> dict[str, Any]:
        return self.reports.get(name, {})

    def _write(self, name: str, **values: object) -> None:
        self.reports[name] = {**self.reports.get(name, {}), **values}
        if name in self.hosts:
            self.hosts[name].write.remote(values)

    def _processes(self) -> dict[str, RayProcess]:
        found = {s.tuner_id: s.process for s in self.slots if s.process is not None}
        if self.chief is not None:
            found[w.CHIEF_ID] = self.chief
        return {name: p for name, p in found.items() if isinstance(p, RayProcess) and p.code is None}

    def _tick(self) -> None:
        """Asks every actor at once how its process is (one round trip), and frees the actors of released workers."""
        ray = self.ray
        for slot in self.slots:
            if slot.released and slot.tuner_id in self.hosts:
                self._close_hosts([slot.tuner_id])
        running = self._processes()
        for name, started in running.items():
            if started.pid < 0:
                self._learn_pid(name, started)
            if started.pid >= 0 and name not in self.calls and name in self.hosts:
                self.calls[name] = self.hosts[name].poll.remote()
        if not self.calls:
            return
        ready, _ = ray.wait(list(self.calls.values()), num_returns=len(self.calls), timeout=ANSWER_S)
        for name, ref in list(self.calls.items()):
            if ref not in ready:
                continue
            del self.calls[name]
            process: RayProcess | None = running.get(name)
            try:
                code, report, text = ray.get(ref)
            except ray.exceptions.RayActorError:
                code, report, text = LOST, None, ""
                self._forget(name)  # a new actor for its next process; Ray places it
            if process is None:
                continue
            if report is not None:
                self.reports[name] = report
            self._relay(process, text)
            process.code = code

    def _learn_pid(self, name: str, process: RayProcess) -> None:
        ray = self.ray
        ready, _ = ray.wait([process.started], timeout=0)
        if not ready:
            return
        try:
            process.pid = ray.get(process.started)
        except ray.exceptions.RayActorError:
            process.pid, process.code = 0, LOST
            self._forget(name)
            return
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, TuneError):
                raise TuneError(str(cause)) from None
            raise
        self.placed.add(name)
        for slot in self.slots:
            if slot.tuner_id == name and slot.pids and slot.pids[-1] < 0:
                slot.pids[-1] = process.pid

    def _forget(self, name: str) -> None:
        """An actor that stopped answering: killed (if it is only unreachable, its process must not go on under
        the tuner id the next actor takes over), and forgotten."""
        host = self.hosts.pop(name, None)
        self.placed.discard(name)
        if host is not None:
            with contextlib.suppress(Exception):
                self.ray.kill(host)

    def _relay(self, process: RayProcess, text: str) -> None:
        """The chief's output to this terminal, as it comes; a worker's into its local copy (for error messages)."""
        if not text:
            return
        if process.prelog is None:
            for line in text.rstrip("\n").split("\n"):
                self.o.out(line)
        else:
            with open(process.prelog, "a") as f:
                f.write(text)

    def _say_started(self) -> None:
        cpus = sum(n.get("CPU", 0) for n in self.nodes)
        gpus = sum(n.get("GPU", 0) for n in self.nodes)
        each = f"{self.cpus:g} CPU(s)" + (f" and {self.gpus_each:g} GPU(s)" if self.gpus_each else "")
        recycle = (f"a fresh process after {self.o.trials_per_worker} trial(s) each" if self.o.trials_per_worker
                   else "no recycling")
        self.o.out(f"kfitx tune: Ray cluster {self.o.ray} ({len(self.nodes)} node(s), {cpus:g} CPU(s), {gpus:g} "
                   f"GPU(s)), joined in {self.ray_start_s:.1f} s; keras-tuner chief on {self.address[0]}:"
                   f"{self.address[1]} (this node); {len(self.slots)} worker actor(s) of {each}, placed by Ray; "
                   f"{recycle}")

    # -- the end -----------------------------------------------------------------------------------------
    def _close_hosts(self, names: list[str]) -> None:
        ray = self.ray
        hosts = [(name, self.hosts.pop(name)) for name in names if name in self.hosts]
        for name in names:
            self.calls.pop(name, None)
        closing = [host.close.remote(STOP_GRACE_S) for name, host in hosts if name in self.placed]  # not pending
        self.placed.difference_update(names)
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=STOP_GRACE_S + 10)
        for _, host in hosts:
            with contextlib.suppress(Exception):  # an actor already gone
                ray.kill(host)

    def _stop_all(self) -> None:
        self._close_hosts(list(self.hosts))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._stop_all()
        finally:
            shutil.rmtree(self.control, ignore_errors=True)
            self.ray.shutdown()
