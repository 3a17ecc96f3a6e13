"""A data source added by a plugin through the public ``kfitx_sources`` hook only (``npz_shards_plugin.py``),
and the generator factory that opts in to the fit's epoch and seed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import kfitx
from kfitx.data import InputForm, Reading

keras = pytest.importorskip("keras")

from npz_shards_plugin import NpzShards, NpzShardsPlugin, write_shards  # noqa: E402

N, FEATURES, CLASSES, SHARDS, BATCH = 72, 8, 3, 3, 16  # 24 samples a shard: batches run across shards, the last partial


def data():
    rng = np.random.default_rng(7)
    return rng.normal(size=(N, FEATURES)).astype("float32"), rng.integers(0, CLASSES, N)


@pytest.fixture
def plugin(registry):
    """The shard plugin, registered the public way a plugin object is, in a fresh registry."""
    plugin = NpzShardsPlugin()
    kfitx.register(plugin)
    return plugin


@pytest.fixture
def shards(tmp_path):
    x, y = data()
    return write_shards(tmp_path / "shards", x, y, SHARDS)


def weights_of(model):
    return [np.asarray(w) for w in model.get_weights()]


def test_the_hook_turns_a_directory_into_the_plugins_source_and_declines_the_rest(plugin, shards):
    registry = kfitx.registry.get_registry()
    source = registry.coerce(str(shards))
    assert isinstance(source, NpzShards) and source.form is InputForm.PYTHON_BATCHES and not source.in_memory
    assert isinstance(registry.coerce(*data()), kfitx.data.ArraySource)  # not its data: kfitx's own rules
    with pytest.raises(kfitx.DataError, match="`y` None for a directory"):
        registry.coerce(str(shards), np.zeros(3))
    batches = list(source.get_numpy_iterator(Reading(batch_size=BATCH), 0))
    assert [len(b[0]) for b in batches] == [16, 16, 16, 16, 8]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), data()[0])


def test_a_hook_answering_something_else_is_a_plugin_error(registry):
    class Wrong:
        @kfitx.hookimpl
        def kfitx_sources(self, data, y):
            return [data]

    kfitx.register(Wrong())
    with pytest.raises(kfitx.PluginError, match="kfitx_sources hook to return a kfitx.data.Source"):
        kfitx.registry.get_registry().coerce([1, 2])


@pytest.mark.parametrize("strategy", ["memory", "generator", "loop", "auto"])
def test_every_builtin_strategy_trains_on_the_plugins_source_as_model_fit_on_the_shards_concatenated(
        plugin, shards, make_model, strategy):
    x, y = data()
    plain = make_model(FEATURES, CLASSES, seed=3)
    plain.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    model = make_model(FEATURES, CLASSES, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = kfitx.fit(model, str(shards), strategy=strategy, batch_size=BATCH, epochs=2, shuffle=False,
                            verbose=0)
    assert len(history.history["loss"]) == 2
    for ours, theirs in zip(weights_of(model), weights_of(plain)):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    made = plugin.made[-1]
    assert made.count.loads >= 2 * SHARDS  # every shard read each epoch (a probe may read more)
    assert made.count.most <= 2  # never more than two shards in memory at once


def test_validation_data_and_explain_ask_the_hook_too(plugin, shards, tmp_path, make_model):
    x, y = data()
    validation = write_shards(tmp_path / "validation", x[:32], y[:32], 2)
    model = make_model(FEATURES, CLASSES, seed=3)
    history = kfitx.fit(model, str(shards), strategy="generator", batch_size=BATCH, epochs=1,
                        validation_data=str(validation), verbose=0)
    assert "val_loss" in history.history
    assert [s.directory for s in plugin.made] == [shards, validation]
    assert kfitx.explain(str(shards)).strategy in {"generator", "loop", "memory"}


def test_a_generator_factory_that_names_epoch_and_seed_gets_them_each_pass(registry, make_model):
    x, y = data()
    seen = []

    def batches(epoch, seed):  # a reproducible order per epoch, without a strategy of its own
        seen.append((epoch, seed))
        order = np.random.default_rng([seed, epoch]).permutation(N)
        for i in range(0, N, BATCH):
            yield x[order[i:i + BATCH]], y[order[i:i + BATCH]]

    for strategy in ("loop", "generator"):
        seen.clear()
        kfitx.fit(make_model(FEATURES, CLASSES), batches, strategy=strategy, epochs=3, initial_epoch=1, seed=5,
                  verbose=0)
        assert seen[:2] == [(1, 5), (2, 5)], strategy  # the generator's worker may start the next pass early
    plain = kfitx.data.generator(lambda: iter([(x[:4], y[:4])]))
    assert plain.receives == () and len(list(plain)) == 1  # a factory naming none is called with none
