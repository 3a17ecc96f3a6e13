"""The loop strategy runs its own loop and keeps model.fit's contract: callbacks, History, weights.

The rules every strategy owes (callback order, epochs, initial_epoch, validation, EarlyStopping, stop_training,
weights) are the conformance kit's, run for loop by tests/test_testing.py; BackupAndRestore is
tests/test_drop_in.py's, for memory and loop. The tests here are loop's own.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kfitx
from kfitx._keras import versions
from kfitx.errors import DataError, OptionError

from contract import BatchLog, Spy, weights_close


def assert_same_history(ours, theirs):
    assert ours.history.keys() == theirs.history.keys()
    assert ours.epoch == theirs.epoch
    for key in theirs.history:
        np.testing.assert_allclose(ours.history[key], theirs.history[key], rtol=1e-5)


def test_with_a_batch_callback_it_runs_ungrouped_and_reports_model_fits_history(make_model, xy, registry):
    # The callback order, History keys, validation and weights are the kit's rules (tests/test_testing.py runs
    # them all for loop); here: the grouping it reports, and the History's values, as model.fit's.
    x, y = xy
    h_plain = make_model().fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0,
                               validation_data=(x[:50], y[:50]))
    h_ours = kfitx.fit(make_model(), x, y, strategy="loop", epochs=2, batch_size=32, shuffle=False, verbose=0,
                       validation_data=(x[:50], y[:50]), callbacks=[Spy()])
    assert h_ours.kfitx["steps_per_execution"] == 1 and "Spy" in h_ours.kfitx["grouping"]
    assert_same_history(h_ours, h_plain)


@pytest.mark.parametrize("args", [
    {},
    {"validation_split": 0.2, "validation_freq": 2},
    {"class_weight": {0: 1.0, 1: 2.0, 2: 0.5}},
    {"sample_weight": np.linspace(0.5, 1.5, 200)},
    {"steps_per_epoch": 5, "batch_size": 16},
], ids=["plain", "validation_split", "class_weight", "sample_weight", "steps_per_epoch"])
def test_grouped_loop_matches_memory(make_model, xy, registry, args):
    x, y = xy
    memory, loop = make_model(), make_model()
    h_memory = kfitx.fit(memory, x, y, strategy="memory", epochs=3, shuffle=False, verbose=0, **args)
    h_loop = kfitx.fit(loop, x, y, strategy="loop", epochs=3, shuffle=False, verbose=0, **args)
    assert h_loop.kfitx["steps_per_execution"] == h_memory.kfitx["steps_per_execution"] > 1
    assert_same_history(h_loop, h_memory)
    assert int(loop.optimizer.iterations) == int(memory.optimizer.iterations)
    assert weights_close(memory, loop)
    assert loop.steps_per_execution == 1  # the grouping was for this fit only


def test_grouped_batch_callbacks_fire_once_per_group_within_the_epoch(make_model, xy, registry):
    x, y = xy
    spy = Spy(["on_train_batch_end"])
    history = kfitx.fit(make_model(), x, y, strategy="loop", epochs=1, batch_size=20, verbose=0,
                        callbacks=[spy], steps_per_execution=4)
    assert history.kfitx["steps_per_execution"] == 4
    # 10 batches in groups of 4 asked for: the last group reports 11, as model.fit reports it.
    assert [c[1] for c in spy.calls] == [3, 7, 11]


def test_user_step_gets_the_model_and_each_batch_and_its_logs_are_averaged(make_model, xy, registry):
    x, y = xy
    model = make_model()
    calls = []

    def step(got_model, batch):
        calls.append((got_model, batch))
        bx, by = batch
        return {"loss": float(len(bx)), "note": "text"}

    recorder = BatchLog()
    history = kfitx.fit(model, x, y, strategy="loop", step=step, epochs=2, batch_size=64, shuffle=False,
                        verbose=0, callbacks=[recorder], validation_data=(x[:50], y[:50]))
    assert len(calls) == 2 * 4 and all(m is model for m, _ in calls)
    sizes = [len(b[0]) for _, b in calls]
    assert sizes == [64, 64, 64, 8] * 2
    first_x, first_y = calls[0][1]
    np.testing.assert_allclose(first_x, x[:64].astype("float32"))
    np.testing.assert_array_equal(first_y, y[:64])
    # batch callbacks see what the step returned; epoch logs are sample-weighted means
    assert [logs["loss"] for _, logs in recorder.ends] == [64.0, 64.0, 64.0, 8.0] * 2
    expected = (3 * 64 * 64 + 8 * 8) / 200
    np.testing.assert_allclose(history.history["loss"], [expected, expected])
    assert history.history["note"] == ["text", "text"]
    assert set(history.history) == {"loss", "note", "val_loss", "val_accuracy"}  # validation: model's own step
    assert history.kfitx["step"] == "user" and history.kfitx["steps_per_execution"] == 1


#: Keras before 3.15 returns running metrics from ``train_on_batch`` (keras #22617, fixed in 3.15.0).
@pytest.mark.skipif(versions.keras_release() < (3, 15), reason="Keras < 3.15's train_on_batch returns running metrics")
def test_train_on_batch_step_reports_epoch_means_not_its_last_batch(make_model, xy, registry):
    # train_on_batch resets the metrics at every call; the History must still hold epoch means.
    x, y = xy
    memory, loop = make_model(), make_model()
    h_memory = kfitx.fit(memory, x, y, strategy="memory", epochs=2, shuffle=False, verbose=0)
    h_loop = kfitx.fit(loop, x, y, strategy="loop", epochs=2, shuffle=False, verbose=0,
                       step=lambda model, batch: model.train_on_batch(*batch, return_dict=True))
    assert_same_history(h_loop, h_memory)
    assert weights_close(memory, loop)


def test_gradient_tape_step_with_clipping_trains(make_model, xy, registry):
    x, y = xy

    @tf.function(reduce_retracing=True)
    def clipped(model, batch):
        bx, by = batch
        with tf.GradientTape() as tape:
            loss = model.compute_loss(bx, by, model(bx, training=True))
        grads, _ = tf.clip_by_global_norm(tape.gradient(loss, model.trainable_weights), 0.5)
        model.optimizer.apply_gradients(zip(grads, model.trainable_weights))
        return {"loss": loss}

    history = kfitx.fit(make_model(), x, y, strategy="loop", step=clipped, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_batch_hooks_see_every_batch_and_may_replace_it(make_model, xy, registry):
    x, y = xy
    seen = []

    def observe(batch, step_index, epoch):
        seen.append((step_index, epoch, len(batch)))
        return batch

    def zero_weights(batch, step_index, epoch):  # the model's own step then trains on nothing
        bx, by = batch
        return bx, by, tf.zeros(tf.shape(by)[0])

    model = make_model()
    before = model.get_weights()
    history = kfitx.fit(model, x, y, strategy="loop", batch_hooks=[observe, zero_weights], epochs=2,
                        batch_size=50, shuffle=False, verbose=0)
    assert seen == [(i, e, 2) for e in range(2) for i in range(4)]
    assert history.kfitx["batch_hooks"] == 2 and history.kfitx["step"] == "model"
    assert set(history.history) == {"loss", "accuracy"}
    assert all(np.allclose(a, b) for a, b in zip(before, model.get_weights()))


def test_batch_hook_and_step_mistakes_are_reported(make_model, xy, registry):
    x, y = xy
    with pytest.raises(OptionError, match=r"must return the batch.*Received: None from forgot.*return batch"):
        def forgot(batch, step_index, epoch):
            batch = batch[0], batch[1]

        kfitx.fit(make_model(), x, y, strategy="loop", batch_hooks=[forgot], verbose=0)
    with pytest.raises(OptionError, match=r"must return a dict of logs.*Received: float"):
        kfitx.fit(make_model(), x, y, strategy="loop", step=lambda model, batch: 0.5, verbose=0)
    with pytest.raises(OptionError, match=r"`step` must be None .* or a callable.*Received: str"):
        kfitx.fit(make_model(), x, y, strategy="loop", step="sgd")
    with pytest.raises(OptionError, match="batch_hooks"):
        kfitx.get_strategy("loop", batch_hooks=[1, 2])
    with pytest.raises(OptionError, match=r"steps_per_execution.*Received: steps_per_execution=4"):
        kfitx.get_strategy("loop", step=lambda m, b: {}, steps_per_execution=4)


def batches(x, y, size=40):
    for i in range(0, len(x), size):
        yield x[i:i + size], y[i:i + size]


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # Keras's evaluate, on a generator
def test_generator_source_gets_a_fresh_iterator_each_epoch_and_matches_memory(make_model, xy, registry):
    x, y = xy
    opened = []

    def factory():
        opened.append(1)
        return batches(x, y)

    memory, loop = make_model(), make_model()
    h_memory = kfitx.fit(memory, x, y, strategy="memory", epochs=3, batch_size=40, shuffle=False, verbose=0,
                         validation_data=(x[:80], y[:80]))
    h_loop = kfitx.fit(loop, kfitx.data.generator(factory), strategy="loop", epochs=3, verbose=0,
                       validation_data=lambda: batches(x[:80], y[:80]))  # a generator validates too
    assert len(opened) == 3
    assert_same_history(h_loop, h_memory)
    assert weights_close(memory, loop)


def test_infinite_generator_needs_steps_per_epoch(make_model, xy, registry):
    x, y = xy

    def forever():
        while True:
            yield from batches(x, y)

    model = make_model()
    history = kfitx.fit(model, forever, strategy="loop", epochs=2, steps_per_epoch=7, verbose=0)
    assert history.epoch == [0, 1] and int(model.optimizer.iterations) == 14
    with pytest.raises(DataError, match=r"must end.*endless_after=20.*steps_per_epoch=N"):
        kfitx.fit(make_model(), forever, strategy="loop", endless_after=20, verbose=0)
    with pytest.raises(OptionError, match=r"calls this option `endless_after`.*infinite_after=20.*endless_after=20"):
        kfitx.fit(make_model(), forever, strategy="loop", infinite_after=20, verbose=0)  # the old name
    # A finite factory shorter than steps_per_epoch is called again, as the generator strategy reads it.
    model = make_model()
    kfitx.fit(model, lambda: batches(x, y), strategy="loop", steps_per_epoch=9, epochs=2, verbose=0)
    assert int(model.optimizer.iterations) == 18
    with pytest.raises(DataError, match="at least one batch"):
        kfitx.fit(make_model(), lambda: iter([]), strategy="loop", verbose=0)

    class Endless(keras.utils.PyDataset):
        num_batches = None

        def __getitem__(self, i):
            return x[:40], y[:40]

    with pytest.raises(DataError, match=r"(infinite|endless) PyDataset.*steps_per_epoch"):
        kfitx.fit(make_model(), Endless(), strategy="loop", verbose=0)
    assert kfitx.fit(make_model(), Endless(), strategy="loop", steps_per_epoch=3, verbose=0).epoch == [0]


def test_dataset_and_pydataset_sources_match_memory(make_model, xy, registry):
    x, y = xy

    class Arrays(keras.utils.PyDataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return x[i * 40:(i + 1) * 40], y[i * 40:(i + 1) * 40]

    memory = make_model()
    h_memory = kfitx.fit(memory, x, y, strategy="memory", epochs=2, batch_size=40, shuffle=False, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y)).batch(40)
    for data in (dataset, Arrays()):
        loop = make_model()
        # shuffle=False: model.fit shuffles a PyDataset's batch order by default, and so does loop.
        history = kfitx.fit(loop, data, strategy="loop", epochs=2, shuffle=False, verbose=0)
        assert_same_history(history, h_memory)
        assert weights_close(memory, loop)


@pytest.mark.parametrize("verbose, shown", [(1, "7/7"), (2, "7/7 - "), (0, None)])
def test_verbose_prints_the_keras_progress_bar(make_model, xy, registry, capsys, verbose, shown):
    x, y = xy
    kfitx.fit(make_model(), x, y, strategy="loop", epochs=2, verbose=verbose)
    out = capsys.readouterr().out
    if shown is None:
        assert out == ""
    else:
        assert "Epoch 2/2" in out and shown in out and "16/7" not in out


@pytest.mark.parametrize("strategy", ["loop", "generator"])
def test_seeded_shuffle_gives_memorys_order_every_epoch(strategy, make_model, xy):
    """Same seed, shuffle on: the same permutation each epoch as memory (model.fit), so the same run."""
    x, y = xy
    reference = make_model()
    expected = kfitx.fit(reference, x, y, strategy="memory", epochs=4, seed=3, verbose=0)
    model = make_model()
    got = kfitx.fit(model, x, y, strategy=strategy, epochs=4, seed=3, verbose=0)
    np.testing.assert_allclose(got.history["loss"], expected.history["loss"], rtol=1e-6)
    assert weights_close(model, reference)
