"""Keras's data adapters, as ``model.fit`` makes and reads them (part of the boundary, :mod:`kfitx._keras`).

What :class:`kfitx.data.KerasSource` needs: the adapter for an input, which inputs they read, and their
batches in each backend's form. Each function is pinned in ``tests/test_keras_boundary.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar

from kfitx._keras.versions import internal

if TYPE_CHECKING:
    import tensorflow as tf
    from keras.src.trainers.data_adapters.data_adapter import DataAdapter

#: A structure of arrays or tensors, cut into two of the same structure.
_Arrays = TypeVar("_Arrays")

#: What needs Keras's data adapters, for the error a Keras without one raises.
FEATURE = "Inputs only Keras's data adapters read (generator objects, DataLoaders, Grain, ragged or sparse tensors)"
ADAPTERS = "keras.src.trainers.data_adapters"


def data_adapter(x: object, y: object, sample_weight: object, *, batch_size: int | None, steps: int | None,
                 shuffle: bool | str, class_weight: Mapping[int, float] | None) -> DataAdapter:
    """Keras's data adapter for what ``model.fit(x, y, ...)`` is given (``get_data_adapter``, as ``fit`` calls it)."""
    get_data_adapter = internal(ADAPTERS, "get_data_adapter", FEATURE)
    return get_data_adapter(x, y, sample_weight, batch_size=batch_size, steps_per_epoch=steps, shuffle=shuffle,
                            class_weight=class_weight)


def adapts(x: object) -> bool:
    """Whether Keras's data adapters read ``x`` as a stream: a tf.data or distributed dataset, a torch
    ``DataLoader``, a Grain dataset or loader, a Python generator."""
    import types

    names = ("is_tf_dataset", "is_torch_dataloader", "is_grain_dataset")
    checks = [internal(ADAPTERS, name, FEATURE) for name in names]
    return isinstance(x, types.GeneratorType) or any(check(x) for check in checks)


def array_like(arrays: object) -> bool:
    """Whether Keras's array adapter slices ``arrays`` (``can_convert_arrays``: numpy, tensors, ragged, sparse, ...)."""
    can_convert_arrays = internal(f"{ADAPTERS}.array_data_adapter", "can_convert_arrays", FEATURE)
    return bool(can_convert_arrays(arrays))


def input_kind(x: object) -> str:
    """What a stream Keras reads is, for messages."""
    import types

    if isinstance(x, types.GeneratorType):
        return "generator"
    if internal(ADAPTERS, "is_torch_dataloader", FEATURE)(x):
        return "torch DataLoader"
    if internal(ADAPTERS, "is_grain_dataset", FEATURE)(x):
        return "Grain dataset"
    if internal(ADAPTERS, "is_tf_dataset", FEATURE)(x):
        return "distributed dataset" if "distribute" in type(x).__module__ else "tf.data.Dataset"
    return type(x).__name__


def sparse_or_ragged(leaf: object) -> bool:
    """Whether ``leaf`` is a ragged or sparse tensor (TensorFlow, JAX or SciPy), which Keras feeds as it is."""
    names = ("is_tensorflow_ragged", "is_tensorflow_sparse", "is_jax_sparse", "is_scipy_sparse")
    return any(internal(f"{ADAPTERS}.data_adapter_utils", name, FEATURE)(leaf) for name in names)


def is_sparse(leaf: object) -> bool:
    """Whether ``leaf`` is a sparse tensor (TensorFlow, JAX or SciPy), what Keras refuses to group steps over on
    JAX (``super_batch_iterator``, Keras 3.16)."""
    names = ("is_tensorflow_sparse", "is_jax_sparse", "is_scipy_sparse")
    return any(internal(f"{ADAPTERS}.data_adapter_utils", name, FEATURE)(leaf) for name in names)


def train_validation_split(arrays: _Arrays, validation_split: float) -> tuple[_Arrays, _Arrays]:
    """``model.fit``'s ``validation_split`` of tensors Keras slices (the last fraction for validation)."""
    split = internal(f"{ADAPTERS}.array_slicing", "train_validation_split",
                     "validation_split on ragged, sparse or string tensors")
    return split(arrays, validation_split=validation_split)


def backend_batches(adapter: DataAdapter, backend: str) -> Iterable[object]:
    """A data adapter's batches in the form ``model.fit``'s epoch iterator reads them on ``backend``:
    JAX arrays (sparse ones as JAX ``BCOO``) on JAX, torch tensors on torch, numpy elsewhere."""
    if backend == "jax":
        return adapter.get_jax_iterator()
    if backend == "torch":
        return adapter.get_torch_dataloader()
    return adapter.get_numpy_iterator()


def adapter_dataset(adapter: DataAdapter) -> tf.data.Dataset:
    """A data adapter's ``tf.data`` stream, of the length the adapter knows (one pass per iteration)."""
    import tensorflow as tf

    dataset = adapter.get_tf_dataset()
    if isinstance(dataset, tf.data.Dataset) and adapter.num_batches is not None and int(dataset.cardinality()) < 0:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(int(adapter.num_batches)))
    return dataset
