"""Strategy options as hyperparameters: kfitx.tuner.Tunable, and the generator's built-in tunables."""

import keras
import keras_tuner
import numpy as np
import pytest

import kfitx
import kfitx.tuner
from kfitx.strategies.generator import GeneratorStrategy
from kfitx.tuner import StrategyHyperModel, Tunable

SEEN = []  # (factor, note) of every Recorder fit, in order


class Recorder(kfitx.Strategy):
    """Plain model.fit that keeps the options it was made with; `factor` must be a positive int."""

    name = "recorder"
    defaults = {"factor": 1, "note": "fixed"}

    def __init__(self, **options):
        super().__init__(**options)
        factor = self.options["factor"]
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise kfitx.OptionError(kfitx.errors.message("`factor` must be a positive int", repr(factor)))

    def fit(self, model, plan):
        SEEN.append((self.options["factor"], self.options["note"]))
        validation = None if plan.validation is None else plan.validation.arrays()
        return model.fit(**plan.fit_kwargs(plan.train.arrays(), validation))


class Provides:
    @kfitx.hookimpl
    def kfitx_strategies(self):
        return [Recorder]


@pytest.fixture
def with_recorder(registry):
    registry.register(Provides(), name="recorder-plugin")
    SEEN.clear()
    return registry


def build(hp):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 4, 8, step=4), activation="relu"),
                              keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


class Recording(StrategyHyperModel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.values = []

    def fit(self, hp, model, *args, **kwargs):
        history = super().fit(hp, model, *args, **kwargs)
        self.values.append((dict(hp.values), history))
        return history


def search_args(xy):
    x, y = xy
    return dict(x=x[:150], y=y[:150], validation_data=(x[150:], y[150:]), epochs=1, verbose=0)


FACTOR = Tunable(lambda hp: hp.Int("factor", 1, 4))


def test_tunable_values_vary_across_trials_and_are_conditional_on_their_strategy(xy, with_recorder, tmp_path):
    hypermodel = Recording(build, strategies=["memory", "recorder"], strategy_options={"recorder": {"factor": FACTOR}})
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=8, seed=4,
                                     directory=tmp_path, project_name="tunable")
    # the strategy side of the space is known before any trial (declared in build), Tunables included
    space = {hp.name for hp in tuner.oracle.get_space().space}
    assert {"units", "strategy", "recorder/factor"} <= space
    tuner.search(**search_args(xy))
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id))
    assert len(trials) == 8 and all(t.status == "COMPLETED" for t in trials)
    chosen = [t.hyperparameters.values["strategy"] for t in trials]
    assert set(chosen) == {"memory", "recorder"}
    for trial in trials:  # active, and set, only in trials that choose its strategy
        on = trial.hyperparameters.values["strategy"] == "recorder"
        assert trial.hyperparameters.is_active("recorder/factor") == on
        assert ("recorder/factor" in trial.hyperparameters.values) == on
    factors = [t.hyperparameters.values["recorder/factor"] for t in trials if "recorder/factor" in t.hyperparameters.values]
    assert SEEN == [(f, "fixed") for f in factors]  # what the strategy was made with, trial by trial
    assert len(set(factors)) > 1  # it varies across trials
    assert all("factor" not in values for values, _ in hypermodel.values)  # no unscoped name for build_model


def test_kfitx_tuner_fit_resolves_tunables_without_the_hypermodels_build(xy, with_recorder, tmp_path):
    class Own(keras_tuner.HyperModel):  # a user's HyperModel calling kfitx.tuner.fit from its fit
        def build(self, hp):
            return build(hp)

        def fit(self, hp, model, *args, **kwargs):
            return kfitx.tuner.fit(hp, model, *args, strategies="recorder",
                                   strategy_options={"recorder": {"factor": FACTOR,
                                                                  "note": Tunable(lambda hp: hp.Choice("note", ["a", "b"]))}},
                                   **kwargs)

    tuner = keras_tuner.GridSearch(Own(), objective="val_accuracy", max_trials=3, directory=tmp_path, project_name="own")
    tuner.search(**search_args(xy))
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id))
    assert all(t.status == "COMPLETED" for t in trials)
    assert SEEN == [(t.hyperparameters.values["recorder/factor"], t.hyperparameters.values["recorder/note"])
                    for t in trials]


@pytest.mark.parametrize("tunable, match", [
    (Tunable(lambda hp: 10 // hp.Int("zero", 0, 0)), r"ZeroDivisionError.*recorder/zero=0"),
    (Tunable(lambda hp: hp.Int("factor", 0, 0)), r"factor=0 .*trial hyperparameters: .*recorder/factor=0.*positive int"),
])
def test_a_failing_tunable_ends_the_search_naming_the_trials_values(tunable, match, xy, with_recorder, tmp_path):
    hypermodel = StrategyHyperModel(build, strategies="recorder", strategy_options={"recorder": {"factor": tunable}})
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=3, directory=tmp_path,
                                     project_name="bad")
    with pytest.raises(keras_tuner.errors.FatalError, match=match) as info:
        tuner.search(**search_args(xy))
    assert "OptionError" in str(info.value) and "units=" in str(info.value)
    assert len(tuner.oracle.trials) == 1 and not SEEN  # fatal at the first trial, before it trained


def test_a_tunable_augmentation_the_generator_refuses_is_fatal(xy, registry, tmp_path):
    hypermodel = StrategyHyperModel(build, strategies="generator",
                                    strategy_options={"generator": {"augment": Tunable(lambda hp: hp.Int("n", 3, 3))}})
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=2, directory=tmp_path,
                                     project_name="aug")
    with pytest.raises(keras_tuner.errors.FatalError, match=r"augment=3 .*generator/n=3.*`augment` must be"):
        tuner.search(**search_args(xy))


def test_tunable_and_presets_are_refused_outside_a_search(make_model, xy):
    x, y = xy
    with pytest.raises(kfitx.OptionError, match="resolved per trial"):
        kfitx.fit(make_model(), x, y, strategy="generator", augment=FACTOR, epochs=1, verbose=0)
    with pytest.raises(kfitx.OptionError, match="outside a search.*Received: 'tune'"):
        kfitx.fit(make_model(), x, y, strategy="generator", augment="tune", epochs=1, verbose=0)
    with pytest.raises(kfitx.AugmentationError, match="Received: 'tune-noflip'.*Did you mean 'tune-no-flip'"):
        GeneratorStrategy(augment="tune-noflip")
    with pytest.raises(kfitx.OptionError, match="Received: int 3"):
        Tunable(3)


def test_generator_tunes_augmentation_only_when_asked():
    hp = keras_tuner.HyperParameters()
    assert GeneratorStrategy().hyperparameters(hp) == {} and not hp.space  # off by default
    assert GeneratorStrategy(augment="tune").hyperparameters(hp) == {"augment": None}  # every default is "off"
    assert {p.name for p in hp.space} == {"horizontal_flip", "vertical_flip", "shift", "rotation", "zoom"}
    hp.values.update(horizontal_flip=True, shift=0.1, rotation=36, zoom=0.1)
    idg = GeneratorStrategy(augment="tune").hyperparameters(hp)["augment"]
    assert idg.horizontal_flip and not idg.vertical_flip
    assert (idg.width_shift_range, idg.height_shift_range, idg.rotation_range) == (0.1, 0.1, 36)
    assert list(idg.zoom_range) == pytest.approx([0.9, 1.1])
    no_flip = keras_tuner.HyperParameters()
    GeneratorStrategy(augment="tune-no-flip").hyperparameters(no_flip)
    assert {p.name for p in no_flip.space} == {"shift", "rotation", "zoom"}


def test_generator_augment_tune_searches_the_augmentation_under_its_name(registry, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((96, 8, 8, 1)).astype("float32")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype("int64")

    def build_images(hp):
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return model

    hypermodel = Recording(build_images, strategies=["memory", "generator"],
                           strategy_options={"generator": {"augment": "tune"}})
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=6, seed=2,
                                     directory=tmp_path, project_name="gen")
    assert {"generator/shift", "generator/rotation", "generator/zoom", "generator/horizontal_flip"} <= {
        hp.name for hp in tuner.oracle.get_space().space}
    tuner.search(x[:64], y[:64], validation_data=(x[64:], y[64:]), epochs=1, verbose=0)
    generator_runs = [(values, history) for values, history in hypermodel.values if values["strategy"] == "generator"]
    assert any(history.kfitx["augment"] for _, history in generator_runs)  # some trial drew an augmentation
    for values, history in generator_runs:  # the augmentation each trial drew is the one it trained with
        described = history.kfitx["augment"]
        on = [name for name in ("shift", "rotation", "zoom") if values[f"generator/{name}"]]
        if not on and not values["generator/horizontal_flip"] and not values["generator/vertical_flip"]:
            assert described is None
            continue
        assert described.startswith("ImageDataGenerator(")
        assert ("rotation_range=36" in described) == bool(values["generator/rotation"])
        assert ("width_shift_range=0.1" in described) == bool(values["generator/shift"])
        assert ("horizontal_flip=True" in described) == values["generator/horizontal_flip"]
    memory_runs = [values for values, _ in hypermodel.values if values["strategy"] == "memory"]
    assert all(not any(k.startswith("generator/") for k in values) for values in memory_runs)
