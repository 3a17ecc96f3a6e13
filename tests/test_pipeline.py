import numpy as np
import pytest

from kfitx.data import arrays, npy
from kfitx.data.arrays import _aligned_empty, array_dataset, as_tensor


def test_aligned_arrays_are_shared_not_copied():
    x = _aligned_empty((1000, 4), np.dtype("float32"))
    x[:] = 1.0
    tensor = as_tensor(x)
    x[0, 0] = 42.0
    assert float(tensor[0, 0]) == 42.0


def test_unaligned_or_float64_arrays_are_copied_once_and_cast_to_floatx():
    x = np.arange(12, dtype="float64").reshape(3, 4)
    tensor = as_tensor(x)
    assert tensor.dtype.name == "float32"
    np.testing.assert_array_equal(tensor.numpy(), x.astype("float32"))
    odd = np.zeros(1001, dtype=np.uint8)[1:]  # misaligned view
    assert as_tensor(odd).shape == (1000,)


def test_read_only_memory_map_is_served(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(20, dtype="float32").reshape(10, 2))
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_array_equal(as_tensor(x).numpy(), x)
    assert as_tensor(npy(tmp_path / "x.npy").x).shape == (10, 2)


def batches(dataset):
    return [b.numpy() if not isinstance(b, tuple) else b[0].numpy() for b in dataset]


def test_batches_cover_every_sample_once_per_epoch_with_a_partial_last_batch():
    x = np.arange(10, dtype="float32")[:, None]
    dataset = array_dataset(arrays(x, x), batch_size=4, shuffle=True, seed=1)
    assert int(dataset.cardinality()) == 3
    first, second = (np.concatenate(batches(dataset)).ravel() for _ in range(2))
    assert sorted(first) == sorted(second) == list(range(10))
    assert not np.array_equal(first, second)  # reshuffled each epoch
    again = np.concatenate(batches(array_dataset(arrays(x, x), batch_size=4, shuffle=True, seed=1))).ravel()
    np.testing.assert_array_equal(again, first)  # same seed, same order
    assert [len(b) for b in batches(dataset)] == [4, 4, 2]


@pytest.mark.parametrize("shuffle", [False, "batch"])
def test_no_shuffle_keeps_order_and_batch_shuffle_stays_within_batches(shuffle):
    x = np.arange(8, dtype="float32")[:, None]
    got = batches(array_dataset(arrays(x), batch_size=4, shuffle=shuffle, seed=3))
    assert [sorted(b.ravel()) for b in got] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    if not shuffle:
        assert [list(b.ravel()) for b in got] == [[0, 1, 2, 3], [4, 5, 6, 7]]
