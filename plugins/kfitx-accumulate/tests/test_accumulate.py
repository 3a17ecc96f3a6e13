"""kfitx-accumulate keeps kfitx's fit contract (checked by kfitx.testing) and accumulates as it says."""

import ast
import importlib.metadata
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import kfitx
import kfitx_accumulate
from kfitx.testing import StrategyConformance, check_strategy, max_weight_difference, tiny_data, tiny_model
from kfitx_accumulate import AccumulateStrategy


class TestConformance(StrategyConformance):
    """Every rule of the fit contract, one test each; the tolerance is the class's weight_tolerance."""

    strategy = AccumulateStrategy


def test_one_micro_batch_per_sample_still_keeps_the_contract():
    report = check_strategy(AccumulateStrategy, accumulate_steps=32,
                            rules=["history", "callback-order", "same-weights"])
    assert report.ok and report.tolerance == AccumulateStrategy.weight_tolerance


def memory_and_accumulate(options, data=None, **fit_args):
    x, y = tiny_data()
    memory, ours = tiny_model(), tiny_model()
    h_memory = kfitx.fit(memory, x, y, strategy="memory", verbose=0, shuffle=False, **fit_args)
    data = (x, y) if data is None else (data,)
    h_ours = kfitx.fit(ours, *data, strategy=AccumulateStrategy(**options),
                       verbose=0, shuffle=False, **fit_args)
    return memory, ours, h_memory, h_ours


@pytest.mark.parametrize("accumulate_steps", [1, 3, 8])
@pytest.mark.parametrize("fit_args", [
    {"epochs": 2, "batch_size": 48},
    {"epochs": 2, "sample_weight": np.linspace(0.5, 1.5, 200), "validation_split": 0.25},
    {"epochs": 2, "class_weight": {0: 1.0, 1: 2.0, 2: 0.5}},
    {"epochs": 2, "steps_per_epoch": 4, "batch_size": 16},
], ids=["batch-48", "weights-and-split", "class-weight", "steps-per-epoch"])
def test_a_batch_in_pieces_trains_like_the_whole_batch(accumulate_steps, fit_args):
    memory, ours, h_memory, h_ours = memory_and_accumulate({"accumulate_steps": accumulate_steps}, **fit_args)
    assert h_ours.history.keys() == h_memory.history.keys()
    for key in h_memory.history:
        np.testing.assert_allclose(h_ours.history[key], h_memory.history[key], rtol=1e-4, atol=1e-6)
    assert max_weight_difference(memory, ours) <= AccumulateStrategy.weight_tolerance
    assert int(ours.optimizer.iterations) == int(memory.optimizer.iterations)  # one step per batch
    batch = fit_args.get("batch_size", 32)
    assert h_ours.kfitx["micro_batch_size"] == -(-batch // accumulate_steps)


def test_a_model_without_an_input_trains_like_memory():
    # It builds on its first batch, inside the step: the weights are read after the forward pass.
    x, y = tiny_data()

    def unbuilt():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    memory, ours = unbuilt(), unbuilt()
    kfitx.fit(memory, x, y, strategy="memory", epochs=2, shuffle=False, verbose=0)
    kfitx.fit(ours, x, y, strategy=AccumulateStrategy(accumulate_steps=2), epochs=2, shuffle=False, verbose=0)
    assert max_weight_difference(memory, ours) <= AccumulateStrategy.weight_tolerance


def test_the_model_sees_micro_batches():
    class Recorder(keras.layers.Layer):
        """Counts training calls and the largest batch it was called on."""

        def build(self, shape):
            self.calls = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False)
            self.largest = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False)

        def call(self, x, training=False):
            if training:
                self.calls.assign_add(1)
                self.largest.assign(tf.maximum(self.largest, tf.shape(x)[0]))
            return x

    keras.utils.set_random_seed(0)
    recorder = Recorder()
    model = keras.Sequential([keras.Input((8,)), recorder, keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = tiny_data(70)
    kfitx.fit(model, x, y, strategy=AccumulateStrategy(accumulate_steps=4), batch_size=64, epochs=1, verbose=0)
    assert int(recorder.calls) == 4 + 4  # the batch of 64 in 4 pieces, the last batch of 6 in 4
    assert int(recorder.largest) == 16
    assert int(model.optimizer.iterations) == 2


def test_generators_datasets_and_pydatasets_train_like_memory():
    x, y = tiny_data()

    def batches():
        for i in range(0, 200, 32):
            yield x[i:i + 32], y[i:i + 32]

    def forever():
        while True:
            yield from batches()

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 7

        def __getitem__(self, i):
            return x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32]

    dataset = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y)).batch(32)
    for data, args in ((batches, {}), (dataset, {}), (kfitx.data.generator(forever, steps_per_epoch=7), {}),
                       (Batches(), {})):
        memory, ours, _, history = memory_and_accumulate({}, data=data, epochs=2, **args)
        assert max_weight_difference(memory, ours) <= AccumulateStrategy.weight_tolerance, data
        assert history.epoch == [0, 1]


def test_an_endless_generator_without_steps_is_an_error_not_a_hang():
    x, y = tiny_data()

    def forever():
        while True:
            yield x[:32], y[:32]

    with pytest.raises(kfitx.DataError, match=r"endless_after=5.*steps_per_epoch=N"):
        kfitx.fit(tiny_model(), forever, strategy=AccumulateStrategy(endless_after=5), verbose=0)


def test_bad_options_are_refused():
    with pytest.raises(kfitx.OptionError, match=r"`accumulate_steps` must be a positive int.*Received: 0"):
        AccumulateStrategy(accumulate_steps=0)
    with pytest.raises(kfitx.OptionError, match="Did you mean 'accumulate_steps'"):
        AccumulateStrategy(acumulate_steps=2)


def test_it_uses_only_kfitx_public_api():
    tree = ast.parse(Path(kfitx_accumulate.__file__).read_text())
    used = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    used |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {m for m in used if m.startswith("kfitx")} <= {"kfitx", "kfitx.data", "kfitx.errors"}


def test_installed_through_its_entry_point():
    try:
        dist = importlib.metadata.distribution("kfitx-accumulate")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("kfitx-accumulate is not installed (pip install plugins/kfitx-accumulate)")
    (ep,) = [ep for ep in dist.entry_points if ep.group == "kfitx"]
    assert (ep.name, ep.value) == ("accumulate", "kfitx_accumulate")
    info = {i.name: i for i in kfitx.available_strategies()}["accumulate"]
    assert (info.distribution, info.cls) == ("kfitx-accumulate", AccumulateStrategy)
