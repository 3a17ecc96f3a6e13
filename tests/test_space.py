"""kfitx.tuner.search_space_table: a keras-tuner search space, one line per hyperparameter."""

from __future__ import annotations

import pytest

keras_tuner = pytest.importorskip("keras_tuner")

import kfitx.tuner  # noqa: E402


def test_each_kind_of_hyperparameter_is_one_line_with_its_values():
    hp = keras_tuner.HyperParameters()
    hp.Choice("units", [64, 128])
    hp.Float("dropout", 0.0, 0.3, step=0.1)
    hp.Float("learning_rate", 1e-3, 1e-2, sampling="log")
    hp.Int("layers", 1, 3)
    hp.Boolean("flip")
    hp.Fixed("epochs", 5)
    hp.Choice("strategy", ["memory", "generator"])
    with hp.conditional_scope("strategy", ["generator"]):  # declared, searched only where strategy is generator
        hp.Choice("generator/shift", [0.0, 0.1])
    lines = kfitx.tuner.search_space_table(hp).splitlines()
    assert lines[0] == "Search space: 8 hyperparameters"
    assert lines[1].split() == ["hyperparameter", "kind", "values", "searched", "when"]
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in lines[3:]}
    assert rows == {"units": "Choice 64, 128", "dropout": "Float 0.0 .. 0.3, step 0.1",
                    "learning_rate": "Float 0.001 .. 0.01, log", "layers": "Int 1 .. 3", "flip": "Boolean True, False",
                    "epochs": "Fixed 5", "strategy": "Choice memory, generator",
                    "generator/shift": "Choice 0.0, 0.1 strategy = generator"}
    assert "{" not in "\n".join(lines)  # no raw configuration dicts


def test_a_tuner_gives_its_oracles_space_and_without_conditions_there_is_no_condition_column(tmp_path):
    def build(hp):
        import keras

        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(hp.Int("units", 2, 8, step=2))])
        model.compile("sgd", "mse")
        return model

    tuner = keras_tuner.RandomSearch(build, objective="loss", max_trials=1, directory=str(tmp_path))
    table = kfitx.tuner.search_space_table(tuner)
    assert table.splitlines()[0] == "Search space: 1 hyperparameter"
    assert table.splitlines()[-1].split() == ["units", "Int", "2", "..", "8,", "step", "2"]
    assert "searched when" not in table
    with pytest.raises(TypeError, match="Tuner, Oracle or HyperParameters"):
        kfitx.tuner.search_space_table(object())
