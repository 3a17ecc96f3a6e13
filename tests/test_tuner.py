"""The keras-tuner bridge: strategies swapped and tuned, errors surfaced, costs recorded."""

import os

import keras
import keras_tuner
import numpy as np
import pytest

import kfitx
import kfitx.search.resume
from kfitx.tuner import PEAK_RSS_MIB, SAMPLES_PER_S, StrategyHyperModel


class PlainFit(kfitx.Strategy):
    """A second strategy for swapping: plain model.fit, with a tunable of its own."""

    name = "plainfit"
    defaults = {"scale": 1}

    def hyperparameters(self, hp):
        return {"scale": hp.Int("scale", 1, 2)}

    def fit(self, model, plan):
        validation = None if plan.validation is None else plan.validation.arrays()
        return model.fit(**plan.fit_kwargs(plan.train.arrays(), validation))


class Provides:
    @kfitx.hookimpl
    def kfitx_strategies(self):
        return [PlainFit]


def build(hp):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 4, 8, step=4), activation="relu"),
                              keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(hp.Float("lr", 0.01, 0.3, sampling="log")), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


class Recording(StrategyHyperModel):
    """Keeps each trial's History, in trial order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.histories = []

    def fit(self, hp, model, *args, **kwargs):
        history = super().fit(hp, model, *args, **kwargs)
        self.histories.append((dict(hp.values), history))
        return history


@pytest.fixture
def with_plainfit(registry):
    registry.register(Provides(), name="plainfit-plugin")
    return registry


def search_args(xy):
    x, y = xy
    return dict(x=x[:150], y=y[:150], validation_data=(x[150:], y[150:]), verbose=0)


def test_random_search_swaps_strategies_and_records_costs(xy, with_plainfit, tmp_path):
    hypermodel = Recording(build, strategies=["memory", "plainfit"])
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=6, seed=3,
                                     directory=tmp_path, project_name="random")
    tuner.search(epochs=2, **search_args(xy))
    trials = list(tuner.oracle.trials.values())
    assert all(t.status == "COMPLETED" for t in trials)
    assert {t.hyperparameters.get("strategy") for t in trials} == {"memory", "plainfit"}
    for (values, history), trial in zip(hypermodel.histories, sorted(trials, key=lambda t: int(t.trial_id))):
        assert values["strategy"] == trial.hyperparameters.get("strategy")
        # the objective keras-tuner read is the History's best epoch
        assert trial.score == pytest.approx(max(history.history["val_accuracy"]))
        assert trial.metrics.get_best_value(SAMPLES_PER_S) > 0
        assert trial.metrics.get_best_value(PEAK_RSS_MIB) > 10
        # a strategy's own tunables are active only when it is chosen
        assert trial.hyperparameters.is_active("plainfit/scale") == (values["strategy"] == "plainfit")


@pytest.mark.parametrize("tuner_cls, extra", [
    (keras_tuner.Hyperband, {"max_epochs": 3, "factor": 3, "hyperband_iterations": 1}),
    (keras_tuner.BayesianOptimization, {"max_trials": 3, "num_initial_points": 2}),
    (keras_tuner.GridSearch, {"max_trials": 4}),
])
def test_other_tuners_complete_with_strategies_swapped(tuner_cls, extra, xy, with_plainfit, tmp_path):
    hypermodel = StrategyHyperModel(build, strategies=["memory", "plainfit"])
    tuner = tuner_cls(hypermodel, objective="val_accuracy", directory=tmp_path, project_name="t", seed=1, **extra)
    tuner.search(epochs=3, **search_args(xy))
    trials = list(tuner.oracle.trials.values())
    assert trials and all(t.status == "COMPLETED" for t in trials)
    assert tuner.get_best_models(1)[0] is not None


def test_hyperband_epochs_and_initial_epoch_reach_the_strategy(xy, registry, tmp_path):
    hypermodel = Recording(build, strategies="memory")
    tuner = keras_tuner.Hyperband(hypermodel, objective="val_accuracy", max_epochs=3, factor=3,
                                  hyperband_iterations=1, directory=tmp_path, project_name="hb", seed=0)
    tuner.search(**search_args(xy))
    for values, history in hypermodel.histories:
        assert history.epoch == list(range(values["tuner/initial_epoch"], values["tuner/epochs"]))
    assert any(values["tuner/initial_epoch"] > 0 for values, _ in hypermodel.histories)  # a continued trial


def test_batch_size_can_be_tuned(xy, registry, tmp_path):
    hypermodel = Recording(build, strategies="memory", tune_batch_size=[16, 64])
    tuner = keras_tuner.GridSearch(hypermodel, objective="val_accuracy", max_trials=4,
                                   directory=tmp_path, project_name="bs")
    tuner.search(epochs=1, **search_args(xy))
    assert {values["batch_size"] for values, _ in hypermodel.histories} == {16, 64}


def test_strategy_names_are_checked_when_the_hypermodel_is_made(registry):
    with pytest.raises(kfitx.StrategyNotFoundError, match="Did you mean 'memory'"):
        StrategyHyperModel(build, strategies="memry")  # before any trial, not as trial 1's failure
    with pytest.raises(kfitx.OptionError, match="strategy_options.*loop"):
        StrategyHyperModel(build, strategies="memory", strategy_options={"loop": {}})


@pytest.mark.parametrize("make, match", [
    (lambda: StrategyHyperModel(build, strategy_options={"memory": {"bogus": 1}}), "bogus"),
    (lambda: StrategyHyperModel(build, strategy_options={"memory": {"memory_budget": 10}}), "memory budget"),
])
def test_configuration_errors_end_the_search_with_kfitx_message(make, match, xy, registry, tmp_path):
    tuner = keras_tuner.RandomSearch(make(), objective="val_accuracy", max_trials=3,
                                     directory=tmp_path, project_name="bad")
    with pytest.raises(keras_tuner.errors.FatalError, match=match):
        tuner.search(epochs=1, **search_args(xy))
    assert len(tuner.oracle.trials) == 1  # stopped at the first trial


def test_training_failures_stay_ordinary_failed_trials(xy, registry, tmp_path):
    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("diverged")

    tuner = keras_tuner.RandomSearch(StrategyHyperModel(build), objective="val_accuracy", max_trials=2,
                                     max_consecutive_failed_trials=1, directory=tmp_path, project_name="boom")
    with pytest.raises(RuntimeError, match="consecutive failures") as info:
        tuner.search(epochs=1, callbacks=[Boom()], **search_args(xy))
    assert not isinstance(info.value, keras_tuner.errors.FatalError)


def test_a_failed_trial_is_named_with_its_hyperparameters_and_reported_with_its_cause(xy, registry, tmp_path, caplog):
    from kfitx.search import report

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("diverged")

    tuner = keras_tuner.RandomSearch(StrategyHyperModel(build, strategies=["memory", "loop"]),
                                     objective="val_accuracy", max_trials=2, max_consecutive_failed_trials=2,
                                     directory=tmp_path, project_name="boom")
    with caplog.at_level("ERROR", logger="kfitx"), pytest.raises(RuntimeError, match="consecutive failures"):
        tuner.search(epochs=1, callbacks=[Boom()], **search_args(xy))
    trial = next(iter(tuner.oracle.trials.values()))
    named = f"trial {trial.trial_id} ("
    assert f"kfitx: {named}" in trial.message and "strategy='" in trial.message  # keras-tuner's kept traceback
    assert named in caplog.text and "RuntimeError: diverged" in caplog.text
    text = report.failures(report.load(tmp_path, "boom"))
    assert text.startswith("Failed trials:") and "RuntimeError: diverged" in text
    assert f"[{named}" in text and "units=" in text


def test_peak_memory_sampler_leaves_no_thread():
    import threading

    from kfitx.search.measure import PeakRSS as _PeakRSS

    with _PeakRSS(interval=0.001) as sampler:
        block = np.ones(50 * 2**20 // 8)
    assert sampler.peak >= block.nbytes
    assert not any(t.name == "kfitx-peak-rss" for t in threading.enumerate())


@pytest.mark.parametrize("wrap", [kfitx.data.generator, lambda factory: factory], ids=["source", "function"])
def test_generator_source_serves_every_trial_afresh(wrap, xy, registry, tmp_path):
    x, y = xy
    passes = []

    def batches():  # one pass over the training data: a fresh iterator each call
        passes.append(1)
        for start in range(0, 150, 50):
            yield x[start:start + 50], y[start:start + 50]

    hypermodel = Recording(build, strategies=["generator", "loop"])
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=3, seed=2,
                                     directory=tmp_path, project_name="gen")
    tuner.search(wrap(batches), epochs=2, validation_data=(x[150:], y[150:]), verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 3 and all(t.status == "COMPLETED" for t in trials)
    for _, history in hypermodel.histories:  # every trial trained both epochs on all 3 batches
        assert history.epoch == [0, 1]
        assert all(np.isfinite(history.history["loss"]))
    assert len(passes) >= 3 * 2


def test_resume_backup_keeps_grouping_and_is_removed_after_each_execution(xy, registry, tmp_path):
    hypermodel = Recording(build, strategies=["memory", "loop"])
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=2, executions_per_trial=2,
                                     seed=0, directory=tmp_path, project_name="clean")
    tuner.search(epochs=2, **search_args(xy))
    assert all(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
    assert len(hypermodel.histories) == 4
    for _, history in hypermodel.histories:  # the per-epoch backup does not stop steps being grouped
        assert history.kfitx["steps_per_execution"] > 1, history.kfitx["grouping"]
    assert list(tmp_path.glob("clean/trial_*")) and not list(tmp_path.glob("clean/trial_*/kfitx-backup"))


# The model and data both subprocess searches below train.
SEARCH_MODEL_AND_DATA = '''
def build(hp):
    first = [] if "unbuilt" in sys.argv else [keras.Input((8,))]  # unbuilt: keras-tuner's guide has no Input
    model = keras.Sequential([*first, keras.layers.Dense(hp.Int("units", 4, 16, step=4), activation="relu"),
                              keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(hp.Float("lr", 0.01, 0.3, sampling="log")),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model

rng = np.random.default_rng(0)
x = rng.normal(size=(200, 8)); y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")
'''

RESUMABLE_SEARCH = '''
import json, os, signal, sys
import keras, keras_tuner, numpy as np
from kfitx.tuner import StrategyHyperModel

directory, kill, strategy = sys.argv[1], sys.argv[2] == "kill", sys.argv[3]
starts = os.path.join(directory, "starts.jsonl")

class Record(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.first = True
    def on_epoch_begin(self, epoch, logs=None):
        trial = next(c.trial for c in self.model._kfitx_callbacks if hasattr(c, "trial"))
        if self.first:
            self.first = False
            with open(starts, "a") as f:
                f.write(json.dumps({"trial": trial.trial_id, "epoch": epoch}) + "\\n")
        if kill and trial.trial_id == "1" and epoch == 3:  # trial 2 dies as its 4th epoch begins
            os.kill(os.getpid(), signal.SIGKILL)

class Hyper(StrategyHyperModel):
    def fit(self, hp, model, *args, callbacks=(), **kwargs):
        model._kfitx_callbacks = list(callbacks)
        history = super().fit(hp, model, *args, callbacks=[*callbacks, Record()], **kwargs)
        with open(os.path.join(directory, "histories.jsonl"), "a") as f:
            f.write(json.dumps({"epoch": history.epoch, "loss": len(history.history["loss"])}) + "\\n")
        return history

''' + SEARCH_MODEL_AND_DATA + '''
tuner = keras_tuner.RandomSearch(Hyper(build, strategies=strategy), objective="val_accuracy", max_trials=4,
                                 seed=5, directory=directory, project_name="resume", overwrite=False)
tuner.search(x[:150], y[:150], epochs=6, validation_data=(x[150:], y[150:]), verbose=0)
'''


@pytest.mark.parametrize("strategy", ["memory", pytest.param("loop", marks=pytest.mark.slow),
                                      pytest.param("memory unbuilt", marks=pytest.mark.slow)])
def test_killed_search_resumes_with_the_interrupted_trial_at_its_last_epoch(strategy, tmp_path):
    import json
    import signal
    import subprocess
    import sys

    script = tmp_path / "search.py"
    script.write_text(RESUMABLE_SEARCH)
    env = {**os.environ, "KFITX_BACKUP_INTERVAL_S": "0"}  # a backup after every epoch: resumes where it was killed
    run = lambda mode: subprocess.run([sys.executable, str(script), str(tmp_path), mode, *strategy.split()],
                                      timeout=300, capture_output=True, text=True, env=env)
    killed = run("kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    first_trial = (tmp_path / "resume" / "trial_0" / "trial.json").read_text()
    assert json.loads(first_trial)["status"] == "COMPLETED"
    assert json.loads((tmp_path / "resume" / "trial_1" / "trial.json").read_text())["status"] == "RUNNING"

    resumed = run("resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    starts = [json.loads(line) for line in (tmp_path / "starts.jsonl").read_text().splitlines()]
    # trial 0 trained once; trial 1 started at 0, was killed after 3 epochs, went on from epoch 3
    assert starts == [{"trial": "0", "epoch": 0}, {"trial": "1", "epoch": 0}, {"trial": "1", "epoch": 3},
                      {"trial": "2", "epoch": 0}, {"trial": "3", "epoch": 0}]
    trials = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "resume").glob("trial_*/trial.json")}
    assert len(trials) == 4 and all(t["status"] == "COMPLETED" for t in trials.values())
    assert (tmp_path / "resume" / "trial_0" / "trial.json").read_text() == first_trial  # kept, not retrained
    # every History handed to keras-tuner covers all 6 epochs, the resumed one's epochs before the kill included
    histories = [json.loads(line) for line in (tmp_path / "histories.jsonl").read_text().splitlines()]
    assert histories == [{"epoch": list(range(6)), "loss": 6}] * 4
    assert not list((tmp_path / "resume").glob("trial_*/kfitx-backup"))


DISTRIBUTED_SEARCH = '''
import sys
import keras, keras_tuner, numpy as np
from kfitx.tuner import StrategyHyperModel

''' + SEARCH_MODEL_AND_DATA + '''
tuner = keras_tuner.RandomSearch(StrategyHyperModel(build, strategies=["memory", "loop"]), objective="val_accuracy",
                                 max_trials=4, seed=1, directory=sys.argv[1], project_name="dist")
tuner.search(x[:150], y[:150], epochs=2, validation_data=(x[150:], y[150:]), verbose=0)
'''


@pytest.mark.slow
def test_distributed_search_with_a_chief_and_two_workers(tmp_path):
    import json
    import os
    import socket
    import subprocess
    import sys
    import time

    pytest.importorskip("grpc")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "search.py"
    script.write_text(DISTRIBUTED_SEARCH)
    procs = {}
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
                   "KERASTUNER_ORACLE_PORT": str(port), "TF_CPP_MIN_LOG_LEVEL": "3"}
            procs[tuner_id] = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env,
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if tuner_id == "chief":
                time.sleep(2)  # workers retry their connection, but start after the server anyway
        deadline = time.monotonic() + 180
        outputs = {tuner_id: p.communicate(timeout=max(1, deadline - time.monotonic()))[0]
                   for tuner_id, p in procs.items()}
    finally:
        for p in procs.values():  # no orphans, whatever happened
            if p.poll() is None:
                p.kill()
                p.communicate()
    for tuner_id, p in procs.items():
        assert p.returncode == 0, f"{tuner_id}:\n{outputs[tuner_id][-3000:]}"
    trials = [json.loads(p.read_text()) for p in (tmp_path / "dist").glob("trial_*/trial.json")]
    assert len(trials) == 4 and all(t["status"] == "COMPLETED" for t in trials)
    assert {t["hyperparameters"]["values"]["strategy"] for t in trials} <= {"memory", "loop"}


def test_the_trial_backup_is_written_at_most_every_interval(xy, registry, tmp_path, monkeypatch):
    """KFITX_BACKUP_INTERVAL_S: 0 backs up after every epoch; a long interval writes none in a short trial."""
    import keras

    saves = []
    original = keras.callbacks.BackupAndRestore._save_model
    monkeypatch.setattr(keras.callbacks.BackupAndRestore, "_save_model",
                        lambda self: (saves.append(1), original(self))[1])
    for interval, expected in (("0", 3), ("3600", 0)):
        monkeypatch.setenv("KFITX_BACKUP_INTERVAL_S", interval)
        saves.clear()
        tuner = keras_tuner.RandomSearch(StrategyHyperModel(build), objective="val_accuracy", max_trials=1,
                                         directory=str(tmp_path), project_name=f"interval-{interval}")
        tuner.search(epochs=3, **search_args(xy))
        assert len(saves) == expected, (interval, saves)
    monkeypatch.setenv("KFITX_BACKUP_INTERVAL_S", "soon")
    with pytest.raises(kfitx.OptionError, match="KFITX_BACKUP_INTERVAL_S"):
        kfitx.search.resume.backup_interval_s()


@pytest.mark.parametrize("strategy", ["memory", "generator", "loop"])
def test_the_keras_tuner_guides_unbuilt_sequential_completes_every_trial_with_resume(strategy, registry, tmp_path,
                                                                                     caplog):
    """keras.io's "Getting started with KerasTuner" model: no Input, built by fit. Resume must not cost a trial."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(96, 4, 4)).astype("float32"), rng.integers(0, 3, 96)

    def build_model(hp):
        model = keras.Sequential()
        model.add(keras.layers.Flatten())
        model.add(keras.layers.Dense(units=hp.Int("units", 8, 16, step=8), activation="relu"))
        model.add(keras.layers.Dense(3, activation="softmax"))
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    backups = []

    class Seen(StrategyHyperModel):
        def fit(self, hp, model, *args, **kwargs):
            history = super().fit(hp, model, *args, **kwargs)
            backups.append(model.built)
            return history

    tuner = keras_tuner.RandomSearch(Seen(build_model, strategies=[strategy]), objective="val_accuracy",
                                     max_trials=2, directory=tmp_path, project_name="guide")
    tuner.search(x[:64], y[:64], epochs=2, validation_data=(x[64:], y[64:]), verbose=0)
    assert [t.status for t in tuner.oracle.trials.values()] == ["COMPLETED", "COMPLETED"]
    assert backups == [True, True] and "trains without resume" not in caplog.text


def test_an_unbuilt_model_on_a_stream_read_once_trains_without_resume_and_says_why(registry, tmp_path, caplog):
    def build_model(hp):
        model = keras.Sequential([keras.layers.Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        return model

    rng = np.random.default_rng(0)
    batches = ((rng.normal(size=(8, 4)).astype("float32"), rng.integers(0, 3, 8)) for _ in range(1000))
    tuner = keras_tuner.RandomSearch(StrategyHyperModel(build_model, strategies="memory"), objective="loss",
                                     max_trials=1, directory=tmp_path, project_name="stream")
    tuner.search(batches, steps_per_epoch=4, epochs=2, verbose=0)
    assert [t.status for t in tuner.oracle.trials.values()] == ["COMPLETED"]
    assert "trains without resume" in caplog.text and "read once" in caplog.text
