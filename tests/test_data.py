import numpy as np
import pytest

import kfitx
from kfitx import data
from kfitx.errors import DataError


def test_arrays_report_samples_and_bytes(xy):
    x, y = xy
    source = data.arrays(x, y)
    assert source.num_samples == 200
    assert source.nbytes == x.nbytes + y.nbytes
    assert source.num_batches(64) == 4
    assert source.arrays() == (source.x, source.y)


def test_arrays_are_not_copied(xy):
    x, y = xy
    source = data.arrays(x, y)
    assert source.x is x and source.y is y


def test_nested_inputs_and_sample_weights():
    x = {"a": np.zeros((10, 2)), "b": [np.zeros((10, 3)), np.ones((10, 1))]}
    source = data.arrays(x, np.zeros(10), np.ones(10))
    assert source.num_samples == 10
    assert len(source.arrays()) == 3


def test_mismatched_lengths_name_each_part():
    with pytest.raises(DataError, match=r"same number of samples.*Received: x: 10, y: 9"):
        data.arrays(np.zeros((10, 2)), np.zeros(9))


def test_empty_data_is_refused():
    with pytest.raises(DataError, match="must not be empty"):
        data.arrays(np.zeros((0, 2)), np.zeros(0))


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([{}, {}], dtype=object)])
def test_non_numeric_dtypes_are_refused(bad):
    with pytest.raises(DataError, match="numeric or boolean dtype"):
        data.arrays(bad, np.zeros(2))


def test_scalar_and_non_array_inputs_are_refused():
    with pytest.raises(DataError, match="leading sample axis"):
        data.arrays(np.float32(3.0), None)
    with pytest.raises(DataError, match="must be a numpy array"):
        data.arrays(object(), None)


def test_npy_is_memory_mapped(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(40, dtype="float32").reshape(10, 4))
    np.save(tmp_path / "y.npy", np.arange(10))
    source = data.npy(tmp_path / "x.npy", tmp_path / "y.npy")
    assert isinstance(source.x, np.memmap)
    assert source.num_samples == 10
    assert source.x[3, 1] == 13


def test_npy_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"existing \.npy file.*nope\.npy"):
        data.npy(tmp_path / "nope.npy")


def test_split_takes_the_last_fraction_as_views(xy):
    x, y = xy
    train, val = data.arrays(x, y).split(0.25)
    assert (train.num_samples, val.num_samples) == (150, 50)
    assert np.shares_memory(val.x, x)
    assert val.x[0, 0] == x[150, 0]


def test_generator_needs_a_factory_not_a_started_generator():
    def batches():
        yield np.zeros((2, 1)), np.zeros(2)

    with pytest.raises(DataError, match="factory.*lambda"):
        data.generator(batches())
    source = data.generator(batches, steps_per_epoch=None)
    assert len(list(source)) == 1 and len(list(source)) == 1  # fresh each time


def test_generator_steps_must_be_positive():
    with pytest.raises(DataError, match="positive int"):
        data.generator(lambda: iter([]), steps_per_epoch=0)


def test_dataset_sources():
    import keras
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((np.zeros((10, 2)), np.zeros(10))).batch(4)
    source = data.dataset(ds)
    assert isinstance(source, data.DatasetSource) and source.num_batches(0) == 3

    class Seq(keras.utils.PyDataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.zeros((2, 2)), np.zeros(2)

    assert isinstance(data.dataset(Seq()), data.PyDatasetSource)
    assert data.coerce(Seq()).num_batches(0) == 5
    with pytest.raises(DataError, match="tf.data.Dataset"):
        data.DatasetSource([1, 2])


def test_coerce_accepts_what_users_pass(xy, tmp_path):
    x, y = xy
    assert isinstance(data.coerce(x, y), data.ArraySource)
    assert data.coerce((x, y)).num_samples == 200
    assert data.coerce((x, y, np.ones(200))).sample_weight is not None
    source = data.arrays(x, y)
    assert data.coerce(source) is source
    assert isinstance(data.coerce(lambda: iter([])), data.GeneratorSource)
    np.save(tmp_path / "x.npy", x)
    assert isinstance(data.coerce(str(tmp_path / "x.npy")).x, np.memmap)


def test_coerce_refuses_ambiguous_input(xy):
    x, y = xy
    with pytest.raises(DataError, match=r"\(x, y\) or \(x, y, sample_weight\)"):
        data.coerce((x, y, y, y))
    with pytest.raises(DataError, match="y.*must be None"):
        data.coerce(lambda: iter([]), y)
    with pytest.raises(DataError, match="source holds them"):
        data.coerce(data.arrays(x, y), y)


def test_data_errors_are_value_errors():
    with pytest.raises(ValueError):
        kfitx.data.arrays(np.zeros((0, 1)))
