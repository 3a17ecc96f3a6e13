"""The data package: one adapter per input kind, the same batches from each, and one error boundary."""

from __future__ import annotations

import numpy as np
import pytest
from contract import build_model

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import kfitx  # noqa: E402
from kfitx.data import Reading, Source  # noqa: E402
from kfitx.data.base import train_dtype  # noqa: E402
from kfitx.errors import DataError, KfitxError, WorkerError  # noqa: E402

N, BATCH = 40, 8


def xy():
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, 4)).astype("float64"), rng.integers(0, 3, N)


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // BATCH

    def __getitem__(self, i):
        return self.x[i * BATCH:(i + 1) * BATCH], self.y[i * BATCH:(i + 1) * BATCH]


def every_kind():
    x, y = xy()

    def factory():
        for i in range(0, N, BATCH):
            yield x[i:i + BATCH], y[i:i + BATCH]

    return {
        "arrays": kfitx.data.coerce(x, y),
        "generator": kfitx.data.coerce(factory),
        "tf.data": kfitx.data.coerce(tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)),
        "PyDataset": kfitx.data.coerce(Batches(x, y)),
    }


def test_each_kind_has_its_adapter_and_says_what_it_is():
    kinds = every_kind()
    form = kfitx.data.InputForm
    assert {name: (s.kind, s.in_memory, s.form) for name, s in kinds.items()} == {
        "arrays": ("arrays", True, form.ARRAYS), "generator": ("generator", False, form.PYTHON_BATCHES),
        "tf.data": ("tf.data", False, form.TF_DATA), "PyDataset": ("PyDataset", False, form.PYDATASET)}
    assert {type(s).__module__ for s in kinds.values()} == {
        "kfitx.data.arrays", "kfitx.data.generators", "kfitx.data.tfdata", "kfitx.data.pydataset"}


def test_each_kind_says_its_cardinality_and_last_batch_as_keras_adapters_do():
    kinds = every_kind()
    assert {name: s.num_batches(BATCH) for name, s in kinds.items()} == {
        "arrays": N // BATCH, "generator": None, "tf.data": N // BATCH, "PyDataset": N // BATCH}
    arrays = kinds["arrays"]
    assert (arrays.has_partial_batch(BATCH), arrays.partial_batch_size(BATCH)) == (False, None)
    assert (arrays.num_batches(16), arrays.has_partial_batch(16), arrays.partial_batch_size(16)) == (3, True, 8)
    assert kinds["generator"].has_partial_batch(BATCH) is None  # a stream's batches are what it yields


def test_every_kind_gives_the_same_batches_as_a_tf_data_stream_cast_as_keras_casts(no_leftovers):
    x, y = xy()
    for name, source in every_kind().items():
        with kfitx.data.boundary():
            batches = list(source.as_dataset(Reading(batch_size=BATCH)))
        assert len(batches) == N // BATCH, name
        got_x = np.concatenate([b[0].numpy() for b in batches])
        got_y = np.concatenate([b[1].numpy() for b in batches])
        np.testing.assert_allclose(got_x, x.astype("float32"), err_msg=name)
        np.testing.assert_array_equal(got_y, y, err_msg=name)
        if name != "tf.data":  # a tf.data dataset is the user's: Keras casts it in the step
            assert batches[0][0].dtype == tf.float32, name
    assert not no_leftovers.now()  # at once, not after a wait


def test_every_kind_feeds_a_loop_one_epoch_at_a_time():
    x, _ = xy()
    for name, source in every_kind().items():
        feed = source.feed(Reading(batch_size=BATCH), group=1, pull=True)
        firsts = [np.asarray(data[0][0])[0] for _, _, data in feed.epoch(0)]
        assert len(firsts) == N // BATCH, name
        np.testing.assert_allclose(firsts[1], x[BATCH], rtol=1e-6, err_msg=name)


def test_the_one_cast_rule_is_floatx():
    assert train_dtype("float64") == np.float32 and train_dtype("float16") == np.float32
    assert train_dtype("int64") == np.int64 and train_dtype("bool") == np.bool_


def test_worker_settings_come_from_the_fit_then_the_pydataset_then_the_defaults():
    x, y = xy()
    own = kfitx.data.coerce(Batches(x, y, workers=3, max_queue_size=4))
    assert Reading().worker(own) == {"workers": 3, "use_multiprocessing": False, "max_queue_size": 4}
    assert Reading(workers=2, use_multiprocessing=True).worker(own) == {
        "workers": 2, "use_multiprocessing": True, "max_queue_size": 4}
    assert Reading().worker(kfitx.data.coerce(lambda: iter([(x, y)]))) == {
        "workers": 1, "use_multiprocessing": False, "max_queue_size": 10}
    assert Reading().worker(kfitx.data.coerce(x, y)) is None  # no worker reads arrays


def test_a_stream_read_outside_a_boundary_says_how_to_open_one(no_leftovers):
    source = every_kind()["generator"]
    with pytest.raises(KfitxError, match=r"kfitx.data.boundary\(\)"):
        source.as_dataset(Reading())
    assert not no_leftovers.now()  # at once, not after a wait


def test_the_boundary_stops_the_workers_it_owns_however_the_body_ends(no_leftovers):
    source = every_kind()["generator"]
    with kfitx.data.boundary():
        iter(source.as_dataset(Reading(steps=3)))  # a worker running ahead, never read to the end
        assert any(item.startswith("thread kfitx") for item in no_leftovers.now())
    assert not no_leftovers.now()  # at once, not after a wait
    with pytest.raises(RuntimeError, match="user code"), kfitx.data.boundary():
        source.as_dataset(Reading(steps=3))
        raise RuntimeError("user code")
    assert not no_leftovers.now()  # at once, not after a wait


def test_a_reported_fault_is_what_the_fit_raises_even_when_tensorflow_hid_it():
    fault = WorkerError("the worker died")
    with pytest.raises(WorkerError, match="the worker died") as info:
        with kfitx.data.boundary() as boundary:
            boundary.report(fault)
            boundary.report(DataError("a later one"))  # the first fault wins
            raise tf.errors.UnknownError(None, None, "a copy of it, deep in a graph")
    assert info.value is fault
    assert isinstance(info.value.__cause__, tf.errors.UnknownError)
    with pytest.raises(WorkerError), kfitx.data.boundary() as boundary:
        boundary.report(fault)  # a body that ended normally still raises what was reported
    with pytest.raises(KeyboardInterrupt), kfitx.data.boundary() as boundary:
        boundary.report(fault)
        raise KeyboardInterrupt  # an interrupt is never replaced


def test_a_custom_source_without_an_adapter_is_a_data_error_naming_it():
    class Custom(Source):
        kind = "custom"

    for read in (lambda s: s.as_dataset(Reading()), lambda s: s.feed(Reading()),
                 lambda s: s.split(0.2), lambda s: s.with_sample_weight(np.ones(3))):
        with pytest.raises(DataError, match="custom"):
            read(Custom())


def small_model():
    return build_model(4, hidden=None, softmax=True, optimizer="sgd", metrics=None)


@pytest.mark.parametrize("strategy", ["memory", "generator", "loop"])
def test_every_strategy_accepts_every_kind_of_validation_data_with_the_same_result(strategy, no_leftovers):
    x, y = xy()
    losses = {}
    for name, validation in every_kind().items():
        data = validation.dataset if name in ("tf.data", "PyDataset") else (
            validation.factory if name == "generator" else (x, y))
        history = kfitx.fit(small_model(), x, y, strategy=strategy, epochs=1, batch_size=BATCH, shuffle=False,
                            validation_data=data, verbose=0)
        losses[name] = history.history["val_loss"][0]
    assert np.allclose(list(losses.values()), losses["arrays"], rtol=1e-5), losses
    assert not no_leftovers.now()  # at once, not after a wait


@pytest.mark.parametrize("strategy", ["generator", "loop"])
def test_a_long_pass_without_steps_is_told_early_and_a_finite_one_still_trains(strategy, monkeypatch,
                                                                             no_leftovers):
    from kfitx.data import epoch_iterator

    monkeypatch.setattr(epoch_iterator, "ENDLESS_WARNING", 50)  # 10,000 batches by default; the worker's too
    x, y = xy()

    def long_but_finite():
        for _ in range(80):
            yield x[:4], y[:4]

    with pytest.warns(RuntimeWarning, match=r"yielded 50 batches in one pass without ending.*steps_per_epoch=N"):
        history = kfitx.fit(small_model(), long_but_finite, strategy=strategy, epochs=1, verbose=0)
    assert len(history.epoch) == 1
    assert not no_leftovers.now()  # at once, not after a wait
