"""Arrays held in RAM or memory-mapped from ``.npy`` files: :class:`ArraySource`, and its tf.data stream.

Keras's ``model.fit(x, y)`` turns numpy arrays into tensors (a copy) and then
slices them in a tf.data pipeline; measured here, it held two to three copies of
the data at its peak. :func:`array_dataset` builds the same vectorised pipeline (a
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
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from kfitx.data.base import InputForm, Reading, Source, flatten, keras_cuts, map_structure, train_dtype
from kfitx.data.weights import weighted
from kfitx.errors import DataError, message

if TYPE_CHECKING:
    from kfitx.data.epoch_iterator import EpochIterator

__all__ = ["ArraySource", "array_dataset", "as_tensor", "npy"]


def _as_array(leaf: Any, role: str) -> np.ndarray:
    if isinstance(leaf, np.ndarray):  # np.memmap included, never copied
        array = leaf
    elif hasattr(leaf, "__array__") or isinstance(leaf, (list, tuple)):
        array = np.asarray(leaf)
    else:
        raise DataError(
            message(
                f"`{role}` must be a numpy array (or a list / tuple / dict of arrays)",
                f"{type(leaf).__name__}",
                "Pass numpy arrays, or use kfitx.data.generator(...) / "
                "kfitx.data.dataset(...) for streamed data.",
            )
        )
    if array.dtype.kind not in "biuf":
        raise DataError(
            message(
                f"`{role}` must have a numeric or boolean dtype",
                f"dtype {array.dtype}",
                "Encode strings / objects as numbers before training "
                "(e.g. with keras.layers.StringLookup or np.asarray(..., dtype='float32')).",
            )
        )
    if array.ndim == 0:
        raise DataError(
            message(
                f"`{role}` must have a leading sample axis", "a 0-d scalar array",
                "Pass an array of shape (num_samples, ...).",
            )
        )
    return array


@dataclass(frozen=True, eq=False)
class ArraySource(Source):
    """Numpy arrays held in RAM or memory-mapped from ``.npy`` files.

    Args:
        x: An array, or a list / tuple / dict of arrays for multi-input models.
        y: Targets, same nesting rules; ``None`` for models with no targets.
        sample_weight: Optional per-sample weights.
    """

    kind: ClassVar[str] = "arrays"
    x: Any
    y: Any = None
    sample_weight: Any = None
    _length: int = field(init=False, repr=False, default=0)
    _form: InputForm = field(init=False, repr=False, default=InputForm.ARRAYS)

    def __post_init__(self) -> None:
        if self.x is None:
            raise DataError(message("`x` must be given", "None", "Pass the training inputs."))
        x = map_structure(lambda a: _as_array(a, "x"), self.x)
        y = None if self.y is None else map_structure(lambda a: _as_array(a, "y"), self.y)
        sw = (
            None
            if self.sample_weight is None
            else map_structure(lambda a: _as_array(a, "sample_weight"), self.sample_weight)
        )
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "sample_weight", sw)
        lengths = {}
        for role, part in (("x", x), ("y", y), ("sample_weight", sw)):
            if part is not None:
                for i, leaf in enumerate(flatten(part)):
                    lengths[role if len(flatten(part)) == 1 else f"{role}[{i}]"] = len(leaf)
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k}: {v}" for k, v in lengths.items())
            raise DataError(
                message(
                    "x, y and sample_weight must have the same number of samples "
                    "(first axis)",
                    shown,
                    "Check that the arrays belong together and are not transposed.",
                )
            )
        if not any(k == "x" or k.startswith("x[") for k in lengths):
            raise DataError(message("`x` must hold at least one array", f"an empty {type(x).__name__}",
                                    "Pass the training inputs: an array, or a list / dict of arrays."))
        n = next(iter(lengths.values()))
        if n == 0:
            raise DataError(
                message("The training data must not be empty", "0 samples",
                        "Pass at least one sample.")
            )
        object.__setattr__(self, "_length", n)
        leaves = [a for part in (x, y, sw) if part is not None for a in flatten(part)]
        object.__setattr__(self, "_form", InputForm.MEMORY_MAP if any(_mapped(a) for a in leaves) else InputForm.ARRAYS)

    @property
    def form(self) -> InputForm:
        """Arrays in RAM, or memory-mapped (some array is a map or a view of one): decided once, when made."""
        return self._form

    @property
    def num_samples(self) -> int:
        return self._length

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for part in self.arrays() for a in flatten(part))

    @property
    def resident_nbytes(self) -> int:
        """Bytes held in anonymous memory (memory-mapped arrays, and views of them, are not)."""
        return sum(a.nbytes for part in self.arrays() for a in flatten(part) if not _mapped(a))

    @property
    def memory_mapped(self) -> bool:
        """Some array is a memory map (or a view of one): its pages are read as batches need them."""
        return self._form is InputForm.MEMORY_MAP

    def arrays(self) -> tuple[Any, ...]:
        """``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``, as ``model.fit`` packs them."""
        if self.sample_weight is not None:
            return (self.x, self.y, self.sample_weight)
        return (self.x,) if self.y is None else (self.x, self.y)

    def slice(self, start: int, stop: int | None = None) -> ArraySource:
        """A source over samples ``[start:stop]``; views, never copies."""
        cut = lambda part: None if part is None else map_structure(lambda a: a[start:stop], part)
        return ArraySource(cut(self.x), cut(self.y), cut(self.sample_weight))

    def split(self, validation_split: float) -> tuple[ArraySource, ArraySource]:
        """Splits off the *last* ``validation_split`` fraction, as ``model.fit`` does (the fraction as the plan's
        one check of fit arguments took it, :func:`kfitx.plan.check_fit_args`)."""
        cut = int(self.num_samples * (1.0 - validation_split))
        if not 0 < cut < self.num_samples:
            raise DataError(
                message(
                    "`validation_split` must leave samples on both sides",
                    f"{validation_split} of {self.num_samples} samples",
                    "Use a larger data set or another split.",
                )
            )
        return self.slice(0, cut), self.slice(cut)

    def describe(self) -> str:
        shapes = ", ".join(f"{a.shape}:{a.dtype}" for a in flatten(self.x))
        return f"arrays of {self.num_samples} samples, x {shapes} ({self.nbytes / 2**20:.1f} MiB)"

    def with_sample_weight(self, sample_weight: Any) -> ArraySource:
        if self.sample_weight is not None:
            raise DataError(message("sample weights given once", "both in the data and as sample_weight=",
                                    "Pass them in one place."))
        return ArraySource(self.x, self.y, sample_weight)

    def as_dataset(self, reading: Reading) -> Any:
        # One pass per iteration (a new permutation each): with steps_per_epoch, model.fit's epoch rules
        # carry a pass into the next epoch, or end an epoch early, as for the arrays themselves. Where
        # steps_per_epoch is one pass exactly (the plan's steps_per_pass), a repeated stream gives the same
        # batches (a new permutation per pass) without restarting the pipeline each epoch.
        repeat = reading.steps is not None and reading.steps == reading.steps_per_pass
        dataset = array_dataset(self, reading.batch_size, shuffle=reading.shuffle, seed=reading.seed,
                                repeat=repeat, shuffle_buffer=reading.shuffle_buffer,
                                parallel_calls=reading.parallel_calls, deterministic=reading.deterministic)
        return weighted(dataset, reading.class_weight)

    def feed(self, reading: Reading, *, group: int = 1, pull: bool = False) -> EpochIterator:
        from kfitx.data.feed import DatasetFeed

        if keras_cuts(self, reading.runtime):  # Keras's adapter applies the class weights itself
            return DatasetFeed(KerasBatches(self, reading), reading, group, pull=True)
        return DatasetFeed(self.as_dataset(reading), reading, group, pull)


def _mapped(a: Any) -> bool:
    while isinstance(a, np.ndarray):
        if isinstance(a, np.memmap):
            return True
        a = a.base
    return False


class KerasBatches:
    """The arrays cut into numpy batches by Keras's own array adapter, as ``model.fit`` cuts them on JAX and torch.

    A "dataset" for :class:`kfitx.data.feed.DatasetFeed`: ``cardinality()`` batches
    a pass, and every ``iter()`` a new pass (shuffled with numpy's global generator,
    which the plan's seed sets, as Keras shuffles). ``class_weight`` becomes sample
    weights as Keras makes them. Nothing is copied up front for arrays of
    Keras's float type: each batch is a slice (a gather when shuffled). Memory maps
    do not come here (:meth:`ArraySource.feed`): Keras casts a non-``floatx`` one whole.
    """

    def __init__(self, source: ArraySource, reading: Reading) -> None:
        from kfitx import _keras

        self.adapter = _keras.array_adapter(source.x, source.y, source.sample_weight, batch_size=reading.batch_size,
                                            shuffle=reading.shuffle, class_weight=reading.class_weight)

    def cardinality(self) -> int:
        return int(self.adapter.num_batches)

    def __iter__(self) -> Any:
        return iter(self.adapter.get_numpy_iterator())


def npy(
    x: str | os.PathLike[str],
    y: str | os.PathLike[str] | None = None,
    sample_weight: str | os.PathLike[str] | None = None,
) -> ArraySource:
    """Memory-maps ``.npy`` files; nothing is read until a batch needs it.

    The files are opened copy-on-write (``mmap_mode="c"``): kfitx never writes,
    and the mapping can be shared with TensorFlow without a copy.
    """

    def load(path: Any, role: str) -> np.ndarray | None:
        if path is None:
            return None
        if not os.path.exists(path):
            raise DataError(message(f"`{role}` must be an existing .npy file", repr(str(path))))
        if os.path.isdir(path):
            raise DataError(message(f"`{role}` must be a .npy file", f"a directory, {str(path)!r}",
                                    "Pass the path of the file saved with np.save(path, array)."))
        try:
            return np.load(path, mmap_mode="c", allow_pickle=False)
        except (ValueError, OSError) as err:  # pickled object arrays, not .npy, unreadable, ...
            raise DataError(
                message(f"`{role}` must be a .npy file of a numeric array", f"{path}: {err}",
                        "Save it with np.save(path, array).")
            ) from err

    return ArraySource(load(x, "x"), load(y, "y"), load(sample_weight, "sample_weight"))


_ALIGN = 64  # TensorFlow's allocator alignment; an unaligned alias aborts the process.


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
    offset = (-raw.ctypes.data) % _ALIGN
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)


def as_tensor(array: np.ndarray) -> Any:
    """A ``tf.Tensor`` over ``array``: an alias when possible, else one aligned copy.

    Floats are cast to ``keras.config.floatx()`` as ``model.fit`` does. Read-only
    memory maps are re-opened copy-on-write so that they can be shared too.
    """
    import tensorflow as tf

    target = train_dtype(array.dtype)
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


def array_dataset(
    source: ArraySource,
    batch_size: int,
    shuffle: bool | str = False,
    seed: int | None = None,
    repeat: bool = False,
    *,
    shuffle_buffer: int | None = None,
    parallel_calls: int | None = None,
    deterministic: bool = True,
) -> Any:
    """A ``tf.data.Dataset`` of batches over ``source``, aliasing its arrays.

    Args:
        source: The arrays.
        batch_size: Samples per batch; the last batch may be smaller, as in ``model.fit``.
        shuffle: ``True`` for a new permutation each epoch, ``"batch"`` to shuffle
            only within batches (Keras's meaning), ``False`` for the stored order.
        seed: Seed of the permutations (reproducible across runs when set).
        repeat: Repeat forever (for an explicit ``steps_per_epoch``).
        shuffle_buffer: ``None`` for a full permutation per pass, else a shuffle
            buffer of that many samples (less memory for the order of huge data).
        parallel_calls: Batches gathered at once; ``None`` for tf.data's AUTOTUNE.
        deterministic: Keep the batch order.

    Returns:
        A dataset of ``x``, ``(x, y)`` or ``(x, y, sample_weight)`` batches.
    """
    import keras
    import tensorflow as tf

    tensors = keras.tree.lists_to_tuples(map_structure(as_tensor, source.arrays()))
    if len(tensors) == 1:
        tensors = tensors[0]
    n = source.num_samples
    full = n // batch_size
    rest = n - full * batch_size

    # The pipeline's functions branch on Python values only: autograph has nothing to convert, and
    # converting them cost ~0.4 s in a fresh process (the first fit of every trial process).
    @tf.autograph.experimental.do_not_convert
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

    if shuffle is True and shuffle_buffer is not None:  # a bounded buffer instead of a full permutation
        indices = (tf.data.Dataset.range(n).shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
                   .batch(batch_size))
    else:
        # One random seed per pass; a fixed `seed` makes the sequence of passes reproducible.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        indices = seeds.flat_map(batches_of_indices)
    if shuffle == "batch":
        indices = indices.map(tf.autograph.experimental.do_not_convert(lambda i: tf.random.shuffle(i, seed=seed)))

    @tf.autograph.experimental.do_not_convert
    def gather(i: Any) -> Any:
        return tf.nest.map_structure(lambda t: tf.gather(t, i, axis=0), tensors)

    dataset = indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE if parallel_calls is None else parallel_calls,
                          deterministic=None if deterministic else False)  # None: the options' (ordered)
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
