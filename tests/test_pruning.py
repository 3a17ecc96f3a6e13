"""Pruning of poor trials: the median rule, its curve files, and whole searches with keras-tuner's tuners."""

import json
import types

import keras
import keras_tuner
import pytest

import kfitx
from kfitx.search import report
from kfitx.search import pruning
from kfitx.tuner import MedianPruning, StrategyHyperModel

MAX = keras_tuner.Objective("val_accuracy", "max")


def write_curve(project, trial_id, runs):
    """A trial's curve file: ``runs`` is a list of (values by epoch, state)."""
    folder = project / f"trial_{trial_id}"
    folder.mkdir(parents=True, exist_ok=True)
    executions = {str(i): {"values": {str(e): v for e, v in enumerate(values)}, "state": state}
                  for i, (values, state) in enumerate(runs)}
    (folder / pruning.CURVE).write_text(json.dumps({"trial_id": trial_id, "executions": executions}))
    return folder


def test_median_counts_finished_unpruned_trials_that_reached_the_epoch(tmp_path):
    write_curve(tmp_path, "0", [([0.2, 0.4, 0.6], "finished")])
    write_curve(tmp_path, "1", [([0.3, 0.5, 0.7], "finished"), ([0.1, 0.3, 0.5], "finished")])  # mean per epoch
    write_curve(tmp_path, "2", [([0.9, 0.9], "finished")])  # stopped by its own EarlyStopping: 2 epochs
    write_curve(tmp_path, "3", [([0.0, 0.0], "pruned")])  # pruned trials never count
    write_curve(tmp_path, "4", [([0.0, 0.0, 0.0], "running")])  # nor running (or failed) ones
    write_curve(tmp_path, "5", [([1.0, 1.0, 1.0], "finished")])
    assert pruning.median_at(str(tmp_path), 1, exclude="5") == (pytest.approx(0.4), ["0", "1", "2"])
    assert pruning.median_at(str(tmp_path), 2, exclude="9") == (pytest.approx(0.6), ["0", "1", "5"])
    assert pruning.median_at(str(tmp_path), 7, exclude="9") == (None, [])


def drive(callback, values, start=0):
    """Runs the callback over epochs with these objective values; returns the epochs after which it stopped."""
    callback.set_model(types.SimpleNamespace(stop_training=False))
    stopped = []
    callback.on_train_begin()
    for epoch, value in enumerate(values, start):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"val_accuracy": value, "loss": 1.0})
        if callback.model.stop_training:
            stopped.append(epoch + 1)
            break
    else:
        callback.on_train_end()
    return stopped


def test_a_losing_trial_stops_after_the_warmup_and_a_winning_one_goes_on(tmp_path):
    for i in range(3):
        write_curve(tmp_path, str(i), [([0.5, 0.6, 0.7, 0.8], "finished")])
    rule = MedianPruning(warmup_epochs=2, min_trials=3)
    losing = pruning.callback(rule, MAX, str(tmp_path / "trial_7"), "7", 0)
    assert drive(losing, [0.1, 0.1, 0.1, 0.1]) == [3]  # epochs 1 and 2 are the warm-up
    assert losing.pruned_epoch == 3 and losing.decision["median"] == pytest.approx(0.7)
    assert losing.decision["trials"] == ["0", "1", "2"]
    curve = pruning.read_curve(str(tmp_path / "trial_7"))
    assert curve["executions"]["0"]["state"] == "pruned" and len(curve["executions"]["0"]["values"]) == 3
    # its best epoch so far is what counts: at epoch 3 its 0.75 of epoch 2 beats the median 0.7, its 0.6 would not
    slow_start = pruning.callback(rule, MAX, str(tmp_path / "trial_8"), "8", 0)
    assert drive(slow_start, [0.3, 0.75, 0.6, 0.7]) == [4]
    winning = pruning.callback(rule, MAX, str(tmp_path / "trial_9"), "9", 0)
    assert drive(winning, [0.5, 0.6, 0.9, 0.9]) == [] and winning.pruned_epoch is None
    assert pruning.read_curve(str(tmp_path / "trial_9"))["executions"]["0"]["state"] == "finished"
    # too few finished trials: nobody is stopped
    alone = pruning.callback(MedianPruning(warmup_epochs=0, min_trials=5), MAX, str(tmp_path / "trial_10"), "10", 0)
    assert drive(alone, [0.0, 0.0, 0.0, 0.0]) == []


def test_a_resumed_execution_keeps_its_curve_and_minimising_objectives_work(tmp_path):
    loss = keras_tuner.Objective("val_loss", "min")
    for i in range(2):
        write_curve(tmp_path, str(i), [([1.0, 0.8, 0.6], "finished")])
    first = pruning.callback(MedianPruning(warmup_epochs=1, min_trials=2), loss, str(tmp_path / "trial_5"), "5", 0)
    first.set_model(types.SimpleNamespace(stop_training=False))
    for epoch, value in enumerate([0.9, 0.7]):  # killed after two epochs: no on_train_end
        first.on_epoch_begin(epoch)
        first.on_epoch_end(epoch, {"val_loss": value})
    resumed = pruning.callback(MedianPruning(warmup_epochs=1, min_trials=2), loss, str(tmp_path / "trial_5"), "5", 0)
    resumed.set_model(types.SimpleNamespace(stop_training=False))
    resumed.on_epoch_begin(2)  # BackupAndRestore starts it at epoch 2
    resumed.on_epoch_end(2, {"val_loss": 2.0})  # worse than 0.6, but its best so far (0.7) is the judge
    assert resumed.model.stop_training is True and resumed.decision["value"] == pytest.approx(0.7)
    values = pruning.read_curve(str(tmp_path / "trial_5"))["executions"]["0"]["values"]
    assert values == {"0": pytest.approx(0.9), "1": pytest.approx(0.7), "2": pytest.approx(2.0)}


def test_pruning_settings_are_checked(registry):
    assert pruning.as_pruning("median") == MedianPruning()
    with pytest.raises(kfitx.OptionError, match="Received: 'mean'"):
        StrategyHyperModel(build, pruning="mean")
    with pytest.raises(kfitx.OptionError, match="min_trials.*Received: 0"):
        MedianPruning(min_trials=0)
    with pytest.raises(kfitx.OptionError, match="warmup_epochs.*Received: 1.5"):
        MedianPruning(warmup_epochs=1.5)


# -- whole searches -----------------------------------------------------------------------------------------

LEARNING_RATES = [0.05, 0.02, 0.01, 1e-7, 2e-7]  # three that learn, then two that cannot


def build(hp):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    model.compile(keras.optimizers.Adam(hp.Choice("lr", LEARNING_RATES)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


class Recording(StrategyHyperModel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.histories = {}

    def fit(self, hp, model, *args, callbacks=(), **kwargs):
        trial = next(c.trial for c in callbacks if hasattr(c, "trial"))
        history = super().fit(hp, model, *args, callbacks=callbacks, **kwargs)
        self.histories[trial.trial_id] = history
        return history


def search(xy, tuner_cls, directory, **extra):
    x, y = xy
    hypermodel = Recording(build, pruning=MedianPruning(warmup_epochs=1, min_trials=3))
    tuner = tuner_cls(hypermodel, objective="val_accuracy", directory=directory, project_name="p", **extra)
    tuner.search(x[:150], y[:150], validation_data=(x[150:], y[150:]), epochs=5, verbose=0, seed=0)
    return tuner, hypermodel


def test_grid_search_prunes_the_losing_trials_never_the_first_ones_and_reports_them(xy, registry, tmp_path):
    tuner, hypermodel = search(xy, keras_tuner.GridSearch, tmp_path, max_trials=5)
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id))
    assert [t.hyperparameters.values["lr"] for t in trials] == LEARNING_RATES
    assert all(t.status == "COMPLETED" for t in trials)
    pruned = {t.trial_id: hypermodel.histories[t.trial_id].kfitx["pruned_epoch"] for t in trials}
    assert [pruned[t.trial_id] for t in trials[:3]] == [None] * 3  # the first min_trials are never pruned
    for trial in trials[3:]:  # the two that cannot learn stop once the warm-up epoch is over
        history = hypermodel.histories[trial.trial_id]
        assert pruned[trial.trial_id] == 2 and history.epoch == [0, 1]
        # keras-tuner still got the trial's best score, from its own callbacks
        assert trial.score == pytest.approx(max(history.history["val_accuracy"]))
    for trial in trials[:3]:
        assert hypermodel.histories[trial.trial_id].epoch == list(range(5))
    search_report = report.load(str(tmp_path), "p")
    table = report.leaderboard(search_report).splitlines()
    assert "pruned" in table[0].split()
    rows = {line.split()[1]: line for line in table[2:]}
    assert all(" at 2 " in rows[t.trial_id] for t in trials[3:])
    assert "(2 pruned)" in report.summary(search_report)
    record = json.loads((tmp_path / "p" / f"trial_{trials[3].trial_id}" / "kfitx-trial.json").read_text())
    assert record["pruned_epoch"] == 2 and record["pruned_by"]["trials"] == [t.trial_id for t in trials[:3]]


@pytest.mark.parametrize("tuner_cls, extra", [
    (keras_tuner.RandomSearch, {"max_trials": 7, "seed": 3}),
    (keras_tuner.BayesianOptimization, {"max_trials": 7, "num_initial_points": 3, "seed": 1}),
])
def test_random_and_bayesian_searches_prune_with_the_same_rule(tuner_cls, extra, xy, registry, tmp_path):
    tuner, hypermodel = search(xy, tuner_cls, tmp_path, **extra)
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id))
    assert trials and all(t.status == "COMPLETED" for t in trials)
    records = {t.trial_id: json.loads((tmp_path / "p" / f"trial_{t.trial_id}" / "kfitx-trial.json").read_text())
               for t in trials}
    assert all(records[t.trial_id]["pruned_epoch"] is None for t in trials[:3])
    pruned = [t for t in trials if records[t.trial_id]["pruned_epoch"] is not None]
    for trial in pruned:  # each stop is the rule's: worse than the median of at least min_trials finished trials
        decision = records[trial.trial_id]["pruned_by"]
        assert len(decision["trials"]) >= 3 and decision["value"] < decision["median"]
        assert len(hypermodel.histories[trial.trial_id].epoch) == decision["epoch"] < 5
        assert trial.score == pytest.approx(max(hypermodel.histories[trial.trial_id].history["val_accuracy"]))
    tried = {t.trial_id: t.hyperparameters.values["lr"] for t in trials}
    assert any(tried[t.trial_id] < 1e-3 for t in pruned)  # one that cannot learn was stopped


def test_pruning_with_hyperband_is_an_option_error(xy, registry, tmp_path):
    x, y = xy
    tuner = keras_tuner.Hyperband(StrategyHyperModel(build, pruning="median"), objective="val_accuracy", max_epochs=3,
                                  directory=tmp_path, project_name="hb")
    with pytest.raises(keras_tuner.errors.FatalError, match="OptionError.*Hyperband already"):
        tuner.search(x[:150], y[:150], validation_data=(x[150:], y[150:]), verbose=0)
    assert len(tuner.oracle.trials) == 1
