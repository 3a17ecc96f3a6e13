"""kfitx.fit_loop: model.fit's loop around a strategy's step, as a plugin author uses it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kfitx
from kfitx.errors import OptionError

from contract import BatchLog, Spy, weights_close


def tape_step(model, batch):
    """The standard train step written out, as a plugin would write its own."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
    grads = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
    next(m for m in model.metrics if m.name == "loss").update_state(loss, sample_weight=tf.shape(x)[0])
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


class Stepped(kfitx.Strategy):
    """A step plugin: its options are the TrainStep's."""

    name = "stepped"
    description = "a step run by kfitx.fit_loop"
    defaults = {"fn": None, "compiled": True, "hooks": (), "epoch_logs": "metrics", "batches": None}

    def grouping(self):
        return 1, "one batch per call"

    def fit(self, model, plan):
        options = dict(self.options)
        batches = options.pop("batches")
        return kfitx.fit_loop(model, plan, kfitx.TrainStep(**options),
                              batches=None if batches is None else batches(plan))


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_a_step_of_ones_own_keeps_model_fits_callbacks_history_and_weights(make_model, xy, registry, compiled):
    x, y = xy
    spy_plain, spy_ours = Spy(), Spy()
    plain, ours = make_model(), make_model()
    fn = tape_step if compiled else tf.function(tape_step, reduce_retracing=True)
    h_plain = plain.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0,
                        validation_data=(x[:50], y[:50]), callbacks=[spy_plain])
    h_ours = kfitx.fit(ours, x, y, strategy=Stepped(fn=fn, compiled=compiled), epochs=2, batch_size=32,
                       shuffle=False, verbose=0, validation_data=(x[:50], y[:50]), callbacks=[spy_ours])
    assert spy_ours.calls == spy_plain.calls
    assert h_ours is ours.history and h_ours.history.keys() == h_plain.history.keys()
    for key in h_plain.history:
        np.testing.assert_allclose(h_ours.history[key], h_plain.history[key], rtol=1e-5)
    assert weights_close(plain, ours)


@pytest.mark.parametrize("fn", [None, tape_step], ids=["model-step", "own-step"])
def test_every_batch_hook_fires_once_per_batch_with_that_batchs_logs(make_model, xy, registry, fn):
    x, y = xy
    counter = BatchLog()
    model = make_model()
    kfitx.fit(model, x, y, strategy=Stepped(fn=fn), epochs=3, batch_size=16, verbose=0, callbacks=[counter])
    assert counter.begins == list(range(13)) * 3
    assert [b for b, _ in counter.ends] == list(range(13)) * 3
    assert all(isinstance(logs["loss"], float) for _, logs in counter.ends)  # what model.fit's callbacks get
    assert int(model.optimizer.iterations) == 39


def test_the_epoch_means_of_a_python_step(make_model, xy, registry):
    x, y = xy
    history = kfitx.fit(make_model(), x, y, epochs=1, batch_size=64, verbose=0,
                        strategy=Stepped(fn=lambda model, batch: {"n": len(batch[0])}, compiled=False,
                                         epoch_logs="means"))
    np.testing.assert_allclose(history.history["n"], [(3 * 64 * 64 + 8 * 8) / 200])


def test_batches_may_come_from_anywhere(make_model, xy, registry):
    """The engine trains on what a feed yields: ``epoch(epoch)`` -> (first step, last step, data)."""
    x, y = xy

    class Halves:
        num_batches = 2

        def epoch(self, epoch):
            yield 0, 0, [(x[:100].astype("float32"), y[:100])]
            yield 1, 1, [(x[100:].astype("float32"), y[100:])]

    reference, ours = make_model(), make_model()
    reference.fit(x, y, epochs=2, batch_size=100, shuffle=False, verbose=0)
    history = kfitx.fit(ours, x, y, strategy=Stepped(batches=lambda plan: Halves()), epochs=2, verbose=0)
    assert history.epoch == [0, 1] and int(ours.optimizer.iterations) == 4
    assert weights_close(reference, ours)


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # model.fit's warning, on the reference run
def test_a_dataset_of_unknown_length_ends_each_epoch_when_it_runs_out_as_in_model_fit(make_model, xy, registry):
    x, y = xy
    dataset = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y)).filter(lambda a, b: True).batch(50)
    assert int(dataset.cardinality()) < 0
    seen = {}
    for name in ("model.fit", "fit_loop"):
        counter, model = BatchLog(), make_model()
        if name == "model.fit":
            history = model.fit(dataset, epochs=2, shuffle=False, verbose=0, callbacks=[counter])
        else:
            history = kfitx.fit(model, dataset, strategy=Stepped(fn=tape_step), epochs=2, verbose=0,
                                callbacks=[counter])
        seen[name] = (model, history.epoch, [b for b, _ in counter.ends], int(model.optimizer.iterations))
    assert seen["fit_loop"][1:] == seen["model.fit"][1:]
    assert seen["fit_loop"][2] == [0, 1, 2, 3] * 2
    assert weights_close(seen["model.fit"][0], seen["fit_loop"][0])


def test_a_model_run_eagerly_trains_the_same(make_model, xy, registry):
    x, y = xy
    eager, compiled = make_model(run_eagerly=True), make_model()
    for model in (eager, compiled):
        kfitx.fit(model, x, y, strategy=Stepped(), epochs=2, shuffle=False, verbose=0, callbacks=[BatchLog()])
    assert weights_close(eager, compiled)


def test_mistakes_are_option_errors(make_model, xy, registry):
    x, y = xy
    with pytest.raises(OptionError, match=r"must be None .* or a callable.*Received: str"):
        kfitx.TrainStep("sgd")
    with pytest.raises(OptionError, match=r"`epoch_logs` must be 'metrics' or 'means'.*Received: 'mean'"):
        kfitx.TrainStep(epoch_logs="mean")
    with pytest.raises(OptionError, match=r"averages in Python.*compiled=False"):
        kfitx.fit(make_model(), x, y, strategy=Stepped(fn=tape_step, epoch_logs="means"), verbose=0)

    class Grouped(Stepped):
        def grouping(self):
            return 4

    with pytest.raises(OptionError, match=r"train one batch per call.*steps_per_execution=4.*grouping\(\)"):
        kfitx.fit(make_model(), x, y, strategy=Grouped(fn=tape_step, compiled=False), verbose=0)
    # A compiled step of one batch is run on each batch of a group (callbacks see the group).
    model = make_model()
    kfitx.fit(model, x, y, strategy=Grouped(fn=tape_step), batch_size=len(x) // 10, verbose=0)
    assert int(model.optimizer.iterations) == 10
    with pytest.raises(OptionError, match=r"validation_freq.*Received: 0"):
        kfitx.fit(make_model(), x, y, strategy=Stepped(), validation_split=0.2, validation_freq=0, verbose=0)


def test_the_models_own_step_is_grouped_as_the_plan_says(make_model, xy, registry):
    x, y = xy
    spy = Spy(["on_train_batch_end"])

    class Grouped(Stepped):
        def grouping(self):
            return 5

    memory, ours = make_model(), make_model()
    kfitx.fit(memory, x, y, strategy="memory", epochs=2, batch_size=20, shuffle=False, verbose=0)
    history = kfitx.fit(ours, x, y, strategy=Grouped(), epochs=2, batch_size=20, shuffle=False, verbose=0,
                        callbacks=[spy])
    assert history.kfitx["steps_per_execution"] == 5
    assert [c[1] for c in spy.calls] == [4, 9] * 2
    assert weights_close(memory, ours) and ours.steps_per_execution == 1


def test_a_model_compiled_with_xla_trains_as_model_fit_does(make_model, xy, registry):
    x, y = xy
    memory, ours = make_model(jit_compile=True), make_model(jit_compile=True)
    kfitx.fit(memory, x, y, strategy="memory", epochs=2, shuffle=False, verbose=0, callbacks=[BatchLog()])
    kfitx.fit(ours, x, y, strategy=Stepped(), epochs=2, shuffle=False, verbose=0, callbacks=[BatchLog()])
    assert weights_close(memory, ours)


def test_under_a_distribution_scope_the_models_own_step_is_keras_train_function(make_model, xy, registry,
                                                                               monkeypatch):
    from kfitx import _keras

    x, y = xy
    calls = []
    made = _keras.train_function
    monkeypatch.setattr(_keras, "train_function", lambda model: calls.append(1) or made(model))
    plain = make_model()
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        ours = make_model()
        counter = BatchLog()
        kfitx.fit(ours, x, y, strategy=Stepped(), epochs=2, shuffle=False, verbose=0, callbacks=[counter])
    plain.fit(x, y, epochs=2, shuffle=False, verbose=0)
    assert [b for b, _ in counter.ends] == list(range(7)) * 2 and len(calls) == 14
    assert weights_close(plain, ours)
