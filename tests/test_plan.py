"""The fit plan: every fit argument resolved once, before any strategy runs."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import kfitx
from kfitx.errors import DataError, OptionError
from kfitx.plan import build_plan


def plan_for(model, data, strategy="memory", **fit_args):
    return build_plan(model, kfitx.data.coerce(data), kfitx.get_strategy(strategy), fit_args)


def test_defaults_are_model_fits(make_model, xy, registry):
    plan = plan_for(make_model(), xy)
    assert (plan.epochs, plan.initial_epoch, plan.batch_size, plan.validation_batch_size) == (1, 0, 32, 32)
    assert (plan.shuffle, plan.seed, plan.verbose, plan.validation, plan.steps_per_epoch) == (True, None, "auto",
                                                                                            None, None)
    assert plan.callbacks == []
    assert plan.report.as_dict() == {"strategy": "memory", "steps_per_execution": 16,
                                     "grouping": "no callback acts per batch"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.epochs = 3


def test_split_and_sample_weight_are_resolved_in_the_plan(make_model, xy, registry):
    x, y = xy
    plan = plan_for(make_model(), xy, validation_split=0.25, sample_weight=np.ones(200), batch_size=8)
    assert (plan.train.num_samples, plan.validation.num_samples) == (150, 50)
    assert plan.train.sample_weight is not None and plan.validation_batch_size == 8
    plan = plan_for(make_model(), xy, validation_data=(x[:10], y[:10]))
    assert plan.validation.num_samples == 10 and plan.train.num_samples == 200
    with pytest.raises(DataError, match="validation_split` splits arrays only"):
        plan_for(make_model(), lambda: iter([(x, y)]), strategy="generator", validation_split=0.2)


def test_steps_come_from_a_generator_source_and_an_endless_pydataset_needs_them(make_model, xy, registry):
    x, y = xy
    source = kfitx.data.generator(lambda: iter([(x, y)] * 3), steps_per_epoch=3)
    plan = build_plan(make_model(), source, kfitx.get_strategy("generator"),
                      {"validation_data": kfitx.data.generator(lambda: iter([(x, y)]), steps_per_epoch=1)})
    # A generator's pass has no known length: its steps_per_epoch is the epoch.
    assert (plan.steps_per_epoch, plan.validation_steps, plan.steps_per_pass, plan.batches_per_epoch) == (3, 1, None, 3)
    arrays = build_plan(make_model(), kfitx.data.arrays(x, y), kfitx.get_strategy("loop"),
                        {"batch_size": 64, "validation_split": 0.5})
    assert (arrays.steps_per_epoch, arrays.steps_per_pass, arrays.batches_per_epoch) == (None, -(-len(x) // 2 // 64),
                                                                                      -(-len(x) // 2 // 64))
    assert arrays.reading().steps_per_pass == arrays.steps_per_pass
    assert arrays.reading(validation=True).steps_per_pass == arrays.validation_steps_per_pass

    class Endless(keras.utils.PyDataset):
        def __getitem__(self, i):
            return x[:8], y[:8]

        @property
        def num_batches(self):
            return None

    with pytest.raises(DataError, match="endless PyDataset.*Pass steps_per_epoch=N"):
        plan_for(make_model(), Endless(), strategy="generator")


@pytest.mark.parametrize("bad, match", [
    ({"callbacks": keras.callbacks.History()}, r"list of keras.callbacks.Callback.*single History.*Wrap it"),
    ({"callbacks": [print]}, r"callbacks\[0\].*LambdaCallback"),
    ({"class_weight": [1, 2]}, r"class_weight.*dict.*Received: \[1, 2\]"),
    ({"validation_freq": 0}, r"validation_freq"),
    ({"seed": -1}, r"seed"),
])
def test_bad_fit_arguments_are_option_errors_before_training(make_model, xy, registry, bad, match):
    with pytest.raises(OptionError, match=match):
        kfitx.fit(make_model(), *xy, verbose=0, **bad)


def test_grouping_is_decided_once_with_its_reason(make_model, xy, registry):
    model = make_model()
    per_batch = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: None)
    assert plan_for(model, xy, callbacks=[per_batch]).report.grouping.startswith("callbacks act per batch")
    loop = build_plan(model, kfitx.data.coerce(xy), kfitx.get_strategy("loop", step=lambda m, b: {}), {})
    assert (loop.steps_per_execution, loop.grouping) == (1, "a step run in Python or batch hooks: one batch at "
                                                            "a time through Python")
    assert plan_for(model, xy, steps_per_epoch=10).steps_per_execution == 10


def test_fit_kwargs_for_arrays_and_for_datasets(make_model, xy, registry):
    plan = plan_for(make_model(), xy, shuffle=False, batch_size=16, epochs=2)
    arrays = plan.fit_kwargs(plan.train.arrays(), plan.train.arrays())
    assert arrays["batch_size"] == 16 and arrays["shuffle"] is False and arrays["validation_batch_size"] == 16
    assert arrays["x"] is plan.train.x and arrays["epochs"] == 2
    dataset = plan.fit_kwargs("a dataset")
    assert dataset["x"] == "a dataset" and dataset["shuffle"] is False and "batch_size" not in dataset
    assert "validation_data" not in dataset


MIRRORED = textwrap.dedent("""
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, kfitx

    x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])

    def model():
        keras.utils.set_random_seed(0)
        with strategy.scope():
            m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(2)])
            m.compile("sgd", "sparse_categorical_crossentropy")
        return m

    plain = model()
    with strategy.scope():
        plain.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    ours = model()
    with strategy.scope():
        history = kfitx.fit(ours, x, y, strategy="memory", batch_size=32, epochs=2, shuffle=False, verbose=0, seed=0)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(plain.get_weights(), ours.get_weights()))
    print("REPORT", history.kfitx["steps_per_execution"], history.kfitx["grouping"])
    print("DIFF", diff)
""")


def test_memory_under_mirrored_strategy_runs_one_step_per_call_and_trains_as_plain_fit():
    env = dict(os.environ, KFITX_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = next(line for line in proc.stdout.splitlines() if line.startswith("REPORT"))
    assert report.startswith("REPORT 1 steps_per_execution > 1 fails under tf.distribute.MirroredStrategy")
    diff = float(next(line for line in proc.stdout.splitlines() if line.startswith("DIFF")).split()[1])
    assert diff <= 1e-5  # tolerance: all-reduce sums in another order than one device


def test_arrays_the_model_cannot_take_are_a_data_error_before_training(make_model, xy, registry):
    x, y = xy
    with pytest.raises(DataError, match=r"model's input .*\(batch, 8\).*Received: x of shape \(200, 5\).*"
                                        r"keras.Input\(shape=\(5,\)\)"):
        kfitx.fit(make_model(), x[:, :5], y, verbose=0)
    with pytest.raises(DataError, match=r"validation_data x of shape \(10, 4\)"):
        kfitx.fit(make_model(), x, y, validation_data=(x[:10, :4], y[:10]), verbose=0)


def test_inputs_plain_fit_accepts_are_not_refused(xy, registry):
    x, y = xy
    keras.utils.set_random_seed(0)
    free = keras.Sequential([keras.Input((None, 2)), keras.layers.GlobalAveragePooling1D(),
                             keras.layers.Dense(3)])  # a None dimension
    free.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    column = keras.Sequential([keras.Input((1,)), keras.layers.Dense(3)])  # x of shape (n,): Keras adds the axis
    column.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    unbuilt = keras.Sequential([keras.layers.Dense(3)])  # built by its first batch
    unbuilt.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for model, data in ((free, x.reshape(200, 4, 2)), (column, x[:, 0]), (unbuilt, x)):
        plain = keras.models.clone_model(model)
        plain.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        plain.fit(data, y, epochs=1, verbose=0)  # plain fit trains on it ...
        assert kfitx.fit(model, data, y, epochs=1, verbose=0).history["loss"]  # ... and so does kfitx


def test_targets_are_required_only_where_keras_own_step_needs_them():
    import keras
    import numpy as np

    from kfitx.plan import _needs_targets

    def compiled(model, loss):
        model.compile("sgd", loss)
        return model

    plain = compiled(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), "mse")
    assert _needs_targets(plain)
    assert not _needs_targets(compiled(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), None))

    class OwnStep(keras.Model):  # a custom train_step may train on x alone (a VAE, SimSiam, ...)
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

        def train_step(self, data):
            return {}

    assert not _needs_targets(compiled(OwnStep(), "mse"))
    with pytest.raises(kfitx.DataError, match="Targets for validation_data"):
        kfitx.fit(plain, np.zeros((8, 2)), np.zeros(8), validation_data=np.zeros((4, 2)), verbose=0)
