"""The generator strategy: every source kind, finite and endless generators, exactness, faults."""

from __future__ import annotations

import os
import threading
import time
import warnings

import numpy as np
import pytest
from contract import BatchLog, weights_close

import kfitx
from kfitx.errors import DataError, OptionError, WorkerError

SAMPLES, BATCH = 96, 16


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")
    return x, y


def batches_of(x, y, *extra):
    for i in range(0, len(x), BATCH):
        yield (x[i:i + BATCH], y[i:i + BATCH], *(e[i:i + BATCH] for e in extra))


def test_generator_source_matches_memory_weights_and_history(make_model, data, no_leftovers):
    x, y = data
    by_memory = make_model()
    memory = kfitx.fit(by_memory, x, y, strategy="memory", epochs=3, batch_size=BATCH, shuffle=False,
                       verbose=0, validation_data=(x, y), seed=1)
    by_generator = make_model()
    streamed = kfitx.fit(by_generator, lambda: batches_of(x, y), strategy="generator", epochs=3,
                         verbose=0, validation_data=(x, y), seed=1)
    assert streamed.history.keys() == memory.history.keys()
    np.testing.assert_allclose(streamed.history["loss"], memory.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(streamed.history["val_loss"], memory.history["val_loss"], rtol=1e-5)
    assert weights_close(by_generator, by_memory)
    assert streamed.kfitx["strategy"] == "generator"


@pytest.mark.parametrize("kind", ["arrays", "npy", "tf.data", "PyDataset"])
def test_every_source_kind_trains_like_memory(kind, make_model, data, tmp_path, no_leftovers):
    import keras
    import tensorflow as tf

    x, y = data
    if kind == "arrays":
        source = kfitx.data.arrays(x, y)
    elif kind == "npy":
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", y)
        source = kfitx.data.npy(tmp_path / "x.npy", tmp_path / "y.npy")
    elif kind == "tf.data":
        source = kfitx.data.dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH))
    else:
        class Batches(keras.utils.PyDataset):
            def __len__(self):
                return SAMPLES // BATCH

            def __getitem__(self, i):
                return x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]

        source = kfitx.data.dataset(Batches(workers=2))
    reference = make_model()
    kfitx.fit(reference, x, y, strategy="memory", epochs=2, batch_size=BATCH, shuffle=False, verbose=0)
    model = make_model()
    history = kfitx.fit(model, source, strategy="generator", epochs=2, batch_size=BATCH, shuffle=False,
                        verbose=0)
    assert len(history.history["loss"]) == 2
    assert weights_close(model, reference)


def test_finite_generator_is_restarted_and_never_runs_out(make_model, data, no_leftovers):
    x, y = data
    starts = []

    def factory():
        starts.append(1)
        return batches_of(x, y)

    counter = BatchLog()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "ran out of data"
        history = kfitx.fit(make_model(), factory, strategy="generator", epochs=8, verbose=0,
                            callbacks=[counter])
    assert counter.counts == [SAMPLES // BATCH] * 8
    assert len(history.history["loss"]) == 8
    assert 8 <= len(starts) <= 10  # once per epoch, plus passes the worker started ahead (queue of 10)

    # steps_per_epoch longer than a pass: the generator is started again mid-epoch
    starts.clear()
    counter = BatchLog()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kfitx.fit(make_model(), factory, strategy="generator", epochs=3, steps_per_epoch=10, verbose=0,
                  callbacks=[counter])
    assert counter.counts == [10, 10, 10]
    assert len(starts) >= 5


def test_endless_generator_reads_steps_per_epoch_batches(make_model, data, no_leftovers):
    x, y = data
    read = []

    def endless():
        while True:
            for batch in batches_of(x, y):
                read.append(1)
                yield batch

    counter = BatchLog()
    kfitx.fit(make_model(), kfitx.data.generator(endless, steps_per_epoch=4), strategy="generator",
              epochs=3, verbose=0, callbacks=[counter])
    assert counter.counts == [4, 4, 4]
    assert len(read) <= 12 + 10 + 4  # trained on, plus at most the queue and the prefetch


def test_endless_generator_without_steps_is_a_clear_error(make_model, data, no_leftovers):
    x, y = data

    def endless():
        while True:
            yield from batches_of(x, y)

    started = time.monotonic()
    with pytest.raises(DataError, match="steps_per_epoch"):
        kfitx.fit(make_model(), endless, strategy="generator", epochs=1, verbose=0, endless_after=50)
    assert time.monotonic() - started < 30


def test_sample_weights_from_the_generator(make_model, data):
    x, y = data
    w = np.linspace(0.1, 1.0, SAMPLES).astype("float32")
    weighted = make_model()
    kfitx.fit(weighted, x, y, strategy="memory", sample_weight=w, epochs=2, batch_size=BATCH,
              shuffle=False, verbose=0)
    streamed = make_model()
    kfitx.fit(streamed, lambda: batches_of(x, y, w), strategy="generator", epochs=2, verbose=0)
    assert weights_close(streamed, weighted)


def test_generator_validation_data(make_model, data, no_leftovers):
    x, y = data
    history = kfitx.fit(make_model(), lambda: batches_of(x, y), strategy="generator", epochs=2,
                        verbose=0, validation_data=kfitx.data.generator(lambda: batches_of(x, y)))
    reference = kfitx.fit(make_model(), x, y, strategy="memory", epochs=2, batch_size=BATCH,
                          shuffle=False, verbose=0, validation_data=(x, y))
    np.testing.assert_allclose(history.history["val_loss"], reference.history["val_loss"], rtol=1e-5)


# -- faults: a KfitxError naming the batch, in bounded time, nothing left behind ------------------


def _fails(make_model, factory, error, match, **options):
    started = time.monotonic()
    with pytest.raises(error, match=match) as info:
        kfitx.fit(make_model(), factory, strategy="generator", epochs=3, verbose=0, **options)
    assert time.monotonic() - started < 30
    return info.value


@pytest.mark.parametrize("processes", [False, True], ids=["thread", "process"])
def test_a_generator_that_raises(make_model, data, processes, no_leftovers):
    x, y = data

    def broken():
        for i, batch in enumerate(batches_of(x, y)):
            if i == 3:
                raise ValueError("bad record 42")
            yield batch

    err = _fails(make_model, broken, DataError, r"ValueError\('bad record 42'\) at batch 3 of pass 1",
                 use_multiprocessing=processes)
    if not processes:
        assert isinstance(err.__cause__, ValueError)


def test_a_batch_of_the_wrong_shape(make_model, data, no_leftovers):
    x, y = data

    def ragged():
        for i, (bx, by) in enumerate(batches_of(x, y)):
            yield (bx[:, :5] if i == 2 else bx), by

    _fails(make_model, ragged, DataError, r"x must have shape \(batch, 8\).*shape \(16, 5\) at batch 2")


def test_a_batch_of_the_wrong_dtype(make_model, data, no_leftovers):
    x, y = data

    def floats_then_words():
        for i, (bx, by) in enumerate(batches_of(x, y)):
            yield bx, (by.astype(str) if i == 1 else by)

    _fails(make_model, floats_then_words, DataError, r"numeric arrays.*at batch 1")

    def ints_then_floats():
        for i, (bx, by) in enumerate(batches_of(x, y)):
            yield bx, (by + 0.5 if i == 1 else by)

    _fails(make_model, ints_then_floats, DataError, r"y must have dtype int64.*float32 at batch 1")


def test_a_worker_process_that_dies(make_model, data, no_leftovers):
    x, y = data

    def crashing():
        for i, batch in enumerate(batches_of(x, y)):
            if i == 2:
                os._exit(3)
            yield batch

    _fails(make_model, crashing, WorkerError, r"died \(exit code 3\)", use_multiprocessing=True)


def test_a_worker_process_killed_while_sending_a_batch(make_model, no_leftovers):
    big = np.zeros((64, 8), "float32"), np.zeros(64, "int64")

    def killed_mid_send():
        yield big
        threading.Timer(0.005, os.kill, (os.getpid(), 9)).start()
        while True:  # large batches: the kill lands inside a send
            yield np.zeros((400_000, 8), "float32"), np.zeros(400_000, "int64")

    _fails(make_model, killed_mid_send, WorkerError, r"died \(signal SIGKILL\)", use_multiprocessing=True)


def test_a_stuck_generator_times_out_and_is_stopped(make_model, data, no_leftovers):
    x, y = data

    def stuck():
        yield from list(batches_of(x, y))[:2]
        time.sleep(3600)

    _fails(make_model, stuck, WorkerError, r"timeout=1 s", use_multiprocessing=True, timeout=1.0)


def test_an_empty_generator(make_model, no_leftovers):
    _fails(make_model, lambda: iter([]), DataError, "at least one batch")


def test_options_are_checked():
    for bad in ({"timeout": 0}, {"workers": -1}, {"max_queue_size": 1.5}, {"use_multiprocessing": "yes"}):
        with pytest.raises(OptionError):
            kfitx.get_strategy("generator", **bad)


# -- compat.fit_generator: Keras 2 code -------------------------------------------------------------


def test_fit_generator_with_a_generator_object_and_steps(make_model, data, no_leftovers):
    x, y = data

    def endless(*arrays):
        while True:
            yield from batches_of(*arrays)

    history = kfitx.compat.fit_generator(make_model(), endless(x, y), steps_per_epoch=SAMPLES // BATCH,
                                         epochs=2, verbose=0, validation_data=(x, y))
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.history)
    w = np.ones(SAMPLES, "float32")
    history = kfitx.compat.fit_generator(make_model(), endless(x, y, w), steps_per_epoch=3, epochs=2,
                                         verbose=0)
    assert len(history.history["loss"]) == 2
    with pytest.raises(OptionError, match="steps_per_epoch"):
        kfitx.compat.fit_generator(make_model(), endless(x, y), epochs=1, verbose=0)


# -- augmentation: training batches only ------------------------------------------------------------


def _probe_model():
    """A model recording the last batch it trained on and the last it was evaluated on."""
    import keras

    class Probe(keras.layers.Layer):
        def build(self, shape):
            self.trained = self.add_weight(shape=(BATCH, *shape[1:]), initializer="zeros", trainable=False)
            self.evaluated = self.add_weight(shape=(BATCH, *shape[1:]), initializer="zeros", trainable=False)

        def call(self, x, training=False):
            (self.trained if training else self.evaluated).assign(x)
            return x

    keras.utils.set_random_seed(0)
    probe = Probe()
    model = keras.Sequential([keras.Input((8, 8, 1)), probe, keras.layers.Flatten(), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, probe


def _augmentations():
    import keras

    from kfitx.augment import image_data_generator_class

    ImageDataGenerator = image_data_generator_class()
    return {
        "callable": lambda bx, by: (bx[:, ::-1] + 1.0, by),
        "keras layers": [keras.layers.RandomRotation(0.2, seed=1), keras.layers.RandomZoom(0.2, seed=2)],
        "ImageDataGenerator": ImageDataGenerator(rotation_range=30, width_shift_range=0.2, shear_range=10,
                                                 zoom_range=0.2, horizontal_flip=True, fill_mode="nearest"),
    }


@pytest.mark.parametrize("kind", ["callable", "keras layers", "ImageDataGenerator"])
def test_augmentation_changes_training_batches_only(kind, no_leftovers):
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, BATCH)
    model, probe = _probe_model()
    history = kfitx.fit(model, x, y, strategy="generator", augment=_augmentations()[kind], batch_size=BATCH,
                        epochs=2, shuffle=False, verbose=0, validation_data=(x, y), seed=0)
    assert kind.lower() in history.kfitx["augment"].lower()
    trained, evaluated = np.asarray(probe.trained), np.asarray(probe.evaluated)
    assert not np.allclose(trained, x, atol=1e-3), "training batches were not augmented"
    np.testing.assert_array_equal(evaluated, x)  # validation never is


def test_augmentation_is_reproducible_with_a_seed():
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, BATCH)
    seen = []
    for _ in range(2):
        model, probe = _probe_model()
        kfitx.fit(model, x, y, strategy="generator", augment=_augmentations()["ImageDataGenerator"],
                  batch_size=BATCH, epochs=2, verbose=0, seed=7)
        seen.append(np.asarray(probe.trained))
    np.testing.assert_array_equal(seen[0], seen[1])


def test_an_augmentation_that_raises_names_the_batch(make_model, data, no_leftovers):
    x, y = data
    calls = []

    def flaky(bx, by):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("lost the GPU of my imagination")
        return bx, by

    started = time.monotonic()
    with pytest.raises(kfitx.AugmentationError, match=r"RuntimeError\('lost the GPU.*training batch \d+") as info:
        kfitx.fit(make_model(), x, y, strategy="generator", augment=flaky, batch_size=BATCH, epochs=2, verbose=0)
    assert time.monotonic() - started < 30
    assert isinstance(info.value.__cause__, RuntimeError)


def _live_iterators():
    import gc

    from tensorflow.python.data.ops import iterator_ops

    gc.collect()
    return sum(type(o) is iterator_ops.OwnedIterator for o in gc.get_objects())  # type(): no __class__ of lazy modules


@pytest.mark.parametrize("fails", ["generator", "augmentation"])
def test_a_failed_fit_leaves_no_tensorflow_iterator_alive(make_model, data, fails, no_leftovers):
    # tf.data keeps a pipeline's Python parts as long as its iterator, and the fault's traceback keeps the
    # iterator: kfitx must not close that cycle (one left at exit can deadlock the interpreter's teardown).
    x, y = data

    def broken():
        for i, batch in enumerate(batches_of(x, y)):
            if i == 2:
                raise ValueError("bad record")
            yield batch

    def flaky(bx, by):
        raise RuntimeError("bad augmentation")

    before = _live_iterators()
    with pytest.raises(kfitx.KfitxError):
        if fails == "generator":
            kfitx.fit(make_model(), broken, strategy="generator", epochs=2, verbose=0)
        else:
            kfitx.fit(make_model(), x, y, strategy="generator", augment=flaky, batch_size=BATCH, epochs=2,
                      verbose=0)
    assert _live_iterators() == before


def test_fit_generator_serves_image_data_generator_flow_from_its_arrays(no_leftovers):
    rng = np.random.default_rng(0)
    x = rng.random((4 * BATCH, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 4 * BATCH)
    aug = _augmentations()["ImageDataGenerator"]
    model, probe = _probe_model()
    history = kfitx.compat.fit_generator(model, aug.flow(x, y, batch_size=BATCH), steps_per_epoch=2, epochs=2,
                                         verbose=0, validation_data=(x[:BATCH], y[:BATCH]))
    assert "vectorised" in history.kfitx["augment"]
    assert len(history.history["val_loss"]) == 2
    np.testing.assert_array_equal(np.asarray(probe.evaluated), x[:BATCH])


@pytest.mark.parametrize("processes", [False, True], ids=["thread", "process"])
def test_a_factory_that_returns_no_iterator_gets_kfitxs_message(make_model, processes, no_leftovers):
    _fails(make_model, lambda: 5, DataError, r"^The generator factory must return an iterator\. Received: int",
           use_multiprocessing=processes)


def test_generator_batches_are_cast_to_floatx_as_the_array_pipeline_casts_them():
    import keras

    from kfitx.data._producer.checks import _normalise

    old = keras.config.floatx()
    try:
        keras.config.set_floatx("float64")
        x, y = _normalise((np.zeros((2, 3), "float32"), np.zeros(2, "int64")), lambda: "batch 0", "generator")
        assert (x.dtype, y.dtype) == (np.float64, np.int64)  # floats follow floatx, integers stay
    finally:
        keras.config.set_floatx(old)
    (x,) = _normalise((np.zeros((2, 3), "float64"),), lambda: "batch 0", "generator")
    assert x.dtype == np.float32
