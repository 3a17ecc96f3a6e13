"""tf.data pipelines over array sources, without copying the arrays.

Keras's ``model.fit(x, y)`` turns numpy arrays into tensors (a copy) and then
slices them in a tf.data pipeline; measured here, it held two to three copies of
the data at its peak. This module builds the same vectorised pipeline (a
permutation per epoch, batches of indices, a parallel ``tf.gather``) over tensors
that *alias* the user's arrays through DLPack where TensorFlow can use them as
they are: C-contiguous, of the dtype Keras would train on, and 64-byte aligned.
Memory-mapped ``.npy`` files are (their header is padded to 64 bytes), so they
are never copied. Large arrays numpy allocates in RAM usually are *not* (malloc
puts them 16 bytes past a page boundary), and floats that are not ``floatx`` must
be cast as ``model.fit`` casts them: those get exactly one aligned copy. So the
pipeline holds at most one copy of the data (measured on 1 GiB: 1.04 copies,
against 2.06 for ``model.fit(x, y)``; see benchmarks/bench_memory.py).
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

from kfitx._util import map_leaves as _map
from kfitx.data import ArraySource, DatasetSource, GeneratorSource, PyDatasetSource, Source
from kfitx.errors import DataError, message

__all__ = ["array_dataset", "as_tensor", "source_dataset", "validation_dataset"]

_ALIGN = 64  # TensorFlow's allocator alignment; an unaligned alias aborts the process.


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
    offset = (-raw.ctypes.data) % _ALIGN
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)


def _target_dtype(array: np.ndarray) -> np.dtype:
    import keras

    if array.dtype.kind == "f" and array.dtype != np.dtype(keras.config.floatx()):
        return np.dtype(keras.config.floatx())  # as Keras's own array adapter does
    return array.dtype


def as_tensor(array: np.ndarray) -> Any:
    """A ``tf.Tensor`` over ``array``: an alias when possible, else one aligned copy.

    Floats are cast to ``keras.config.floatx()`` as ``model.fit`` does. Read-only
    memory maps are re-opened copy-on-write so that they can be shared too.
    """
    import tensorflow as tf

    target = _target_dtype(array)
    if (
        isinstance(array, np.memmap)
        and not array.flags.writeable
        and isinstance(array.base, mmap.mmap)
        and array.dtype == target
    ):
        array = np.memmap(array.filename, dtype=array.dtype, mode="c",
                          offset=array.offset, shape=array.shape,
                          order="F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C")
    shareable = (
        array.dtype == target
        and array.flags.c_contiguous
        and array.flags.writeable
        and array.ctypes.data % _ALIGN == 0
    )
    if not shareable:
        copy = _aligned_empty(array.shape, target)
        np.copyto(copy, array, casting="unsafe")
        array = copy
    try:
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    except (BufferError, TypeError, ValueError, tf.errors.InvalidArgumentError):
        return tf.convert_to_tensor(array)  # a dtype DLPack cannot carry: TF copies


def _tuples(structure: Any) -> Any:
    """Lists become tuples: tf.data treats a list as one stacked tensor."""
    if isinstance(structure, dict):
        return {k: _tuples(v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return tuple(_tuples(v) for v in structure)
    return structure


def array_dataset(
    source: ArraySource,
    batch_size: int,
    shuffle: bool | str = False,
    seed: int | None = None,
    repeat: bool = False,
) -> Any:
    """A ``tf.data.Dataset`` of batches over ``source``, aliasing its arrays.

    Args:
        source: The arrays.
        batch_size: Samples per batch; the last batch may be smaller, as in ``model.fit``.
        shuffle: ``True`` for a new permutation each epoch, ``"batch"`` to shuffle
            only within batches (Keras's meaning), ``False`` for the stored order.
        seed: Seed of the permutations (reproducible across runs when set).
        repeat: Repeat forever (for an explicit ``steps_per_epoch``).

    Returns:
        A dataset of ``x``, ``(x, y)`` or ``(x, y, sample_weight)`` batches.
    """
    import tensorflow as tf

    tensors = _tuples(_map(as_tensor, source.arrays()))
    if len(tensors) == 1:
        tensors = tensors[0]
    n = source.num_samples
    full = n // batch_size
    rest = n - full * batch_size

    def batches_of_indices(random_seed: Any) -> Any:
        indices = tf.range(n, dtype=tf.int64)
        if shuffle is True:
            indices = tf.random.experimental.stateless_shuffle(
                indices, seed=tf.stack([random_seed, tf.constant(0, tf.int64)])
            )
        parts = tf.data.Dataset.from_tensor_slices(tf.reshape(indices[: full * batch_size], [full, batch_size]))
        if rest:
            parts = parts.concatenate(tf.data.Dataset.from_tensors(indices[full * batch_size :]))
        return parts

    # One random seed per pass; a fixed `seed` makes the sequence of passes reproducible.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    indices = seeds.flat_map(batches_of_indices)
    if shuffle == "batch":
        indices = indices.map(lambda i: tf.random.shuffle(i, seed=seed))

    def gather(i: Any) -> Any:
        return tf.nest.map_structure(lambda t: tf.gather(t, i, axis=0), tensors)

    dataset = indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    # flat_map hides the length; state it so Keras knows the epoch's size (progress bar, no
    # "ran out of data" warning).
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(full + (1 if rest else 0)))
    if repeat:
        dataset = dataset.repeat()
    options = tf.data.Options()
    # As Keras does: skip graph rewrites that cost more than they save here.
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _generator_dataset(source: GeneratorSource) -> Any:
    """A tf.data dataset calling the generator factory afresh on every pass (each validation)."""
    import tensorflow as tf

    first = next(iter(source), None)
    if first is None:
        raise DataError(message("A validation generator that yields at least one batch", "an empty pass"))
    first = tuple(first) if isinstance(first, list) else first
    spec = tf.nest.map_structure(
        lambda a: tf.TensorSpec((None, *np.shape(a)[1:]), tf.as_dtype(np.asarray(a).dtype)), first)
    return tf.data.Dataset.from_generator(
        lambda: (tuple(b) if isinstance(b, list) else b for b in source), output_signature=spec)


def source_dataset(source: Source, batch_size: int, *, shuffle: bool | str = False, seed: int | None = None,
                   repeat: bool = False) -> Any:
    """What ``model.fit`` / ``model.evaluate`` can read for ``source``: a tf.data dataset or the PyDataset.

    Arrays go through :func:`array_dataset`; a tf.data dataset and a PyDataset are
    used as they are; a generator factory is called afresh on every pass.
    """
    if isinstance(source, ArraySource):
        return array_dataset(source, batch_size, shuffle=shuffle, seed=seed, repeat=repeat)
    if isinstance(source, (DatasetSource, PyDatasetSource)):
        return source.dataset.repeat() if repeat and isinstance(source, DatasetSource) else source.dataset
    if isinstance(source, GeneratorSource):
        dataset = _generator_dataset(source)
        return dataset.repeat() if repeat else dataset
    raise DataError(message("Data as arrays, a tf.data.Dataset, a PyDataset or a generator factory",
                            source.describe()))


def validation_dataset(plan: Any) -> Any:
    """The plan's validation data for ``model.fit`` / ``model.evaluate``, or ``None`` without any."""
    if plan.validation is None:
        return None
    return source_dataset(plan.validation, plan.validation_batch_size, repeat=plan.validation_steps is not None
                          and isinstance(plan.validation, GeneratorSource))
