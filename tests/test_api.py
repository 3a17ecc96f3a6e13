import keras
import numpy as np
import pytest

import kfitx
from kfitx.errors import KfitxError, ModelError, OptionError, StrategyNotFoundError


class Observer:
    """A plugin wrapping every fit, as pytest's plugins wrap pytest_runtest_protocol."""

    def __init__(self):
        self.events = []

    @kfitx.hookimpl(wrapper=True)
    def kfitx_fit(self, strategy, model, plan):
        self.events.append(("start", strategy.name, plan.train.num_samples, plan.epochs, plan.verbose))
        try:
            history = yield
        except BaseException as err:
            self.events.append(("end", strategy.name, False, type(err).__name__))
            raise
        self.events.append(("end", strategy.name, True, "NoneType"))
        plan.report.note(observed=True)
        return history


def test_fit_runs_and_observer_hooks_fire(make_model, xy, registry):
    x, y = xy
    observer = Observer()
    registry.register(observer, name="observer")
    history = kfitx.fit(make_model(), x, y, epochs=2, verbose=0)
    assert isinstance(history, keras.callbacks.History)
    assert observer.events == [
        ("start", "memory", 200, 2, 0),
        ("end", "memory", True, "NoneType"),
    ]
    assert history.kfitx["observed"] is True  # a wrapper's note lands in history.kfitx


def test_fit_end_hook_sees_the_error_and_the_error_propagates(make_model, xy, registry):
    x, y = xy
    observer = Observer()
    registry.register(observer, name="observer")

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        kfitx.fit(make_model(), x, y, epochs=2, verbose=0, callbacks=[Boom()])
    assert observer.events[-1] == ("end", "memory", False, "RuntimeError")


def test_accepts_a_source_a_tuple_and_x_y(make_model, xy, registry):
    x, y = xy
    for data in (kfitx.data.arrays(x, y), (x, y)):
        assert kfitx.fit(make_model(), data, epochs=1, verbose=0).history["loss"]


def test_uncompiled_model_is_a_clear_error(xy, registry):
    x, y = xy
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    with pytest.raises(ModelError, match="model.compile"):
        kfitx.fit(model, x, y)


def test_unknown_argument_names_fit_args_and_strategy_options(make_model, xy, registry):
    x, y = xy
    with pytest.raises(OptionError, match=r"fit argument.*memory_budget.*Received: memory_budgt=0.3.*Did you mean 'memory_budget'"):
        kfitx.fit(make_model(), x, y, memory_budgt=0.3)
    with pytest.raises(OptionError, match="PyDataset"):
        kfitx.fit(make_model(), x, y, workers=4)
    with pytest.raises(OptionError, match="batch_size"):
        kfitx.fit(make_model(), x, y, batch_size=0)


def test_unknown_strategy(make_model, xy, registry):
    x, y = xy
    with pytest.raises(StrategyNotFoundError, match="Did you mean 'memory'"):
        kfitx.fit(make_model(), x, y, strategy="memroy")


def test_strategy_instance_and_class_are_accepted(make_model, xy, registry):
    x, y = xy
    strategy = kfitx.get_strategy("memory", steps_per_execution=2)
    assert kfitx.fit(make_model(), x, y, strategy=strategy, verbose=0).kfitx["steps_per_execution"] == 2
    assert kfitx.fit(make_model(), x, y, strategy=type(strategy), verbose=0).kfitx["strategy"] == "memory"


def test_a_strategy_that_does_not_return_history_is_reported(make_model, xy, registry):
    class Sloppy(kfitx.Strategy):
        name = "sloppy"

        def fit(self, model, plan):
            return {"loss": [1.0]}

    x, y = xy
    with pytest.raises(KfitxError, match="must return a keras.callbacks.History.*Received: dict"):
        kfitx.fit(make_model(), x, y, strategy=Sloppy)


def test_every_kfitx_error_is_catchable_as_kfitx_error(make_model, registry):
    with pytest.raises(KfitxError):
        kfitx.fit(make_model(), np.zeros((3, 8)), np.zeros(4))
