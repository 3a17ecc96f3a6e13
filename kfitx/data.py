"""Data sources: what the data is, independent of how a strategy feeds it.

* :class:`ArraySource` -- numpy arrays (``np.memmap`` / ``.npy`` files included),
  x, optional y and optional sample weights; x and y may be nested (lists, tuples
  or dicts of arrays) for multi-input / multi-output models, as in ``model.fit``.
* :class:`GeneratorSource` -- a *factory* returning an iterator of batches, so
  every epoch, trial and execution gets a fresh one; finite or infinite.
* :class:`DatasetSource` -- a ``tf.data.Dataset``.
* :class:`PyDatasetSource` -- a ``keras.utils.PyDataset``.

:func:`coerce` turns what users pass into a source, and the validation (lengths
match, not empty, numeric dtypes) lives here, once. TensorFlow and Keras are
never imported by this module: a tf.data or Keras object can only exist if its
library is already imported, so we look them up in ``sys.modules``.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from kfitx._util import flatten as _flatten
from kfitx._util import is_instance as _is_instance
from kfitx._util import map_leaves as _map
from kfitx.errors import DataError, message

__all__ = [
    "ArraySource",
    "DatasetSource",
    "GeneratorSource",
    "PyDatasetSource",
    "Source",
    "arrays",
    "coerce",
    "dataset",
    "generator",
    "npy",
]


class Source:
    """Base of every data source. Subclasses are small frozen dataclasses."""

    kind: ClassVar[str] = "source"

    @property
    def num_samples(self) -> int | None:
        """Number of samples, or ``None`` when unknown (streams)."""
        return None

    @property
    def nbytes(self) -> int | None:
        """Size of the data in bytes where knowable, else ``None``."""
        return None

    def steps(self, batch_size: int) -> int | None:
        """Batches in one pass at ``batch_size``, or ``None`` if unknown."""
        n = self.num_samples
        return None if n is None else math.ceil(n / batch_size)

    def describe(self) -> str:
        """One line for messages and logs."""
        size = self.nbytes
        return self.kind + ("" if size is None else f" ({size / 2**20:.1f} MiB)")


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

    def __post_init__(self) -> None:
        if self.x is None:
            raise DataError(message("`x` must be given", "None", "Pass the training inputs."))
        x = _map(lambda a: _as_array(a, "x"), self.x)
        y = None if self.y is None else _map(lambda a: _as_array(a, "y"), self.y)
        sw = (
            None
            if self.sample_weight is None
            else _map(lambda a: _as_array(a, "sample_weight"), self.sample_weight)
        )
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "sample_weight", sw)
        lengths = {}
        for role, part in (("x", x), ("y", y), ("sample_weight", sw)):
            if part is not None:
                for i, leaf in enumerate(_flatten(part)):
                    lengths[role if len(_flatten(part)) == 1 else f"{role}[{i}]"] = len(leaf)
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
        n = next(iter(lengths.values()))
        if n == 0:
            raise DataError(
                message("The training data must not be empty", "0 samples",
                        "Pass at least one sample.")
            )
        object.__setattr__(self, "_length", n)

    @property
    def num_samples(self) -> int:
        return self._length

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for part in self.arrays() for a in _flatten(part))

    def arrays(self) -> tuple[Any, ...]:
        """``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``, as ``model.fit`` packs them."""
        if self.sample_weight is not None:
            return (self.x, self.y, self.sample_weight)
        return (self.x,) if self.y is None else (self.x, self.y)

    def slice(self, start: int, stop: int | None = None) -> ArraySource:
        """A source over samples ``[start:stop]``; views, never copies."""
        cut = lambda part: None if part is None else _map(lambda a: a[start:stop], part)
        return ArraySource(cut(self.x), cut(self.y), cut(self.sample_weight))

    def split(self, validation_split: float) -> tuple[ArraySource, ArraySource]:
        """Splits off the *last* ``validation_split`` fraction, as ``model.fit`` does."""
        if not 0.0 < validation_split < 1.0:
            raise DataError(
                message("`validation_split` must be a float in (0, 1)", validation_split)
            )
        cut = int(self.num_samples * (1.0 - validation_split))
        if cut in (0, self.num_samples):
            raise DataError(
                message(
                    "`validation_split` must leave samples on both sides",
                    f"{validation_split} of {self.num_samples} samples",
                    "Use a larger data set or another split.",
                )
            )
        return self.slice(0, cut), self.slice(cut)

    def describe(self) -> str:
        shapes = ", ".join(f"{a.shape}:{a.dtype}" for a in _flatten(self.x))
        return f"arrays of {self.num_samples} samples, x {shapes} ({self.nbytes / 2**20:.1f} MiB)"


@dataclass(frozen=True, eq=False)
class GeneratorSource(Source):
    """Batches from a factory that returns a fresh iterator each time it is called.

    Each batch is ``x``, ``(x, y)`` or ``(x, y, sample_weight)``, as Keras 2's
    ``fit_generator`` expected. A finite iterator defines one epoch; an infinite
    one needs ``steps_per_epoch``.

    Args:
        factory: A zero-argument callable (a generator function, a lambda
            around one, a class) returning an iterator of batches.
        steps_per_epoch: Batches per epoch; ``None`` for "until the iterator ends".
    """

    kind: ClassVar[str] = "generator"
    factory: Callable[[], Iterator[Any]]
    steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        if inspect.isgenerator(self.factory) or isinstance(self.factory, Iterator):
            raise DataError(
                message(
                    "kfitx.data.generator needs a factory that returns a fresh iterator "
                    "(a generator *function*), so that every epoch and every trial starts anew",
                    f"an already-started {type(self.factory).__name__} object",
                    "Pass the function instead of calling it, e.g. "
                    "kfitx.data.generator(lambda: my_gen(x, y)).",
                )
            )
        if not callable(self.factory):
            raise DataError(
                message("`factory` must be callable and return an iterator",
                        type(self.factory).__name__)
            )
        if self.steps_per_epoch is not None and (
            not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1
        ):
            raise DataError(
                message("`steps_per_epoch` must be a positive int or None",
                        repr(self.steps_per_epoch))
            )

    def steps(self, batch_size: int) -> int | None:
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[Any]:
        iterator = self.factory()
        try:
            return iter(iterator)
        except TypeError:
            raise DataError(
                message("The generator factory must return an iterator",
                        type(iterator).__name__)
            ) from None


@dataclass(frozen=True, eq=False)
class DatasetSource(Source):
    """A ``tf.data.Dataset`` yielding batches."""

    kind: ClassVar[str] = "tf.data"
    dataset: Any

    def __post_init__(self) -> None:
        if not _is_instance(self.dataset, "tensorflow", "data.Dataset"):
            raise DataError(message("Expected a tf.data.Dataset", type(self.dataset).__name__))

    def steps(self, batch_size: int) -> int | None:
        cardinality = int(self.dataset.cardinality())
        return cardinality if cardinality >= 0 else None


@dataclass(frozen=True, eq=False)
class PyDatasetSource(Source):
    """A ``keras.utils.PyDataset`` (its workers / multiprocessing settings are its own)."""

    kind: ClassVar[str] = "PyDataset"
    dataset: Any

    def __post_init__(self) -> None:
        if not _is_instance(self.dataset, "keras", "utils.PyDataset"):
            raise DataError(message("Expected a keras.utils.PyDataset", type(self.dataset).__name__))

    def steps(self, batch_size: int) -> int | None:
        return self.dataset.num_batches


def arrays(x: Any, y: Any = None, sample_weight: Any = None) -> ArraySource:
    """Arrays in RAM (or memory-mapped). See :class:`ArraySource`."""
    return ArraySource(x, y, sample_weight)


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
        try:
            return np.load(path, mmap_mode="c", allow_pickle=False)
        except ValueError as err:  # pickled object arrays, not .npy, ...
            raise DataError(
                message(f"`{role}` must be a .npy file of a numeric array", f"{path}: {err}",
                        "Save it with np.save(path, array).")
            ) from err

    return ArraySource(load(x, "x"), load(y, "y"), load(sample_weight, "sample_weight"))


def generator(factory: Callable[[], Iterator[Any]], steps_per_epoch: int | None = None) -> GeneratorSource:
    """Batches from a generator factory. See :class:`GeneratorSource`."""
    return GeneratorSource(factory, steps_per_epoch)


def dataset(ds: Any) -> DatasetSource | PyDatasetSource:
    """Wraps a ``tf.data.Dataset`` or a ``keras.utils.PyDataset``."""
    if _is_instance(ds, "keras", "utils.PyDataset"):
        return PyDatasetSource(ds)
    return DatasetSource(ds)


def coerce(data: Any, y: Any = None, sample_weight: Any = None) -> Source:
    """Turns what a user passes into a :class:`Source`.

    Accepted: a source; ``x`` with optional ``y`` / ``sample_weight``; a tuple
    ``(x, y)`` or ``(x, y, sample_weight)`` (as Keras's ``validation_data``);
    a path to a ``.npy`` file; a generator factory; a tf.data.Dataset; a PyDataset.

    Raises:
        DataError: for anything else, saying what would have been accepted.
    """
    if isinstance(data, Source):
        if y is not None or sample_weight is not None:
            raise DataError(message("`y` and `sample_weight` must be None when the data is a "
                                    "kfitx source (the source holds them)", f"y={type(y).__name__}"))
        return data
    if isinstance(data, (str, os.PathLike)):
        return npy(data, y, sample_weight)
    stream = _is_instance(data, "tensorflow", "data.Dataset") or _is_instance(
        data, "keras", "utils.PyDataset"
    )
    if stream or callable(data) or inspect.isgenerator(data) or isinstance(data, Iterator):
        if y is not None:
            raise DataError(message("`y` must be None when the data is a stream (it yields its own targets)",
                                    type(y).__name__, "Yield (x, y) batches from the stream instead."))
        if stream:
            return dataset(data)
        return generator(data)
    if isinstance(data, tuple) and y is None and sample_weight is None and len(data) in (2, 3):
        return ArraySource(*data)
    if isinstance(data, tuple) and len(data) not in (2, 3) and y is None:
        raise DataError(message("A tuple of data must be (x, y) or (x, y, sample_weight)",
                                f"a tuple of {len(data)} items",
                                "Pass multiple inputs as a list or a dict: ([x1, x2], y)."))
    return ArraySource(data, y, sample_weight)
