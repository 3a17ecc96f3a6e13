"""kfitx.data.epochs: one iterator kept open across a fit's epochs gives each epoch the pass a new iterator gives."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import keras  # noqa: E402

from kfitx.augment import image_data_generator_class, map_dataset  # noqa: E402
from kfitx.data.arrays import ArraySource, array_dataset  # noqa: E402
from kfitx.data.epochs import across_epochs, pass_length  # noqa: E402


def _stream(x, y):
    arrays = array_dataset(ArraySource(x, y), 32, shuffle=True, seed=3)
    return map_dataset(arrays, image_data_generator_class()(rotation_range=20), seed=5)


def test_each_iteration_is_the_next_pass_as_a_new_iterator_reads_it():
    rng = np.random.default_rng(0)
    x, y = rng.random((100, 8, 8, 1)).astype("float32"), np.arange(100)
    held, fresh = across_epochs(_stream(x, y)), _stream(x, y)
    assert pass_length(held) == 4 and held.element_spec == fresh.element_spec
    passes = []
    for _ in range(3):
        got, expected = list(held), list(fresh)
        assert len(got) == len(expected) == 4
        for (gx, gy), (ex, ey) in zip(got, expected):
            np.testing.assert_array_equal(gy, ey)  # the same order each pass
            np.testing.assert_allclose(gx, ex)  # the same augmentations
        passes.append(np.concatenate([b[1] for b in got]))
    assert not np.array_equal(passes[0], passes[1])  # a new permutation each pass


def test_with_a_spare_pass_each_iteration_is_what_model_fit_reads_and_the_loop_too():
    """Keras's epoch iterator opens a pass at each epoch's end and another at the next one's start: epoch k reads
    iteration 2k of the stream. With spare_pass the held-open view gives the same, opening one spare pass each time."""
    rng = np.random.default_rng(1)
    x, y = rng.random((70, 8, 8, 1)).astype("float32"), np.arange(70)
    held, fresh = across_epochs(_stream(x, y), spare_pass=True), _stream(x, y)
    for _ in range(3):
        got, expected = list(held), list(fresh)
        list(fresh)  # the pass model.fit opens at the epoch's end and drops
        assert len(got) == len(expected) == 3
        for (gx, gy), (ex, ey) in zip(got, expected):
            np.testing.assert_array_equal(gy, ey)
            np.testing.assert_allclose(gx, ex)


def test_a_stream_of_unknown_length_is_left_as_it_is():
    endless = tf.data.Dataset.range(3).repeat()
    assert across_epochs(endless) is endless and pass_length("not a dataset") is None


def _fit(callbacks, monkeypatch):
    import kfitx.plan

    held = []

    def spied(dataset, **options):
        held.append(pass_length(dataset))
        return across_epochs(dataset, **options)

    monkeypatch.setattr(kfitx.plan, "across_epochs", spied)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile("sgd", "mse")
    x, y = np.zeros((40, 4), "float32"), np.zeros((40, 2), "float32")
    history = kfitx.fit(model, x, y, strategy="memory", epochs=3, batch_size=8, validation_data=(x[:24], y[:24]),
                        verbose=0, callbacks=callbacks)
    assert len(history.history["val_loss"]) == 3
    return held


def test_a_fit_reads_arrays_through_one_iterator_unless_a_callback_acts_per_batch(monkeypatch):
    assert _fit([], monkeypatch) == [5, 3]  # training and validation, one pass each epoch
    per_batch = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: None)
    assert _fit([per_batch], monkeypatch) == []  # it could end an epoch early: a new iterator each epoch
