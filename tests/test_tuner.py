"""The keras-tuner bridge: strategies swapped and tuned, errors surfaced, costs recorded."""

import keras
import keras_tuner
import numpy as np
import pytest

import kfitx
from kfitx.tuner import PEAK_RSS_MIB, SAMPLES_PER_S, StrategyHyperModel


class PlainFit(kfitx.Strategy):
    """A second strategy for swapping: plain model.fit, with a tunable of its own."""

    name = "plainfit"
    defaults = {"scale": 1}

    def hyperparameters(self, hp):
        return {"scale": hp.Int("scale", 1, 2)}

    def fit(self, model, source, **fit_args):
        fit_args.pop("seed", None)
        return model.fit(*source.arrays(), **fit_args)


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


@pytest.mark.parametrize("make, match", [
    (lambda: StrategyHyperModel(build, strategies="memry"), "Did you mean 'memory'"),
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


def test_peak_memory_sampler_leaves_no_thread():
    import threading

    from kfitx.tuner import _PeakRSS

    with _PeakRSS(interval=0.001) as sampler:
        block = np.ones(50 * 2**20 // 8)
    assert sampler.peak >= block.nbytes
    assert not any(t.name == "kfitx-peak-rss" for t in threading.enumerate())
