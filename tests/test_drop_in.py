"""What ``model.fit`` accepts, every strategy accepts, and trains on with ``fit``'s epoch and step rules.

Each test trains the same model on the same data with plain ``model.fit`` and through each built-in
strategy, and compares what a user sees: the weights, the batches each epoch trains on (as
``on_train_batch_end`` reports them), the History.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from contract import BatchLog, build_model, weights_close  # noqa: E402

import kfitx  # noqa: E402

STRATEGIES = ["memory", "generator", "loop"]


def linear_model(steps_per_execution=1):
    """One softmax layer on 4 features, SGD(0.1), no metrics; seed 0."""
    return build_model(4, hidden=None, softmax=True, metrics=None, steps_per_execution=steps_per_execution)


def data(n=80, features=4):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, features)).astype("float32"), rng.integers(0, 3, n)


def train(strategy, make_data, steps_per_execution=1, **fit_args):
    """``(weights, batch indices per epoch, history)`` of one fit: plain ``model.fit`` when ``strategy`` is None."""
    model = linear_model(steps_per_execution)
    batches = BatchLog()
    x = make_data()
    args = {"verbose": 0, "shuffle": False, **fit_args, "callbacks": [batches]}
    if callable(args.get("validation_data")):  # made anew for each fit, as the training data
        args["validation_data"] = args["validation_data"]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if strategy is None:
            history = model.fit(*x, **args) if isinstance(x, tuple) else model.fit(x, **args)
        else:
            history = kfitx.fit(model, *x, strategy=strategy, **args) if isinstance(x, tuple) else \
                kfitx.fit(model, x, strategy=strategy, **args)
    weights = [w.numpy() if hasattr(w, "numpy") else np.asarray(w) for w in model.get_weights()]
    return weights, batches.per_epoch, history


def assert_same_as_plain(strategy, make_data, steps_per_execution=1, **fit_args):
    plain_weights, plain_batches, plain = train(None, make_data, steps_per_execution, **fit_args)
    weights, batches, history = train(strategy, make_data, steps_per_execution, **fit_args)
    assert batches == plain_batches
    assert sorted(history.history) == sorted(plain.history)
    for a, b in zip(weights, plain_weights):
        np.testing.assert_allclose(a, b, atol=1e-5)
    return plain_batches


def batch_generator(x, y, batch_size=8):
    """A finite generator *object*: one pass over the data."""
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_generator_object_trains_read_across_epochs_as_model_fit_reads_it(strategy):
    x, y = data()
    seen = assert_same_as_plain(strategy, lambda: (batch_generator(x, y),), epochs=3, steps_per_epoch=4,
                                validation_data=lambda: batch_generator(x, y))
    assert seen == [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1]]  # 10 batches in all: the third epoch runs out


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_torch_dataloader_trains_as_with_model_fit(strategy):
    torch = pytest.importorskip("torch")
    x, y = data()
    loader = lambda: (torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x),
                                                                                  torch.from_numpy(y)),
                                                  batch_size=16),)
    assert_same_as_plain(strategy, loader, epochs=2)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_grain_dataset_trains_as_with_model_fit(strategy):
    grain = pytest.importorskip("grain")
    x, y = data()
    dataset = lambda: (grain.MapDataset.source([(x[i], y[i]) for i in range(len(x))]).batch(16),)
    assert_same_as_plain(strategy, dataset, epochs=2)


class RaggedMean(keras.Model):
    """Averages each ragged row, then a dense layer: a model fed ``tf.RaggedTensor`` inputs."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1, kernel_initializer="ones")

    def call(self, x):
        return self.dense(tf.expand_dims(tf.reduce_mean(x, axis=1), -1))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ragged_tensor_inputs_train_as_with_model_fit(strategy):
    rows = [[1.0, 2.0], [3.0], [4.0, 5.0, 6.0], [7.0]] * 4
    x, y = tf.ragged.constant(rows), np.arange(16, dtype="float32").reshape(-1, 1)
    weights = {}
    for name in (None, strategy):
        keras.utils.set_random_seed(0)
        model = RaggedMean()
        model.compile(keras.optimizers.SGD(0.01), "mse", jit_compile=False)
        if name is None:
            model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        else:
            kfitx.fit(model, x, y, strategy=name, batch_size=4, epochs=2, shuffle=False, verbose=0)
        weights[name] = model.get_weights()
    for a, b in zip(weights[strategy], weights[None]):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_distributed_dataset_trains_as_with_model_fit(strategy):
    x, y = data()
    scope = tf.distribute.OneDeviceStrategy("/cpu:0")
    weights = {}
    for name in (None, strategy):
        with scope.scope():
            model = linear_model()
        dataset = scope.distribute_datasets_from_function(
            lambda context: tf.data.Dataset.from_tensor_slices((x, y)).batch(16))
        if name is None:
            model.fit(dataset, epochs=2, verbose=0)
        else:
            kfitx.fit(model, dataset, strategy=name, epochs=2, verbose=0)
        weights[name] = model.get_weights()
    for a, b in zip(weights[strategy], weights[None]):
        np.testing.assert_allclose(a, b, atol=1e-5)


class Batched(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // 8

    def __getitem__(self, index):
        return self.x[index * 8:(index + 1) * 8], self.y[index * 8:(index + 1) * 8]


def test_memory_takes_a_tf_data_dataset_and_a_pydataset_as_model_fit_does():
    x, y = data()
    assert_same_as_plain("memory", lambda: tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=2)
    assert_same_as_plain("memory", lambda: Batched(x, y), epochs=2)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_steps_per_epoch_shorter_than_the_data_carries_the_pass_into_the_next_epoch(strategy):
    x, y = data()
    seen = assert_same_as_plain(strategy, lambda: (x, y), batch_size=8, steps_per_epoch=9, epochs=4)
    assert [len(epoch) for epoch in seen] == [9, 1, 9, 1]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_steps_per_epoch_longer_than_the_data_ends_the_epoch_when_it_runs_out(strategy):
    x, y = data()
    seen = assert_same_as_plain(strategy, lambda: (x, y), batch_size=8, steps_per_epoch=11, epochs=2)
    assert [len(epoch) for epoch in seen] == [10, 10]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_dataset_of_unknown_size_with_steps_per_epoch_trains_the_batches_model_fit_trains(strategy):
    x, y = data()
    unknown = lambda: tf.data.Dataset.from_tensor_slices((x, y)).batch(8).filter(lambda a, b: True)
    assert_same_as_plain(strategy, unknown, steps_per_epoch=7, epochs=3)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_grouped_steps_with_steps_per_epoch_make_the_calls_model_fit_makes(strategy):
    x, y = data()
    seen = assert_same_as_plain(strategy, lambda: (x, y), steps_per_execution=2, batch_size=8, steps_per_epoch=5,
                                epochs=2)
    assert seen == [[1, 3, 5], [1, 3]]  # 3 calls, then the 2 the pass has left


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_last_partial_group_reports_the_batch_index_model_fit_reports(strategy):
    x, y = data(100)
    seen = assert_same_as_plain(strategy, lambda: (x, y), steps_per_execution=3, batch_size=16, epochs=1)
    assert seen == [[2, 5, 8]]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_set_max_steps_per_epoch_limits_every_strategy_as_it_limits_model_fit(strategy):
    x, y = data()
    keras.config.set_max_steps_per_epoch(3)
    try:
        seen = assert_same_as_plain(strategy, lambda: (x, y), batch_size=8, epochs=2)
    finally:
        keras.config.set_max_steps_per_epoch(None)
    assert seen == [[0, 1, 2], [0, 1, 2]]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("steps", "expected"), [(9, [9, 1, 9, 1]), (11, [10, 10, 10, 10])])
def test_a_pydataset_with_steps_per_epoch_trains_the_batches_model_fit_trains(strategy, steps, expected):
    x, y = data()
    seen = assert_same_as_plain(strategy, lambda: Batched(x, y), steps_per_epoch=steps, epochs=4)
    assert [len(epoch) for epoch in seen] == expected


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_class_weight_that_omits_a_class_weighs_it_1_as_model_fit_does(strategy):
    x, y = data()
    assert_same_as_plain(strategy, lambda: (x, y), class_weight={0: 2.0, 1: 0.5}, epochs=2)  # class 2 omitted


@pytest.mark.parametrize("strategy", ["memory", "loop"])
def test_backup_and_restore_resumes_to_the_same_weights(strategy, make_model, xy, registry, tmp_path):
    """Interrupted at the end of epoch 1 of 4 and run again with BackupAndRestore: epochs 2 and 3, and the weights
    of the uninterrupted fit. (On JAX, tests/backend_contract.py checks memory, generator and loop with Adam.)"""
    x, y = xy

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("killed")

    args = {"strategy": strategy, "epochs": 4, "shuffle": False, "verbose": 0}
    uninterrupted = make_model()
    kfitx.fit(uninterrupted, x, y, **args)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="killed"):
        kfitx.fit(make_model(), x, y, callbacks=[backup, Crash()], **args)
    resumed = make_model(seed=99)  # a new process would start from other weights; the backup wins
    history = kfitx.fit(resumed, x, y, callbacks=[backup], **args)
    assert history.epoch == [2, 3]
    assert weights_close(uninterrupted, resumed)


def test_a_pydataset_is_shuffled_alike_by_every_strategy_that_reads_it_itself():
    """model.fit shuffles a PyDataset's batches (shuffle=True); generator and loop read it the same way."""

    class Numbered(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.read = []

        def __len__(self):
            return 8

        def __getitem__(self, i):
            self.read.append(i)
            return np.full((4, 3), i, "float32"), np.zeros((4, 1), "float32")

    orders = {}
    for strategy in ("generator", "loop"):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        data = Numbered()
        kfitx.fit(model, data, strategy=strategy, epochs=1, verbose=0, seed=1)
        orders[strategy] = data.read[:8]  # the first pass (generator's worker reads ahead into the next)
        assert sorted(orders[strategy]) == list(range(8)) and orders[strategy] != list(range(8)), orders
    assert orders["generator"] == orders["loop"]
