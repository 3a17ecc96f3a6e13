"""kfitx tune: worker environments, death counting, progress, and whole searches in processes (slow)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from kfitx.errors import TuneError
from kfitx.search.launch import _script_for, is_chief, launch, workers as w
from kfitx.search.launch.processes import Deaths, describe_exit
from kfitx.search.launch.progress import Progress
from kfitx.search.launch.supervisor import Supervisor, TuneOptions

SCRIPT = Path(__file__).with_name("tune_script.py")


# -- fast: the rules ------------------------------------------------------------------------------------------

def test_worker_env_sets_keras_tuner_variables_threads_and_recycling():
    env = w.worker_env({"PATH": "/bin", "KFITX_TUNE_FAIL_TRIAL": "3"}, ("127.0.0.1", 8000), "worker-1", "/ctl",
                       gpus=None, cores=8, workers=4, recycle_after=7)
    assert env["KERASTUNER_TUNER_ID"] == "worker-1"
    assert (env["KERASTUNER_ORACLE_IP"], env["KERASTUNER_ORACLE_PORT"]) == ("127.0.0.1", "8000")
    assert env["TF_NUM_INTRAOP_THREADS"] == "2"  # 8 cores shared by 4 workers
    assert env[w.ENV_RECYCLE_AFTER] == "7" and env[w.ENV_ROLE] == "worker" and env["PATH"] == "/bin"
    assert w.ENV_FAIL_TRIAL not in env  # only a replacement told to fail a trial gets it
    assert "CUDA_VISIBLE_DEVICES" not in env
    mine = w.worker_env({"TF_NUM_INTRAOP_THREADS": "5"}, ("h", 1), "x", "/c", gpus=["2", "3"], cores=2,
                        workers=2, recycle_after=0)
    assert mine["TF_NUM_INTRAOP_THREADS"] == "5"  # the user's own setting wins
    assert mine["CUDA_VISIBLE_DEVICES"] == "2,3" and mine["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    chief = w.chief_env({}, ("0.0.0.0", 9), "/c")
    assert chief["KERASTUNER_TUNER_ID"] == "chief" and chief[w.ENV_ROLE] == "chief"


def test_gpus_round_robin_and_default_workers_count_them():
    gpus = w.visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert gpus == ["0", "1", "2", "3"]
    assert w.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == [] == w.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"})
    assert w.gpu_assignment(6, gpus) == [["0"], ["1"], ["2"], ["3"], ["0"], ["1"]]
    assert w.gpu_assignment(2, gpus, gpus_per_worker=2) == [["0", "1"], ["2", "3"]]
    assert w.gpu_assignment(2, []) == [[], []]
    assert w.default_workers(16, gpus) == 4 and w.default_workers(16, gpus, gpus_per_worker=2) == 2
    assert w.default_workers(6) == 6 and w.default_workers(0) == 1
    with pytest.raises(TuneError, match="Received: 5"):
        w.gpu_assignment(1, gpus, gpus_per_worker=5)


def test_worker_ids_are_unique_per_host_and_never_look_like_the_chief():
    assert w.worker_ids(2) == ["worker-0", "worker-1"]
    ids = w.worker_ids(2, "Chief.Node_7")
    assert ids == ["chf-node-7-0", "chf-node-7-1"]
    assert not any("chief" in i for i in ids)  # keras-tuner takes any id containing "chief" for the chief


def test_free_port_and_addresses():
    port = w.free_port()
    assert 0 < port < 65536 and not w.port_open(("127.0.0.1", port), timeout=0.2)
    assert w.parse_address("10.0.0.5:8000") == ("10.0.0.5", 8000)
    assert w.parse_address("[::1]:9") == ("::1", 9)
    with pytest.raises(TuneError, match="Received: 'nohost'"):
        w.parse_address("nohost")


def test_deaths_end_a_trial_after_the_limit_with_its_cause():
    deaths = Deaths(limit=2)
    assert deaths.add("3", "worker-0 killed by SIGKILL") is False
    assert deaths.add("4", "worker-1 killed by SIGSEGV") is False
    assert deaths.add("3", "worker-1 killed by SIGKILL") is True
    assert "2 worker process(es) died" in deaths.failure("3") and "SIGKILL" in deaths.failure("3")
    assert "SIGKILL" in describe_exit(-9) and "out-of-memory" in describe_exit(-9)
    assert describe_exit(-11) == "killed by SIGSEGV" and describe_exit(1) == "exited with status 1"
    with pytest.raises(TuneError):
        Deaths(limit=0)


def test_is_chief_follows_keras_tuner_variables(monkeypatch):
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    assert is_chief()  # not a distributed search
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker-0")
    assert not is_chief()
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert is_chief()


def _trial(project, trial_id, status, score, worker="worker-0", start=100.0, end=102.5, strategy="memory"):
    d = project / f"trial_{trial_id}"
    d.mkdir(parents=True, exist_ok=True)
    metrics = {} if score is None else {"val_accuracy": {"direction": "max",
                                                         "observations": [{"value": [score], "step": 1}]}}
    (d / "trial.json").write_text(json.dumps({"trial_id": trial_id, "status": status, "score": score,
                                              "hyperparameters": {"space": [], "values": {"strategy": strategy,
                                                                                          "units": 8}},
                                              "metrics": {"metrics": metrics}}))
    (d / "kfitx-trial.json").write_text(json.dumps({"worker": worker, "start": start, "end": end, "epochs": 3}))


def test_progress_prints_each_finished_trial_once_with_best_and_eta(tmp_path):
    _trial(tmp_path, "0", "COMPLETED", 0.5)  # finished before this run: counted, not printed
    progress = Progress(str(tmp_path), "val_accuracy", "max", total=4)
    assert progress.poll() == []
    _trial(tmp_path, "1", "RUNNING", None)
    _trial(tmp_path, "2", "COMPLETED", 0.9, worker="worker-1")
    lines = progress.poll()
    assert len(lines) == 1
    assert lines[0].startswith("trial 2 [worker-1] strategy memory: val_accuracy 0.9000 in 2.5 s; best 0.9000; 2/4")
    assert "ETA" in lines[0]
    assert progress.poll() == []  # nothing new
    _trial(tmp_path, "1", "FAILED", None)
    (line,) = progress.poll()
    assert "trial 1" in line and "failed" in line and "best 0.9000; 3/4 done" in line
    joiner = Progress(str(tmp_path), "val_accuracy", "max", total=4, workers={"other-0"})
    joiner.poll()
    _trial(tmp_path, "3", "COMPLETED", 0.1, worker="worker-0")
    assert joiner.poll() == []  # another host's trial


def test_progress_eta_is_the_time_budget_left_when_that_is_sooner(tmp_path):
    progress = Progress(str(tmp_path), "val_accuracy", "max", total=100)
    progress.poll()
    (tmp_path / "kfitx-budget.json").write_text(json.dumps({"budget_s": 60, "deadline": time.time() + 30}))
    _trial(tmp_path, "0", "COMPLETED", 0.5)
    (line,) = progress.poll()
    eta = line.rsplit("ETA ", 1)[1]
    assert eta.endswith("s") and "m" not in eta and int(eta[:-1]) <= 30  # not 99 trials at this pace


def test_bad_options_are_tune_errors_saying_what_to_do(tmp_path):
    with pytest.raises(TuneError, match="Received: 'nope.py'"):
        Supervisor(TuneOptions(script="nope.py"))
    script = tmp_path / "s.py"
    script.write_text("")
    with pytest.raises(TuneError, match="at least 1"):
        Supervisor(TuneOptions(script=str(script), workers=0))
    with pytest.raises(TuneError, match="0 \\(never replace\\)"):
        Supervisor(TuneOptions(script=str(script), trials_per_worker=-1))
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(TuneError, match="is in use"):
            Supervisor(TuneOptions(script=str(script), port=taken.getsockname()[1]))
    with pytest.raises(TuneError, match="script path or a function"):
        launch(42)
    inner = lambda: None  # noqa: E731
    with pytest.raises(TuneError, match="top-level function"):
        _script_for(inner, str(tmp_path))


def _search_fn():
    print("searching")


def test_a_function_becomes_a_script_that_imports_or_contains_it(tmp_path):
    text = open(_script_for(_search_fn, str(tmp_path))).read()
    assert "import_module('test_tune')" in text or "import_module('tests.test_tune')" in text
    assert "'_search_fn'" in text


def test_runner_refuses_to_start_by_hand():
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFITX_TUNE")}
    proc = subprocess.run([sys.executable, "-m", "kfitx.search.launch.runner", str(SCRIPT)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 2 and "kfitx tune SCRIPT" in proc.stderr


def test_a_script_that_fails_before_its_search_says_so_and_nothing_to_resume(tmp_path):
    script = tmp_path / "search.py"
    script.write_text("import keras_tuner\nraise NameError('no such thing')\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KFITX_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run([sys.executable, "-m", "kfitx.cli", "tune", "--workers", "1", str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "before its search started: the script raised NameError: no such thing" in output
    assert "Run the same command again" not in output and "fix the script" in output


# -- slow: whole searches -------------------------------------------------------------------------------------

class Tune:
    """`kfitx tune ...` in a subprocess; every process it started is killed when the block ends."""

    def __init__(self, cwd, *args):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KFITX_DISABLE_PLUGIN_AUTOLOAD": "1"}
        self.log = open(Path(cwd) / f"tune-{time.monotonic_ns()}.out", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "kfitx.cli", "tune", *args], cwd=cwd, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.seen: dict[int, psutil.Process] = {}

    def descendants(self):
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)
        return self.seen

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.descendants()
            time.sleep(0.1)
        assert self.proc.poll() is not None, f"kfitx tune still running after {timeout} s:\n{self.output()}"
        return self.proc.returncode

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for child in self.seen.values():
            with contextlib.suppress(psutil.Error):
                child.kill()
        self.proc.wait(5)
        self.log.close()


def records(directory):
    out = {}
    for path in glob.glob(os.path.join(directory, "p", "trial_*", "trial.json")):
        with open(path) as f:
            trial = json.load(f)
        with open(os.path.join(os.path.dirname(path), "kfitx-trial.json")) as f:
            out[trial["trial_id"]] = {**json.load(f), "kt_status": trial["status"]}
    return out


def wait_for_running(directory, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [r for r in records_soft(directory) if r.get("status") == "RUNNING"]
        if running:
            return running[0]
        time.sleep(0.1)
    raise AssertionError("no trial started")


def records_soft(directory):
    found = []
    for path in glob.glob(os.path.join(directory, "p", "trial_*", "kfitx-trial.json")):
        with contextlib.suppress(OSError, ValueError), open(path) as f:
            found.append(json.load(f))
    return found


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory):
    """One finished 2-worker search of 6 trials (plain HyperModel), shared by the tests that read it."""
    cwd = tmp_path_factory.mktemp("tune")
    with Tune(cwd, "--workers", "2", str(SCRIPT), "--trials", "6") as tune:
        code = tune.wait(240)
        output = tune.output()
        leftover = [p for p in tune.descendants().values() if p.is_running() and p.status() != "zombie"]
    return cwd, code, output, leftover


@pytest.mark.slow
def test_two_workers_complete_a_search_with_every_trial_recorded_once(finished_search):
    cwd, code, output, leftover = finished_search
    assert code == 0, output
    assert not leftover
    recs = records(cwd / "search")
    assert sorted(recs) == [str(i) for i in range(6)]
    assert all(r["kt_status"] == "COMPLETED" and r["epochs"] == 2 for r in recs.values())
    assert {r["worker"] for r in recs.values()} == {"worker-0", "worker-1"}
    with open(cwd / "search" / "p" / "oracle.json") as f:
        ended = json.load(f)["end_order"]
    assert sorted(ended) == sorted(recs)  # each trial ended once
    assert output.count("AFTER SEARCH") == 1 and "chief=True trials=6" in output  # the code after search: chief only
    assert sum(line.startswith("trial ") for line in output.splitlines()) == 6
    assert "search directory" in output and "worker-0.log" in output
    for name in ("chief", "worker-0", "worker-1"):
        assert (cwd / "search" / "p" / "kfitx-logs" / f"{name}.log").exists()


@pytest.mark.slow
def test_every_trials_line_comes_before_what_the_script_prints_after_its_search(finished_search):
    _, code, output, _ = finished_search
    lines = output.splitlines()
    after = next(i for i, line in enumerate(lines) if line.startswith("AFTER SEARCH"))
    trials = [i for i, line in enumerate(lines) if line.startswith("trial ")]
    assert code == 0 and len(trials) == 6 and max(trials) < after, output


@pytest.mark.slow
def test_report_prints_the_table_and_writes_the_png(finished_search):
    cwd, code, output, _ = finished_search
    assert code == 0, output
    png = cwd / "report.png"
    proc = subprocess.run([sys.executable, "-m", "kfitx.cli", "report", "search", "--plot", str(png), "--best"],
                          cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("rank"))
    for column in ("trial", "lr", "units", "strategy", "val_accuracy", "samples/s", "peak MiB", "epochs", "status"):
        assert column in header
    assert sum(line.rstrip().endswith("COMPLETED") for line in lines) == 6
    assert "6/6 trial(s) finished" in proc.stdout and "best_hyperparameters(" in proc.stdout
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_replaced_and_the_trial_completes(tmp_path):
    with Tune(tmp_path, "--workers", "2", str(SCRIPT), "--trials", "3", "--epochs", "4", "--sleep", "0.6",
              "--kfitx") as tune:
        running = wait_for_running(tmp_path / "search")
        time.sleep(0.5)
        os.kill(running["pid"], signal.SIGKILL)
        code = tune.wait(240)
        output = tune.output()
    assert code == 0, output
    recs = records(tmp_path / "search")
    assert sorted(recs) == ["0", "1", "2"] and all(r["kt_status"] == "COMPLETED" for r in recs.values())
    killed = recs[running["trial_id"]]
    assert [d["cause"] for d in killed["deaths"]] == ["killed by SIGKILL (what the kernel's out-of-memory "
                                                      "killer sends, too)"]
    assert killed["pid"] != running["pid"] and killed["worker"] == running["worker"]
    assert "1 replaced after dying" in output


@pytest.mark.slow
def test_a_chief_killed_mid_search_is_restarted_and_every_trial_is_recorded_once(tmp_path):
    with Tune(tmp_path, "--workers", "2", str(SCRIPT), "--trials", "5", "--epochs", "3", "--sleep", "0.4",
              "--kfitx") as tune:
        running = wait_for_running(tmp_path / "search")
        time.sleep(0.5)
        chiefs = [p for p in tune.descendants().values() if p.environ().get("KFITX_TUNE_ROLE") == "chief"]
        assert len(chiefs) == 1
        chiefs[0].kill()  # SIGKILL, as the out-of-memory killer would, while workers train
        code = tune.wait(300)
        output = tune.output()
        leftover = [p for p in tune.descendants().values() if p.is_running() and p.status() != "zombie"]
    assert code == 0, output
    assert not leftover
    assert "the keras-tuner chief killed by SIGKILL" in output and "starting it again" in output
    assert "the chief was restarted 1 time(s)" in output
    recs = records(tmp_path / "search")
    assert sorted(recs) == ["0", "1", "2", "3", "4"], output
    assert all(r["kt_status"] == "COMPLETED" for r in recs.values()), recs
    assert recs[running["trial_id"]]["worker"] == running["worker"]  # its worker went on with it
    with open(tmp_path / "search" / "p" / "oracle.json") as f:
        assert sorted(json.load(f)["end_order"]) == sorted(recs)  # each trial ended once
    assert output.count("AFTER SEARCH") == 1  # the code after the search ran once, in the new chief


@pytest.mark.slow
def test_a_trial_that_kills_every_worker_is_failed_and_the_search_goes_on(tmp_path):
    with Tune(tmp_path, "--workers", "1", "--max-deaths", "2", str(SCRIPT), "--trials", "3",
              "--crash-trial", "1") as tune:
        code = tune.wait(300)
        output = tune.output()
    assert code == 0, output
    recs = records(tmp_path / "search")
    assert {k: r["kt_status"] for k, r in recs.items()} == {"0": "COMPLETED", "1": "FAILED", "2": "COMPLETED"}
    assert len(recs["1"]["deaths"]) == 2
    assert "died running it" in recs["1"]["message"]  # keras-tuner's gRPC drops a worker's trial message


@pytest.mark.slow
def test_recycling_after_k_trials_starts_a_new_process_and_records_each_trial_once(tmp_path):
    with Tune(tmp_path, "--workers", "2", "--trials-per-worker", "1", str(SCRIPT), "--trials", "4") as tune:
        code = tune.wait(300)
        output = tune.output()
    assert code == 0, output
    recs = records(tmp_path / "search")
    assert sorted(recs) == ["0", "1", "2", "3"] and all(r["kt_status"] == "COMPLETED" for r in recs.values())
    assert len({r["pid"] for r in recs.values()}) == 4  # one trial per process
    with open(tmp_path / "search" / "p" / "oracle.json") as f:
        assert sorted(json.load(f)["end_order"]) == ["0", "1", "2", "3"]
    assert "recycled" in output and " 0 recycled" not in output


@pytest.mark.slow
def test_sigint_stops_every_process_and_the_same_command_resumes(tmp_path):
    args = ["--workers", "2", str(SCRIPT), "--trials", "4", "--epochs", "3", "--sleep", "0.5", "--kfitx"]
    with Tune(tmp_path, *args) as tune:
        wait_for_running(tmp_path / "search")
        started = list(tune.descendants().values())
        assert len(started) >= 3  # the chief and two workers
        tune.proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        code = tune.wait(30)
        stopped_in = time.monotonic() - t0
        output = tune.output()
    assert code == 130, output
    assert stopped_in < 10, output
    alive = [p.pid for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive
    assert "Run the same command again" in output
    before = {k for k, r in records(tmp_path / "search").items() if r["kt_status"] == "COMPLETED"}
    with Tune(tmp_path, *args) as again:
        code = again.wait(300)
        output = again.output()
    assert code == 0, output
    assert "continuing the interrupted search" in output
    recs = records(tmp_path / "search")
    assert sorted(recs) == ["0", "1", "2", "3"] and all(r["kt_status"] == "COMPLETED" for r in recs.values())
    assert before <= set(recs)


@pytest.mark.slow
def test_a_second_kfitx_tune_joins_an_existing_search_via_chief(tmp_path):
    port = w.free_port()
    with Tune(tmp_path, "--workers", "1", "--port", str(port), str(SCRIPT), "--trials", "6", "--sleep", "0.3") as a:
        with Tune(tmp_path, "--chief", f"127.0.0.1:{port}", "--workers", "1", "--name", "other",
                  str(SCRIPT), "--trials", "6", "--sleep", "0.3") as b:
            code_b = b.wait(300)
            out_b = b.output()
        code_a = a.wait(120)
        out_a = a.output()
    assert code_a == 0, out_a
    assert code_b == 0, out_b
    assert "joining the keras-tuner chief" in out_b
    recs = records(tmp_path / "search")
    assert sorted(recs) == [str(i) for i in range(6)]
    workers = {r["worker"] for r in recs.values()}
    assert workers == {"worker-0", "other-0"}, recs


@pytest.mark.slow
def test_the_main_job_runs_through_kfitx_tune(tmp_path):
    example = Path(__file__).resolve().parents[1] / "examples" / "search_digits.py"
    with Tune(tmp_path, "--workers", "2", str(example), "--quick", "--directory", str(tmp_path / "s")) as tune:
        code = tune.wait(400)
        output = tune.output()
    assert code == 0, output
    assert output.count("Leaderboard (2 trial(s)") == 1 and "Best model validation accuracy:" in output
    assert sum(line.startswith("trial ") for line in output.splitlines()) == 2


@pytest.mark.slow
def test_launch_runs_a_search_in_process_and_passes_on_the_chiefs_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    lines = []
    result = launch(str(SCRIPT), ["--trials", "2"], workers=1, out=lines.append)
    assert result.chief_status == 0 and result.project_dir.endswith(os.path.join("search", "p"))
    assert sum(line.startswith("trial ") for line in lines) == 2
    assert any(line.startswith("AFTER SEARCH") and "chief=True" in line for line in lines)
    assert sorted(records(tmp_path / "search")) == ["0", "1"]


PRUNING_SCRIPT = '''
import time
import keras, keras_tuner, numpy as np
from kfitx.tuner import MedianPruning, StrategyHyperModel

RATES = [0.05, 0.03, 0.02, 1e-7, 2e-7, 3e-7]  # three that learn, then three that cannot

def build(hp):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    model.compile(keras.optimizers.Adam(hp.Choice("lr", RATES)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model

class Slow(keras.callbacks.Callback):  # both workers' trials overlap in time
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(0.3)

rng = np.random.default_rng(0)
x = rng.normal(size=(200, 8)); y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")
hypermodel = StrategyHyperModel(build, pruning=MedianPruning(warmup_epochs=1, min_trials=2))
tuner = keras_tuner.GridSearch(hypermodel, objective="val_accuracy", max_trials=6, directory="search", project_name="p")
tuner.search(x[:150], y[:150], validation_data=(x[150:], y[150:]), epochs=4, verbose=0, seed=0, callbacks=[Slow()])
'''


@pytest.mark.slow
def test_pruning_across_two_workers_reads_the_other_workers_trials_and_report_shows_it(tmp_path):
    script = tmp_path / "prune.py"
    script.write_text(PRUNING_SCRIPT)
    with Tune(tmp_path, "--workers", "2", str(script)) as tune:
        code = tune.wait(300)
        output = tune.output()
    assert code == 0, output
    recs = records(tmp_path / "search")
    lr = {}
    for trial_id in recs:
        with open(tmp_path / "search" / "p" / f"trial_{trial_id}" / "trial.json") as f:
            lr[trial_id] = json.load(f)["hyperparameters"]["values"]["lr"]
    assert len(recs) == 6 and all(r["kt_status"] == "COMPLETED" for r in recs.values())
    assert {r["worker"] for r in recs.values()} == {"worker-0", "worker-1"}
    losing = [t for t in recs if lr[t] < 1e-3]
    assert len(losing) == 3 and all(recs[t]["pruned_epoch"] is not None and recs[t]["epochs"] < 4 for t in losing)
    # each stop was judged against trials that finished on the other worker too
    across = [t for t in losing if any(recs[o]["worker"] != recs[t]["worker"] for o in recs[t]["pruned_by"]["trials"])]
    assert across, {t: (recs[t]["worker"], recs[t]["pruned_by"]) for t in losing}
    proc = subprocess.run([sys.executable, "-m", "kfitx.cli", "report", "search"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("rank"))
    assert "pruned" in header.split() and "(3 pruned)" in proc.stdout
    assert sum(" at " in line for line in lines if line.rstrip().endswith("COMPLETED")) == 3


@pytest.mark.slow
def test_a_time_budget_ends_the_search_and_the_same_command_with_a_larger_one_continues_it(tmp_path):
    from kfitx.search import budget

    # trials of 100 one-second epochs: whatever the machine's load, the first is running when the budget is spent
    args = [str(SCRIPT), "--trials", "20", "--epochs", "100", "--sleep", "1", "--kfitx"]
    started = time.monotonic()
    with Tune(tmp_path, "--workers", "1", "--time-budget", "45s", *args) as tune:
        code = tune.wait(300)
        output = tune.output()
    wall = time.monotonic() - started
    assert code == 0, output
    first = records(tmp_path / "search")
    assert list(first) == ["00"] and first["00"]["stopped_by"] == "budget" and first["00"]["epochs"] < 100
    assert first["00"]["kt_status"] == "COMPLETED"
    assert "time budget 45s" in output and "it ended the search" in output
    ledger = budget.read(str(tmp_path / "search" / "p"))
    assert 45 <= budget.spent_s(ledger) < wall + 1
    assert wall < 45 + 60, output  # the budget, an epoch, the processes' exit (generous: a loaded machine)
    with Tune(tmp_path, "--workers", "1", "--time-budget", "45s", *args) as again:  # spent: nothing starts
        assert again.wait(300) == 0
        output = again.output()
    assert "No trial starts" in output and records(tmp_path / "search") == first
    with Tune(tmp_path, "--workers", "1", "--time-budget", "1m30s", *args) as more:  # 45 s more: it continues
        assert more.wait(300) == 0
        output = more.output()
    assert "continuing the search its time budget ended" in output
    recs = records(tmp_path / "search")
    assert sorted(recs) == ["00", "01"] and recs["00"] == first["00"]
    assert recs["01"]["stopped_by"] == "budget" and recs["01"]["kt_status"] == "COMPLETED"
    assert budget.spent_s(budget.read(str(tmp_path / "search" / "p"))) >= 90
