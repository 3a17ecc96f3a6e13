import contextlib

import pytest

import kfitx
from kfitx.errors import ModelError, OptionError, UnsupportedDataError
from kfitx.plan import check_fit_args, check_model


class Echo(kfitx.Strategy):
    name = "echo"
    description = "test strategy"
    defaults = {"factor": 2, "mode": "fast"}

    def supports(self, source):
        return None if source.kind == "arrays" else "echo wants arrays."

    def fit(self, model, plan):
        return model.fit(**plan.fit_kwargs(plan.train.arrays()))


def test_options_default_and_override():
    assert Echo().options == {"factor": 2, "mode": "fast"}
    assert Echo(factor=3).options["factor"] == 3
    assert repr(Echo(factor=3)) == "Echo(factor=3)"


def test_unknown_option_lists_the_valid_ones_and_suggests():
    with pytest.raises(OptionError, match=r"factor, mode.*Received: facter=3.*Did you mean 'factor'"):
        Echo(facter=3)


def test_require_raises_the_supports_reason():
    with pytest.raises(UnsupportedDataError, match="cannot train on this data.*generator.*echo wants arrays"):
        Echo().require(kfitx.data.generator(lambda: iter([])))


def test_strategy_without_fit_cannot_be_instantiated():
    class NoFit(kfitx.Strategy):
        name = "nofit"

    with pytest.raises(TypeError):
        NoFit()


@pytest.mark.parametrize("key", ["workers", "use_multiprocessing", "max_queue_size"])
def test_keras2_worker_arguments_explain_where_they_went(key):
    with pytest.raises(OptionError, match="PyDataset"):
        check_fit_args({key: 4})


def test_misspelled_fit_argument_is_suggested():
    with pytest.raises(OptionError, match="Did you mean 'epochs'"):
        check_fit_args({"epoch": 3})


@pytest.mark.parametrize(
    "args, match",
    [
        ({"epochs": -1}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"steps_per_epoch": True}, "steps_per_epoch"),
        ({"verbose": 3}, "verbose"),
        ({"validation_split": 1.5}, "validation_split"),
        ({"shuffle": "yes"}, "shuffle"),
    ],
)
def test_bad_fit_values(args, match):
    with pytest.raises(OptionError, match=match):
        check_fit_args(args)


def test_check_model_wants_a_compiled_keras_model(make_model):
    import keras

    with pytest.raises(ModelError, match="keras.Model"):
        check_model("not a model")
    raw = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ModelError, match=r"compiled.*model.compile"):
        check_model(raw)
    check_model(make_model())


def test_an_unknown_name_is_one_check_with_one_wording(make_model, xy, registry):
    with pytest.raises(OptionError) as direct:
        Echo(facter=3)
    x, y = xy
    with pytest.raises(OptionError) as through_fit:
        kfitx.fit(make_model(), x, y, strategy=Echo, facter=3)
    with pytest.raises(OptionError) as with_an_instance:
        kfitx.fit(make_model(), x, y, strategy=Echo(), facter=3)
    assert str(direct.value) == str(through_fit.value) == str(with_an_instance.value)
    assert "fit argument" in str(direct.value) and "option of strategy 'echo' (factor, mode)" in str(direct.value)
    with pytest.raises(OptionError, match=r"`epochs` is a fit argument: pass it to kfitx.fit"):
        Echo(epochs=3)


class ByPlace(kfitx.Strategy):
    """A plugin that chooses another strategy through the same hook ``auto`` uses."""

    name = "byplace"
    description = "memory for arrays, generator for streams"
    backends = ("tensorflow", "jax", "torch")
    entered: list[str] = []

    @contextlib.contextmanager
    def choose(self, request):
        name = "memory" if request.source.in_memory else "generator"
        chosen = request.registry.get(name)
        self.entered.append("begin")
        yield kfitx.Choice(chosen, request.plan(chosen), kfitx.Decision(name, f"the data is {request.source.kind}"))
        self.entered.append("end")

    def fit(self, model, plan):
        raise AssertionError("kfitx.fit trains the chosen strategy")


def test_a_plugin_chooses_another_strategy_through_choose(make_model, xy, registry, capsys):
    registry.register(type("Plugin", (), {"kfitx_strategies": kfitx.hookimpl(lambda self: [ByPlace])})(),
                      name="byplace")
    ByPlace.entered.clear()
    x, y = xy
    history = kfitx.fit(make_model(), x, y, strategy="byplace", epochs=1, verbose=1)
    assert history.kfitx["strategy"] == "memory" and history.kfitx["byplace"] == "the data is arrays"
    assert "memory -- the data is arrays" in capsys.readouterr().out  # the decision, printed as auto's is
    assert ByPlace.entered == ["begin", "end"]  # the fit ran inside the strategy's context


def test_choose_must_yield_a_choice(make_model, xy, registry):
    class Wrong(ByPlace):
        name = "wrong"

        @contextlib.contextmanager
        def choose(self, request):
            yield "memory"

    x, y = xy
    with pytest.raises(kfitx.PluginError, match=r"Strategy 'wrong' .* to yield a kfitx.Choice.*Received: 'memory'"):
        kfitx.fit(make_model(), x, y, strategy=Wrong, epochs=1, verbose=0)
