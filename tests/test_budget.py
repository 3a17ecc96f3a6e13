"""The time budget of a search: its durations, its clock in the search directory, and whole searches it stops.

The clock is stubbed (``budget.clock``): each epoch of a search advances it by ten seconds, so what is
asserted does not depend on how loaded the machine is.
"""

import datetime
import json
import types

import keras
import keras_tuner
import pytest

import kfitx
from kfitx.cli import main
from kfitx.search import budget, report
from kfitx.tuner import StrategyHyperModel


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(budget, "clock", fake)
    return fake


@pytest.mark.parametrize("text, seconds", [
    ("20m", 1200.0), ("90s", 90.0), ("1h30m", 5400.0), ("1h30m15s", 5415.0), ("2h", 7200.0), ("1200", 1200.0),
    ("90.5", 90.5), (" 20 m ", 1200.0), (45, 45.0), (2.5, 2.5), (datetime.timedelta(minutes=3), 180.0),
])
def test_durations_in_every_accepted_form(text, seconds):
    assert budget.parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "20x", "m", "1m30h", "-5", "twenty minutes", 0, -3, True, None, float("inf")])
def test_a_bad_duration_is_an_option_error_naming_the_accepted_forms(bad):
    with pytest.raises(kfitx.OptionError, match=r"`--time-budget` to be a positive duration: plain seconds .*90s, "
                                                r"20m, 1h30m.*Received: "):
        budget.parse_duration(bad, "--time-budget")


def test_durations_are_written_as_users_write_them():
    assert [budget.format_duration(s) for s in (4.4, 59.6, 1200, 5415)] == ["4s", "1m00s", "20m00s", "1h30m15s"]


def test_the_clock_survives_a_new_run_and_a_process_restarted_within_the_same_run(tmp_path, clock):
    project = str(tmp_path)
    first = budget.start(project, 100.0, run_start=1000.0)
    assert first["deadline"] == 1100.0 and budget.spent_s(first) == 0.0
    clock.now = 1030.0
    assert budget.tick(project)["run"]["seen"] == 1030.0 and not budget.spent(project)
    clock.now = 1040.0  # the chief of that run started again (same start): nothing counted twice
    again = budget.start(project, 100.0, run_start=1000.0)
    assert again["deadline"] == 1100.0 and budget.spent_s(again) == pytest.approx(40.0)
    clock.now = 5000.0  # a later run, with a larger budget: 40 s spent before it
    later = budget.start(project, 150.0, run_start=5000.0)
    assert later["spent_before_s"] == pytest.approx(40.0) and later["deadline"] == pytest.approx(5110.0)
    clock.now = 5110.0
    assert budget.spent(project) and budget.spent_s(budget.read(project)) == pytest.approx(150.0)
    clock.now = 7000.0  # the same budget again: spent, so that run starts nothing, and costs nothing
    refused = budget.start(project, 150.0, run_start=7000.0)
    clock.now = 7020.0
    assert budget.spent(project) and budget.spent_s(budget.read(project)) == pytest.approx(150.0)
    assert refused["deadline"] == pytest.approx(7000.0)
    paused = budget.start(project, None, run_start=9000.0)  # a run without a budget sets no deadline
    assert paused == {"budget_s": None, "spent_before_s": pytest.approx(150.0)}
    assert budget.tick(project) == {} and not budget.spent(project)


def drive(callback, epochs, trial_dir, clock, step=10.0):
    callback.set_model(types.SimpleNamespace(stop_training=False))
    callback.set_params({"epochs": epochs})
    for epoch in range(epochs):
        clock.now += step
        callback.on_epoch_end(epoch, {})
        if callback.model.stop_training:
            return epoch + 1
    return epochs


def test_a_running_trial_stops_at_the_first_epoch_end_past_the_deadline_and_its_record_says_so(tmp_path, clock):
    project, trial = tmp_path / "p", tmp_path / "p" / "trial_0"
    budget.start(str(project), 25.0, run_start=clock.now)
    stopper = budget.stopper(str(project), lambda: str(trial))
    assert drive(stopper, 5, trial, clock) == 3 and stopper.stopped_epoch == 3
    record = json.loads((trial / "kfitx-trial.json").read_text())
    assert record["stopped_by"] == "budget" and record["stopped_epoch"] == 3
    # its last epoch ending past the deadline is no stop; a search without a budget is never stopped
    last = tmp_path / "p" / "trial_1"
    assert drive(budget.stopper(str(project), lambda: str(last)), 1, last, clock) == 1
    assert not (last / "kfitx-trial.json").exists()
    assert drive(budget.stopper(str(tmp_path / "none"), lambda: None), 5, None, clock) == 5


# -- whole searches --------------------------------------------------------------------------------------------

def build(hp):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 4, 32, step=4), activation="relu"),
                              keras.layers.Dense(3)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


class TenSecondEpochs(keras.callbacks.Callback):
    """Each epoch takes ten seconds of the stubbed clock (the user's callbacks run before kfitx's; keras-tuner
    copies them for each trial, so the clock is looked up where kfitx reads it)."""

    def on_epoch_end(self, epoch, logs=None):
        budget.clock.now += 10.0


def search(xy, directory, clock, time_budget, max_trials=6, tuner_cls=keras_tuner.RandomSearch, **extra):
    x, y = xy
    if max_trials is not None:
        extra["max_trials"] = max_trials
    tuner = tuner_cls(StrategyHyperModel(build, time_budget=time_budget), objective="val_accuracy", seed=1,
                      directory=directory, project_name="p", overwrite=False, **extra)
    tuner.search(x[:150], y[:150], validation_data=(x[150:], y[150:]), epochs=4, verbose=0,
                 callbacks=[TenSecondEpochs()])
    return tuner


def records(directory):
    return {p.parent.name.removeprefix("trial_"): json.loads(p.read_text())
            for p in (directory / "p").glob("trial_*/kfitx-trial.json")}


def test_the_budget_stops_a_search_and_a_later_run_with_a_larger_one_continues_it(xy, registry, tmp_path, clock,
                                                                                 capsys):
    tuner = search(xy, tmp_path, clock, "25s")  # epochs end at 10, 20, 30 s: past 25 s after the third
    assert [t.status for t in tuner.oracle.trials.values()] == ["COMPLETED"]
    first = records(tmp_path)
    assert first["0"]["stopped_by"] == "budget" and first["0"]["stopped_epoch"] == 3 and first["0"]["epochs"] == 3
    assert "time budget 25s, 30s spent: no new trial starts" in capsys.readouterr().out
    # the same budget again: it is spent, so the rerun ends at once and says why
    with pytest.raises(keras_tuner.errors.FatalError, match=r"OptionError: a time budget larger than what the "
                                                            r"search has spent.*time_budget 25s; .* has spent 30s"):
        search(xy, tmp_path, clock, 25)
    assert records(tmp_path) == first
    # a larger one: 25 s more; the trial the refused rerun was handed is trained now, then the search ends
    tuner = search(xy, tmp_path, clock, "55s")
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    assert [(t.trial_id, t.status) for t in trials] == [("0", "COMPLETED"), ("1", "COMPLETED")]
    assert tuner.oracle.end_order == ["0", "1"]  # each trained once: none handed out again after a reload
    assert all(t.score is not None for t in trials)
    second = records(tmp_path)
    assert second["0"] == first["0"] and second["1"]["stopped_by"] == "budget" and second["1"]["epochs"] == 3
    assert budget.spent_s(budget.read(str(tmp_path / "p"))) == pytest.approx(60.0)
    # a budget the search stays within changes nothing
    tuner = search(xy, tmp_path, clock, "10m", max_trials=3)
    assert len(tuner.oracle.trials) == 3 and "stopped_by" not in records(tmp_path)["2"]
    assert records(tmp_path)["2"]["epochs"] == 4
    assert "(2 stopped by the time budget)" in report.summary(report.load(str(tmp_path)))


def test_a_time_budget_with_hyperband_is_refused_and_a_bad_one_when_the_hypermodel_is_made(xy, registry, tmp_path,
                                                                                        clock):
    with pytest.raises(keras_tuner.errors.FatalError, match="OptionError: a time budget with a tuner .*Hyperband "
                                                            "trains trials for set numbers of epochs"):
        search(xy, tmp_path, clock, "5m", tuner_cls=keras_tuner.Hyperband, max_trials=None, max_epochs=3)
    with pytest.raises(kfitx.OptionError, match="Received: '5 minutes'"):
        StrategyHyperModel(build, time_budget="5 minutes")


def test_kfitx_tune_checks_the_time_budget_before_starting_anything(tmp_path, capsys):
    script = tmp_path / "s.py"
    script.write_text("raise SystemExit(0)\n")
    assert main(["tune", "--time-budget", "20 min", str(script)]) == 2
    assert "`--time-budget` to be a positive duration" in capsys.readouterr().err
    assert main(["tune", "--time-budget", "20m", "--chief", "127.0.0.1:9", str(script)]) == 2
    assert "Drop --time-budget here" in capsys.readouterr().err
