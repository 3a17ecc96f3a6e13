"""kfitx tune --ray: options, room, each actor's resources and environment (no Ray started), and whole searches on
a local multi-node Ray cluster (slow; skipped without Ray).

Every Ray node of these tests is on 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, as Ray does on macOS), and the
keras-tuner chief listens on its node's address, 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_tune import Tune, records

from kfitx.cli import main as cli_main
from kfitx.errors import TuneError
from kfitx.search.launch import ray_plan
from kfitx.search.launch import workers as w
from kfitx.search.launch.options import TuneOptions
from kfitx.search.launch.processes import LOST, Process, describe_exit
from kfitx.search.launch.ray_actor import Host

SCRIPT = Path(__file__).with_name("tune_script.py")
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
os.environ.update(LOOPBACK)  # Ray reads it once, when imported: before any test imports Ray


# -- fast: the rules ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, expected", [
    (TuneOptions(script="s.py", ray="local", chief="10.0.0.5:8000"), "no --chief with --ray"),
    (TuneOptions(script="s.py", ray="auto", name="other"), "no --name with --ray"),
    (TuneOptions(script="s.py", ray="auto", bind="0.0.0.0"), "no --bind with --ray"),
    (TuneOptions(script="s.py", ray="ray://head:10001"), "Run kfitx tune on a node of the cluster"),
    (TuneOptions(script="s.py", ray=" "), "`auto` for the cluster"),
    (TuneOptions(script="s.py", ray="head-node"), "(HOST:PORT)"),
    (TuneOptions(script="s.py", ray="auto", cpus_per_worker=0), "`--cpus-per-worker` above 0"),
    (TuneOptions(script="s.py", ray="auto", gpus_per_worker=-1), "of 0 or more"),
    (TuneOptions(script="s.py", cpus_per_worker=2), "Add --ray ADDRESS"),
])
def test_options_that_mean_nothing_with_or_without_ray_are_refused(options, expected):
    with pytest.raises(TuneError, match="Received: ") as err:
        ray_plan.check_options(options)
    assert expected in str(err.value)


def test_the_command_refuses_them_before_anything_starts(tmp_path, capsys):
    script = tmp_path / "s.py"
    script.write_text("")
    assert cli_main(["tune", "--ray", "local", "--chief", "h:1", str(script)]) == 2
    assert "no --chief with --ray" in capsys.readouterr().err
    assert cli_main(["tune", "--cpus-per-worker", "2", str(script)]) == 2
    assert "--cpus-per-worker" in capsys.readouterr().err
    assert cli_main(["tune", "--gpus-per-worker", "0.5", str(script)]) == 2  # fractions: Ray's scheduler only
    assert "whole number of GPUs" in capsys.readouterr().err


def test_without_ray_installed_the_error_says_what_to_install(tmp_path, monkeypatch):
    from kfitx.search.launch.ray_supervisor import RaySupervisor

    script = tmp_path / "s.py"
    script.write_text("")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(TuneError, match=r"pip install 'kfitx\[ray\]'"):
        RaySupervisor(TuneOptions(script=str(script), ray="local"))


def test_a_head_address_is_host_and_port_and_one_that_does_not_answer_is_said_at_once(tmp_path):
    assert ray_plan.head_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert ray_plan.head_address("[::1]:6379") == ("::1", 6379)
    assert ray_plan.head_address("auto") is None and ray_plan.head_address("local") is None
    pytest.importorskip("ray")
    from kfitx.search.launch.ray_supervisor import RaySupervisor

    script = tmp_path / "s.py"
    script.write_text("")
    started = time.monotonic()
    with pytest.raises(TuneError, match="ray start --head"):  # not Ray's minutes of retries
        RaySupervisor(TuneOptions(script=str(script), ray=f"127.0.0.1:{w.free_port()}"))
    assert time.monotonic() - started < 30


def test_workers_the_cluster_has_room_for_count_each_node_on_its_own():
    nodes = [{"CPU": 0}, {"CPU": 3, "GPU": 2}, {"CPU": 3}]  # a head without CPUs, one GPU node
    assert ray_plan.workers_for(nodes, cpus=1, gpus=0) == 6
    assert ray_plan.workers_for(nodes, cpus=2, gpus=0) == 2  # not 6 // 2: one of 2 CPUs per node
    assert ray_plan.workers_for(nodes, cpus=1, gpus=1) == 2  # only the GPU node, its 2 devices
    assert ray_plan.workers_for(nodes, cpus=1, gpus=0.5) == 3  # a fraction shares a device; 3 CPUs there
    assert ray_plan.workers_for(nodes, cpus=4, gpus=0) == 0
    assert ray_plan.default_gpus(nodes) == 1 and ray_plan.default_gpus([{"CPU": 8}]) == 0


def test_workers_hold_their_resources_and_the_chief_none_on_the_command_node():
    worker = ray_plan.actor_options("worker-1-3", "kfitx-abc", cpus=2, gpus=0.5)
    assert worker == {"num_cpus": 2, "num_gpus": 0.5, "max_restarts": 0, "name": "kfitx-abc-worker-1-3",
                      "namespace": ray_plan.NAMESPACE}  # placed by Ray, anywhere with room; kfitx restarts it
    chief = ray_plan.actor_options("chief-1", "kfitx-abc", node="n0de")
    assert chief["num_cpus"] == 0 and chief["num_gpus"] == 0 and chief["node"] == "n0de"


def test_each_worker_gets_its_node_environment_plus_keras_tuner_and_kfitx_variables():
    command = {"PATH": "/driver/bin", "HOME": "/home/me", "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
               "KFITX_TUNE_TIME_BUDGET": "60.0", "PYTHONPATH": "/src", "CUDA_VISIBLE_DEVICES": "0,1"}
    overlay = ray_plan.worker_overlay(command, ("10.0.0.5", 8000), "worker-2", cpus=2, recycle_after=7,
                                      start_timeout=30, search_id="kfitx-abc")
    assert "PATH" not in overlay and "HOME" not in overlay and "CUDA_VISIBLE_DEVICES" not in overlay
    assert overlay["KERAS_BACKEND"] == "jax" and overlay["PYTHONPATH"] == "/src"
    assert overlay["KFITX_TUNE_TIME_BUDGET"] == "60.0"
    assert overlay["KERASTUNER_TUNER_ID"] == "worker-2"
    assert (overlay["KERASTUNER_ORACLE_IP"], overlay["KERASTUNER_ORACLE_PORT"]) == ("10.0.0.5", "8000")
    assert overlay["TF_NUM_INTRAOP_THREADS"] == "2" and overlay[w.ENV_RECYCLE_AFTER] == "7"
    assert overlay[w.ENV_SEARCH_ID] == "kfitx-abc" and overlay["KFITX_TUNE_START_TIMEOUT"] == "30"
    node = {"PATH": "/node/bin", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    env = ray_plan.node_env(node, overlay, "/tmp/ctl", "node-7", gpu_ids=[3])
    assert env["PATH"] == "/node/bin" and env["CUDA_VISIBLE_DEVICES"] == "3"  # the GPU Ray gave the actor
    assert env[w.ENV_CONTROL] == "/tmp/ctl" and env[w.ENV_NODE] == "node-7" and env[w.ENV_ROLE] == "worker"
    assert ray_plan.node_env(node, overlay, "/c", "n", gpu_ids=[])["CUDA_VISIBLE_DEVICES"] == ""  # none held
    chief = ray_plan.node_env(node, ray_plan.chief_overlay(command, ("10.0.0.5", 8000), "kfitx-abc"), "/c", "n",
                              gpu_ids=None)
    assert chief["KERASTUNER_TUNER_ID"] == "chief" and chief["CUDA_VISIBLE_DEVICES"] == ""
    assert chief["TF_NUM_INTRAOP_THREADS"] == "1" and chief[w.ENV_SEARCH_ID] == "kfitx-abc"


def test_a_node_without_the_script_or_the_working_directory_says_the_files_must_be_shared(tmp_path):
    host = Host("worker-0")
    try:
        with pytest.raises(TuneError, match="at the same path on every node") as err:
            host.start([str(tmp_path / "missing.py")], {}, str(tmp_path))
        assert "missing.py" in str(err.value) and "Received: " in str(err.value)
        assert host.process is None
    finally:
        host.close(0)
    assert not os.path.exists(host.control)
    assert "lost with its Ray actor" in describe_exit(LOST)


def test_a_process_started_to_die_with_its_parent_ends_when_the_parent_is_killed():
    code = ("import sys, time; from kfitx.search.launch.processes import Process; "
            "p = Process(['sleep', '60'], {}, None, die_with_parent=True); print(p.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.is_running()
        parent.kill()  # as Ray kills a lost actor's process
        child.wait(timeout=10)
    finally:
        parent.kill()
        parent.wait()
    assert Process  # the class the actor runs its process with


# -- slow: searches on a local Ray cluster of several nodes ---------------------------------------------------

@contextlib.contextmanager
def cluster(*cpus):
    """A Ray cluster on 127.0.0.1: a head without CPUs (the command's node: the chief) and one node per entry."""
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        assert made.address.startswith("127.0.0.1:"), made.address  # only this machine's loopback
        nodes = [made.add_node(num_cpus=n) for n in cpus]
        made.wait_for_nodes()
        yield made, nodes
    finally:
        made.shutdown()


def kfitx_actors(address):
    """kfitx's live actors on the cluster (by name, in its namespace)."""
    code = (f"import ray, json; ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False); "
            "print(json.dumps([a for a in ray.util.list_named_actors(all_namespaces=True) "
            "if a['namespace'] == 'kfitx']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **LOOPBACK})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def runners_in(cwd):
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        with contextlib.suppress(psutil.Error):
            if "kfitx.search.launch.runner" in " ".join(p.info["cmdline"] or []) and p.info["cwd"] == str(cwd):
                found.append(p.pid)
    return found


def ray_tune(cwd, address, *args):
    return Tune(cwd, "--ray", address, *args)  # with this process's environment: LOOPBACK


def node_records(directory):
    found = []
    for path in Path(directory, "p").glob("trial_*/kfitx-trial.json"):
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(path.read_text()))
    return found


@pytest.mark.slow
def test_a_search_of_twelve_trials_runs_on_two_nodes_and_leaves_nothing_behind(tmp_path):
    with cluster(1, 1) as (made, _):
        with ray_tune(tmp_path, made.address, "--trials-per-worker", "4", str(SCRIPT), "--trials", "12") as tune:
            code = tune.wait(600)
            output = tune.output()
        assert code == 0, output
        assert not kfitx_actors(made.address), output
        assert not runners_in(tmp_path)
    assert "keras-tuner chief on 127.0.0.1:" in output
    assert "2 worker actor(s) of 1 CPU(s), placed by Ray" in output  # as many as the nodes have room for
    assert " 0 recycled" not in output  # a fresh process after 4 trials, in the same actor
    recs = records(tmp_path / "search")
    assert sorted(recs) == sorted(f"{i:02d}" for i in range(12)), output
    assert all(r["kt_status"] == "COMPLETED" for r in recs.values())
    assert len({r["node"] for r in recs.values()}) == 2, recs  # trials ran on both nodes
    with open(tmp_path / "search" / "p" / "oracle.json") as f:
        assert sorted(json.load(f)["end_order"]) == sorted(recs)  # each trial ended once
    assert sum(line.startswith("trial ") for line in output.splitlines()) == 12
    assert output.count("AFTER SEARCH") == 1 and "chief=True trials=12" in output
    proc = subprocess.run([sys.executable, "-m", "kfitx.cli", "report", "search"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "12/12 trial(s) finished" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_node_lost_mid_trial_its_worker_goes_on_elsewhere_and_every_trial_is_recorded_once(tmp_path):
    import glob
    import shutil
    import tempfile

    folders = os.path.join(tempfile.gettempdir(), "kfitx-tune-node-*")
    before = set(glob.glob(folders))
    with cluster(1, 1, 1) as (made, nodes):
        with ray_tune(tmp_path, made.address, "--workers", "2", str(SCRIPT), "--trials", "5", "--epochs", "4",
                      "--sleep", "0.6", "--kfitx") as tune:
            deadline = time.monotonic() + 300
            running = []
            while not running and time.monotonic() < deadline:
                running = [r for r in node_records(tmp_path / "search") if r.get("status") == "RUNNING"]
                time.sleep(0.1)
            assert running, tune.output()
            lost = running[0]
            time.sleep(0.5)
            made.remove_node(next(n for n in nodes if n.node_id == lost["node"]))
            code = tune.wait(600)
            output = tune.output()
        assert code == 0, output
        assert not kfitx_actors(made.address), output
        assert not runners_in(tmp_path)
    recs = records(tmp_path / "search")
    assert sorted(recs) == ["0", "1", "2", "3", "4"], output
    assert all(r["kt_status"] == "COMPLETED" for r in recs.values()), recs
    again = recs[lost["trial_id"]]
    assert again["worker"] == lost["worker"] and again["node"] != lost["node"]  # the same id, on another node
    assert [d["cause"] for d in again["deaths"]] == [describe_exit(LOST)]
    with open(tmp_path / "search" / "p" / "oracle.json") as f:
        assert sorted(json.load(f)["end_order"]) == sorted(recs)  # each trial ended once
    assert f"{lost['worker']} was lost with its Ray actor" in output and "1 replaced after dying" in output
    left = set(glob.glob(folders)) - before  # each actor's status folder: only the lost node's stays (on it)
    assert len(left) == 1, left
    shutil.rmtree(left.pop())


@pytest.mark.slow
def test_a_chief_killed_mid_search_is_restarted_on_its_node_and_every_trial_is_recorded_once(tmp_path):
    with cluster(1, 1) as (made, _):
        with ray_tune(tmp_path, made.address, str(SCRIPT), "--trials", "5", "--epochs", "3", "--sleep", "0.4",
                      "--kfitx") as tune:
            deadline = time.monotonic() + 300
            while not any(r.get("status") == "RUNNING" for r in node_records(tmp_path / "search")):
                assert time.monotonic() < deadline, tune.output()
                time.sleep(0.1)
            time.sleep(0.5)
            chiefs = [p for p in map(psutil.Process, runners_in(tmp_path))
                      if p.environ().get("KFITX_TUNE_ROLE") == "chief"]
            assert len(chiefs) == 1
            chiefs[0].kill()
            code = tune.wait(600)
            output = tune.output()
        assert code == 0, output
        assert not kfitx_actors(made.address) and not runners_in(tmp_path)
    assert "the keras-tuner chief killed by SIGKILL" in output and "the chief was restarted 1 time(s)" in output
    recs = records(tmp_path / "search")
    assert sorted(recs) == ["0", "1", "2", "3", "4"] and all(r["kt_status"] == "COMPLETED" for r in recs.values())
    with open(tmp_path / "search" / "p" / "oracle.json") as f:
        assert sorted(json.load(f)["end_order"]) == sorted(recs)
    assert output.count("AFTER SEARCH") == 1


@pytest.mark.slow
def test_ctrl_c_stops_every_actor_and_the_ray_it_started(tmp_path):
    with ray_tune(tmp_path, "local", "--workers", "2", str(SCRIPT), "--trials", "4", "--epochs", "3",
                  "--sleep", "0.5", "--kfitx") as tune:
        deadline = time.monotonic() + 300
        while not any(r.get("status") == "RUNNING" for r in node_records(tmp_path / "search")):
            assert time.monotonic() < deadline, tune.output()
            time.sleep(0.1)
        started = list(tune.descendants().values())  # Ray's own processes too: --ray local started them
        assert runners_in(tmp_path)
        tune.proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        code = tune.wait(60)
        stopped_in = time.monotonic() - t0
        output = tune.output()
    assert code == 130, output
    assert "keras-tuner chief on 127.0.0.1:" in output
    assert stopped_in < 30, output
    assert not runners_in(tmp_path)
    alive = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [p.cmdline() for p in alive]
    assert "every process it started has ended" in output


@pytest.mark.slow
def test_a_worker_that_does_not_share_the_chiefs_search_directory_stops_the_search_saying_so(tmp_path):
    script = tmp_path / "apart.py"  # the workers' tuner writes elsewhere: as a node without the shared file system
    script.write_text(f"""import os, runpy, sys
apart = os.environ.get("KFITX_TUNE_ROLE") == "worker"
sys.argv = [sys.argv[0], "--trials", "2", "--directory", "elsewhere" if apart else "search"]
runpy.run_path({str(SCRIPT)!r}, run_name="__main__")
""")
    with ray_tune(tmp_path, "local", "--workers", "1", str(script)) as tune:
        code = tune.wait(300)
        output = tune.output()
    assert code == 2, output
    assert "A configuration error ended the search in worker-0" in output
    assert "is not the chief's" in output and "a file system every node of the Ray cluster mounts" in output
    assert not runners_in(tmp_path)


# -- the Ray supervisor's bookkeeping against a stand-in for Ray (no cluster) -------------------------------------

class FakeRay:
    """What RaySupervisor calls of Ray, answering from dicts: actors are records of their options and calls."""

    class RayActorError(Exception):
        pass

    class RayTaskError(Exception):
        pass

    def __init__(self):
        import types

        self.exceptions = types.SimpleNamespace(RayActorError=self.RayActorError, RayTaskError=self.RayTaskError)
        self.util = types.SimpleNamespace(get_node_ip_address=lambda: "127.0.0.1")
        self.actors, self.answers, self.killed = [], {}, []

    def init(self, **kwargs):
        self.init_args = kwargs

    def shutdown(self):
        self.down = True

    def nodes(self):
        return [{"Alive": True, "Resources": {"CPU": 0}}, {"Alive": True, "Resources": {"CPU": 2}}]

    def get_runtime_context(self):
        import types

        return types.SimpleNamespace(get_node_id=lambda: "head-node")

    def remote(self, cls):
        ray = self

        class ActorClass:
            def options(self, **options):
                def make(*args):
                    actor = FakeActor(ray, options, args)
                    ray.actors.append(actor)
                    return actor

                return type("Made", (), {"remote": staticmethod(make)})()

        return ActorClass()

    def wait(self, refs, num_returns=1, timeout=None):
        return list(refs), []

    def get(self, ref):
        if isinstance(ref, Exception):
            raise ref
        return ref

    def kill(self, actor):
        self.killed.append(actor)


class FakeActor:
    def __init__(self, ray, options, args):
        self.ray, self.options, self.args, self.calls, self.dead = ray, options, args, [], False

    def __getattr__(self, method):
        def remote(*args):
            self.calls.append((method, args))
            if self.dead:
                return self.ray.RayActorError("the actor died because its node has died")
            return {"start": 4000 + len(self.ray.actors), "poll": self.ray.answers.get((id(self), "poll"))}.get(method)

        return type("Method", (), {"remote": staticmethod(remote)})()


def test_a_lost_worker_actor_is_a_death_of_its_trial_and_its_id_goes_on_in_a_new_actor(tmp_path, monkeypatch):
    import types

    from kfitx.search.launch.ray_supervisor import RaySupervisor

    ray = FakeRay()
    strategies = types.ModuleType("ray.util.scheduling_strategies")
    strategies.NodeAffinitySchedulingStrategy = lambda node_id, soft: ("affinity", node_id, soft)
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setitem(sys.modules, "ray.util.scheduling_strategies", strategies)
    script = tmp_path / "s.py"
    script.write_text("")
    lines = []
    sup = RaySupervisor(TuneOptions(script=str(script), ray="local", out=lines.append))
    try:
        assert [s.tuner_id for s in sup.slots] == ["worker-0", "worker-1"]  # the room: 2 CPUs, 1 each
        sup._start_chief()
        for slot in sup.slots:
            sup._start_worker(slot)
        chief, first, second = ray.actors
        assert chief.options["num_cpus"] == 0 and chief.options["scheduling_strategy"] == ("affinity", "head-node",
                                                                                           False)
        assert first.options["num_cpus"] == 1.0 and "scheduling_strategy" not in first.options
        method, (args, overlay, cwd) = first.calls[0]
        assert method == "start" and args[0] == str(script) and cwd == os.getcwd()
        assert overlay["KERASTUNER_TUNER_ID"] == "worker-0" and overlay["KERASTUNER_ORACLE_IP"] == "127.0.0.1"
        ray.answers[(id(chief), "poll")] = (None, {"state": "searching"}, "Search space summary\n")
        ray.answers[(id(first), "poll")] = (None, {"pid": 4002, "state": "running", "trial": "3"}, "")
        ray.answers[(id(second), "poll")] = (None, {"pid": 4003, "state": "running", "trial": "4"}, "")
        sup._tick()
        sup._watch_workers()
        assert lines[-1] == "Search space summary"  # the chief's output, relayed as it comes
        assert sup.slots[0].trial == "3" and sup.slots[0].pids == [4002]
        first.dead = True  # its node left the cluster
        sup._tick()
        sup._watch_workers()
        assert first in ray.killed and sup.deaths.counts == {"3": 1}
        assert "worker-0 was lost with its Ray actor" in lines[-1] and "to retry it" in lines[-1]
        again = ray.actors[-1]
        assert again is not first and again.args == ("worker-0", True)  # the same tuner id, a new actor
        assert again.options["name"] != first.options["name"] and again.options["num_cpus"] == 1.0
        assert again.calls[0][1][1]["KERASTUNER_TUNER_ID"] == "worker-0"
    finally:
        sup.close()
    assert ray.down and set(ray.killed) >= {chief, second}
