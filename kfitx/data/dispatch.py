"""What users pass, turned into a source: :func:`coerce`, and the constructors by kind.

:func:`coerce` is the one place a source's type is tested: everything downstream asks the
source's :class:`kfitx.data.InputForm` (the plan carries it). Plugins' sources come in through
``sources``, the ``kfitx_sources`` hook the layers above pass down (this layer knows no registry).
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from kfitx.data.arrays import ArraySource, npy
from kfitx.data.base import Source
from kfitx.data.generators import GeneratorSource
from kfitx.data.keras_input import KerasSource
from kfitx.data.pydataset import PyDatasetSource
from kfitx.data.tfdata import DatasetSource
from kfitx.errors import DataError, PluginError, message
from kfitx.runtime.lazy import is_instance as _is_instance

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

__all__ = ["arrays", "coerce", "dataset", "generator"]

_T = TypeVar("_T")


def arrays(x: Any, y: Any = None, sample_weight: Any = None) -> ArraySource:
    """Arrays in RAM (or memory-mapped). See :class:`ArraySource`."""
    return ArraySource(x, y, sample_weight)


def generator(factory: Callable[[], Iterator[object]], steps_per_epoch: int | None = None) -> GeneratorSource:
    """Batches from a generator factory. See :class:`GeneratorSource`."""
    return GeneratorSource(factory, steps_per_epoch)


def dataset(ds: tf.data.Dataset | keras.utils.PyDataset) -> DatasetSource | PyDatasetSource:
    """Wraps a ``tf.data.Dataset`` or a ``keras.utils.PyDataset``."""
    if _is_instance(ds, "keras", "utils.PyDataset"):
        return PyDatasetSource(ds)
    return DatasetSource(ds)


def _keras_reads(data: object) -> bool:
    """A stream only Keras's data adapters read (generator objects, torch DataLoader, Grain, distributed datasets)."""
    if "keras" not in sys.modules:
        return False
    from kfitx import _keras

    return _keras.adapts(data)


def _from_iterator(iterator: Iterator[_T]) -> Iterator[_T]:
    yield from iterator


def _arrays(x: Any, y: Any, sample_weight: Any) -> Source:
    """Arrays kfitx holds (numeric, dense), else tensors Keras's array adapter slices as they are."""
    if "keras" in sys.modules:
        from kfitx import _keras
        from kfitx.data.base import flatten

        leaves = flatten((x, y, sample_weight))
        if any(_keras.sparse_or_ragged(leaf) for leaf in leaves):
            return KerasSource(x, y, sample_weight)
    try:
        return ArraySource(x, y, sample_weight)
    except DataError:
        if "keras" not in sys.modules or not _keras.array_like((x, y, sample_weight)):
            raise
        import numpy as np

        if all(np.asarray(leaf).dtype.kind in "biuf" for leaf in leaves if leaf is not None):
            raise  # numbers kfitx refused for another reason (lengths, no sample axis): its message stands
        return KerasSource(x, y, sample_weight)  # strings, objects: Keras feeds them (TextVectorization, ...)


def coerce(data: Any, y: Any = None, sample_weight: Any = None, *,
           sources: Callable[..., Source | None] | None = None) -> Source:
    """Turns what a user passes into a :class:`Source`.

    ``sources``, where given, is asked first, as ``sources(data=data, y=y)``: the installed plugins'
    ``kfitx_sources`` hook (``kfitx.fit``, ``kfitx.explain``, the conformance kit and
    ``validation_data`` pass their registry's); its first answer that is not ``None`` is the source.

    Then accepted: a source; ``x`` with optional ``y`` / ``sample_weight``; a tuple
    ``(x, y)`` or ``(x, y, sample_weight)`` (as Keras's ``validation_data``);
    a path to a ``.npy`` file; a generator factory; a tf.data.Dataset; a PyDataset;
    and everything else ``model.fit`` reads, which Keras's own adapters read
    (:class:`KerasSource`): a generator object or other iterator (read across
    epochs, as ``model.fit`` reads it), a torch ``DataLoader``, a Grain dataset,
    a distributed dataset, ragged and sparse tensors, string arrays.

    Raises:
        DataError: for anything else, saying what would have been accepted.
        PluginError: a ``kfitx_sources`` hook answered something that is not a :class:`Source`.
    """
    if sources is not None and not isinstance(data, Source):
        answer = sources(data=data, y=y)
        if answer is not None:
            if not isinstance(answer, Source):
                raise PluginError(message(
                    "A kfitx_sources hook to return a kfitx.data.Source or None", type(answer).__name__,
                    "Return an instance of a kfitx.data.Source subclass (a bug in the plugin; `kfitx list` "
                    "shows the plugins installed)."))
            return answer if sample_weight is None else answer.with_sample_weight(sample_weight)
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
    keras_stream = not stream and (_keras_reads(data) or isinstance(data, Iterator))
    if stream or keras_stream or callable(data):
        if y is not None:
            raise DataError(message("`y` must be None when the data is a stream (it yields its own targets)",
                                    type(y).__name__, "Yield (x, y) batches from the stream instead."))
        if stream:
            return dataset(data)
        if keras_stream:  # read by Keras's adapter: an object is read once, across epochs, as model.fit reads it
            return KerasSource(data if inspect.isgenerator(data) or _keras_reads(data) else _from_iterator(data))
        return generator(data)
    if isinstance(data, tuple) and y is None and sample_weight is None and len(data) in (2, 3):
        return _arrays(*data, *(None,) * (3 - len(data)))
    if isinstance(data, tuple) and len(data) not in (2, 3) and y is None:
        raise DataError(message("A tuple of data must be (x, y) or (x, y, sample_weight)",
                                f"a tuple of {len(data)} items",
                                "Pass multiple inputs as a list or a dict: ([x1, x2], y)."))
    return _arrays(data, y, sample_weight)
