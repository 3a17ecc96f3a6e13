"""kfitx report: a search directory read back (leaderboard, plot, the best trial retrained)."""

from __future__ import annotations

import json

import pytest

from kfitx.search import report
from kfitx.cli import main
from kfitx.errors import OptionError


def _trial(project, trial_id, status, score, values, record=None, direction="max", metric="val_accuracy"):
    d = project / f"trial_{trial_id}"
    d.mkdir(parents=True)
    metrics = {"loss": {"direction": "min", "observations": [{"value": [0.3], "step": 0}]}}
    if score is not None:
        metrics[metric] = {"direction": direction, "observations": [{"value": [score + (0.1 if direction == "min" else -0.1)], "step": 0},
                                                                     {"value": [score], "step": 1}]}
        metrics["kfitx_samples_per_s"] = {"direction": "max", "observations": [{"value": [1234.0], "step": 1}]}
    (d / "trial.json").write_text(json.dumps({
        "trial_id": trial_id, "status": status, "score": score, "message": None,
        "hyperparameters": {"space": [], "values": values}, "metrics": {"metrics": metrics}}))
    if record is not None:
        (d / "kfitx-trial.json").write_text(json.dumps(record))


@pytest.fixture
def search_dir(tmp_path):
    project = tmp_path / "runs" / "digits"
    _trial(project, "0", "COMPLETED", 0.91, {"strategy": "memory", "units": 64, "lr": 0.003},
           {"start": 10.0, "end": 12.5, "epochs": 5, "worker": "worker-0", "peak_rss_mib": 700.4})
    _trial(project, "1", "COMPLETED", 0.95, {"strategy": "loop", "units": 128, "lr": 0.01},
           {"start": 10.2, "end": 13.0, "epochs": 5, "worker": "worker-1", "peak_rss_mib": 712.0})
    _trial(project, "2", "FAILED", None, {"strategy": "memory", "units": 32, "lr": 0.001},
           {"start": 12.6, "end": 13.5, "epochs": 1, "worker": "worker-0"})
    _trial(project, "3", "RUNNING", None, {"strategy": "loop", "units": 64, "lr": 0.002},
           {"start": 13.1, "worker": "worker-1"})
    (project / "oracle.json").write_text("{}")
    (project / "kfitx-tune.json").write_text(json.dumps({"objective": "val_accuracy", "direction": "max",
                                                         "max_trials": 6, "state": "running"}))
    return tmp_path / "runs"


def test_load_ranks_best_first_and_reads_kfitx_records(search_dir):
    search = report.load(str(search_dir))
    assert [t.trial_id for t in search.trials] == ["1", "0", "2", "3"]
    best = search.best
    assert best.trial_id == "1" and best.strategy == "loop" and best.score == 0.95
    assert best.seconds == pytest.approx(2.8) and best.peak_mib == 712.0 and best.samples_per_s == 1234.0
    assert best.metrics["val_accuracy"] == 0.95 and best.metrics["loss"] == 0.3
    assert len(search.finished) == 3 and search.max_trials == 6
    assert "3/6 trial(s) finished; best trial 1: val_accuracy 0.9500 (strategy loop)" in report.summary(search)


def test_leaderboard_has_every_hyperparameter_strategy_score_speed_memory_status_epochs(search_dir):
    lines = report.leaderboard(report.load(str(search_dir))).splitlines()
    assert lines[0].split() == ["rank", "trial", "lr", "units", "strategy", "val_accuracy", "samples/s", "peak",
                                "MiB", "epochs", "seconds", "front", "status"]
    first = lines[2].split()
    assert first == ["1", "1", "0.01", "128", "loop", "0.9500", "1,234", "712", "5", "2.8", "*", "COMPLETED"]
    assert lines[4].split()[-1] == "FAILED" and lines[5].split()[-1] == "RUNNING"


def test_direction_comes_from_the_scores_metric_without_a_kfitx_marker(tmp_path):
    project = tmp_path / "p"
    _trial(project, "0", "COMPLETED", 0.2, {"u": 1}, direction="min", metric="val_loss")
    _trial(project, "1", "COMPLETED", 0.1, {"u": 2}, direction="min", metric="val_loss")
    search = report.load(str(project))
    assert search.objective == "val_loss" and search.direction == "min" and search.best.trial_id == "1"
    assert "epochs" in report.leaderboard(search)  # no record: '-' cells, no error


def test_find_project_says_what_is_there(tmp_path, search_dir):
    with pytest.raises(OptionError, match="Received: .*empty"):
        (tmp_path / "empty").mkdir()
        report.find_project(str(tmp_path / "empty"))
    (search_dir / "other").mkdir()
    (search_dir / "other" / "oracle.json").write_text("{}")
    with pytest.raises(OptionError, match="Available: digits, other"):
        report.find_project(str(search_dir))
    assert report.find_project(str(search_dir), "digits").endswith("digits")
    with pytest.raises(OptionError, match="--project"):
        report.find_project(str(search_dir), "nope")


def test_cli_report_prints_table_plot_and_best(search_dir, tmp_path, capsys):
    png = tmp_path / "r.png"
    assert main(["report", str(search_dir), "--plot", str(png), "--best"]) == 0
    out = capsys.readouterr().out
    assert "COMPLETED" in out and "Best trial 1: val_accuracy 0.9500, strategy loop" in out
    assert '"units": 128' in out and "hypermodel.fit(hp, model" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_a_corrupt_trial_json_is_shown_with_its_cause_and_the_report_exits_1(search_dir, capsys):
    project = search_dir / "digits"
    (project / "trial_4").mkdir()
    (project / "trial_4" / "trial.json").write_text('{"trial_id": "4", "status": "COMP')  # cut off mid-write
    (project / "trial_5").mkdir()  # keras-tuner has not written its trial.json yet: not a row
    search = report.load(str(search_dir))
    row = next(t for t in search.trials if t.trial_id == "4")
    assert row.status == "UNREADABLE" and "JSONDecodeError" in row.message
    assert [t.trial_id for t in search.trials if t.trial_id == "5"] == []
    assert main(["report", str(search_dir)]) == 1
    out = capsys.readouterr().out
    assert "UNREADABLE" in out and "trial 4: unreadable" in out and "trial.json: JSONDecodeError" in out
    assert search.trials[0].trial_id == "1" and search.trials[1].trial_id == "0"  # the readable ones ranked as before


def test_best_hyperparameters_retrain_the_best_trial_with_its_strategy(tmp_path, registry, xy):
    import keras
    import keras_tuner

    from kfitx.tuner import StrategyHyperModel

    def build(hp):
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 4, 8, step=4)),
                                  keras.layers.Dense(3)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return model

    x, y = xy
    hypermodel = StrategyHyperModel(build, strategies=["memory", "loop"])
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=2, seed=2,
                                     directory=str(tmp_path), project_name="best")
    tuner.search(x[:150], y[:150], validation_data=(x[150:], y[150:]), epochs=1, verbose=0)
    search = report.load(str(tmp_path))
    assert all(t.record.get("epochs") == 1 and t.record.get("strategy") for t in search.trials)
    hp = report.best_hyperparameters(str(tmp_path))
    assert hp.values == tuner.get_best_hyperparameters(1)[0].values
    history = hypermodel.fit(hp, hypermodel.build(hp), x, y, epochs=1, verbose=0)
    assert history.kfitx["strategy"] == search.best.strategy == hp["strategy"]


# -- cost: the Pareto front of score against training seconds, the best trial within a cost ------------------

# trial: (score, training seconds, epochs); every trial COMPLETED unless said
COSTS = {"0": (0.90, 10.0, 5), "1": (0.95, 30.0, 5), "2": (0.93, 40.0, 2), "3": (0.97, 100.0, 10),
         "4": (0.90, 20.0, 5), "5": (0.90, 10.0, 4), "8": (0.95, 25.0, 5)}


@pytest.fixture
def costs_dir(tmp_path):
    project = tmp_path / "runs" / "costs"
    for trial_id, (score, seconds, epochs) in COSTS.items():
        _trial(project, trial_id, "COMPLETED", score, {"units": 8 * (int(trial_id) + 1)},
               {"start": 0.0, "end": seconds, "epochs": epochs, "strategy": "memory"})
    _trial(project, "6", "FAILED", None, {"units": 1}, {"start": 0.0, "end": 1.0, "epochs": 1})  # no score
    _trial(project, "7", "COMPLETED", 0.99, {"units": 2})  # no kfitx record: no cost known
    (project / "oracle.json").write_text("{}")
    (project / "kfitx-tune.json").write_text(json.dumps({"objective": "val_accuracy", "direction": "max"}))
    return project


def test_the_pareto_front_holds_the_trials_no_other_beats_in_score_and_time(costs_dir):
    search = report.load(str(costs_dir))
    # 1 scores as 8 in more time, 2 less than 8 in more time, 4 as 0 in more time; 0 and 5 tie exactly
    # (neither beats the other); 7 has no training time recorded and 6 no score
    assert search.front == {"0", "3", "5", "8"}
    lines = report.leaderboard(search).splitlines()
    marked = {line.split()[1] for line in lines[2:] if line.split()[-2] == "*"}
    assert marked == {"0", "3", "5", "8"} and lines[0].split()[-2:] == ["front", "status"]
    # minimising: the same trials with a loss each, lower is better
    for trial_id in COSTS:
        data = json.loads((costs_dir / f"trial_{trial_id}" / "trial.json").read_text())
        data["score"] = 1.0 - data["score"]
        (costs_dir / f"trial_{trial_id}" / "trial.json").write_text(json.dumps(data))
    (costs_dir / "kfitx-tune.json").write_text(json.dumps({"objective": "val_loss", "direction": "min"}))
    assert report.load(str(costs_dir)).front == {"0", "3", "5", "8"}


def test_best_within_a_cost_names_the_trial_and_how_to_retrain_it(costs_dir, capsys):
    search = report.load(str(costs_dir))
    text = report.describe_best(search, max_seconds=35)  # 1 and 8 score the same: the quicker one
    assert text.startswith("Best trial 8 within 35 s of training: val_accuracy 0.9500, strategy memory")
    assert "cost: 25.0 s of training, 5 epoch(s), 5.00 s an epoch; on the Pareto front" in text
    assert "best_hyperparameters(" in text and "max_seconds=35)" in text and "epochs=5," in text
    assert report.describe_best(search, max_epoch_seconds=8).startswith("Best trial 8 within 8 s an epoch")
    assert report.describe_best(search, max_seconds=29).startswith("Best trial 8 within 29 s")
    assert report.describe_best(search, max_seconds=10).startswith("Best trial 0 within 10 s of training")
    none = report.describe_best(search, max_seconds=5)
    assert none == "No completed trial trained within 5 s of training: the quickest, trial 0, trained in 10.0 s."
    hp = report.best_hyperparameters(str(costs_dir), max_seconds=35)
    assert hp.values == {"units": 72}
    with pytest.raises(OptionError, match="within 5 s of training.*the quickest, trial 0"):
        report.best_hyperparameters(str(costs_dir), max_seconds=5)
    with pytest.raises(OptionError, match="`max_seconds` to be a positive number of seconds"):
        report.describe_best(search, max_seconds=-1)
    assert main(["report", str(costs_dir), "--best", "--max-seconds", "35"]) == 0
    assert "Best trial 8 within 35 s of training" in capsys.readouterr().out
    assert main(["report", str(costs_dir), "--max-epoch-seconds", "1m"]) == 0  # implies --best; 60 s an epoch
    assert "Best trial 3 within 60 s an epoch" in capsys.readouterr().out
    assert main(["report", str(costs_dir), "--best", "--max-seconds", "soon"]) == 2
    assert "`--max-seconds` to be a positive duration" in capsys.readouterr().err
