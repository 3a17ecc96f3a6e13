"""Input that Keras's own data adapters read, handed to them as it is: :class:`KerasSource`.

kfitx has pipelines of its own where they gain something (arrays aliased
without a copy, generator factories read by a bounded worker, vectorised
augmentation). Everything else ``model.fit`` accepts goes to Keras's data
adapters unchanged, so it trains exactly as ``model.fit`` trains on it:

* a generator *object* (read across epochs: with ``steps_per_epoch`` shorter
  than a pass the next epoch continues it, and once it is used up the epoch ends
  with Keras's "ran out of data" warning);
* a torch ``DataLoader``, a Grain dataset or data loader, a ``tf.distribute``
  distributed dataset;
* tensors kfitx's array pipeline does not hold: ragged and sparse tensors
  (TensorFlow, JAX, SciPy), string arrays, and anything else Keras's array adapter slices.

Strategies that delegate to ``model.fit`` pass it through (:meth:`KerasSource.passthrough`);
a strategy's own loop reads it through Keras's adapter with ``model.fit``'s epoch
rules (:class:`kfitx.data.feed.DatasetFeed`); ``as_dataset`` gives the adapter's
``tf.data`` stream for a pipeline that maps over it (augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from kfitx.data.base import InputForm, Reading, Source, flatten
from kfitx.errors import DataError, message

if TYPE_CHECKING:
    from kfitx.data.epoch_iterator import EpochIterator

__all__ = ["KerasSource"]


@dataclass(frozen=True, eq=False)
class KerasSource(Source):
    """What Keras's data adapters read (see the module docstring), kept as the user passed it.

    Args:
        x: The inputs: a generator object, a torch ``DataLoader``, a Grain dataset,
            a distributed dataset, or tensors Keras's array adapter slices.
        y, sample_weight: With array-like ``x`` only, as in ``model.fit``.
    """

    kind: ClassVar[str] = "Keras input"
    x: Any
    y: Any = None
    sample_weight: Any = None
    _adapters: dict[Any, Any] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        from kfitx import _keras

        if not self.array_like and (self.y is not None or self.sample_weight is not None):
            role = "y" if self.y is not None else "sample_weight"
            raise DataError(message(f"`{role}` must be None when x is a {self.label} (it yields its own)",
                                    type(self.y if self.y is not None else self.sample_weight).__name__,
                                    "Yield (x, y) or (x, y, sample_weight) batches from it instead."))
        if not (self.array_like or _keras.adapts(self.x)):
            raise DataError(message("Data model.fit accepts", type(self.x).__name__))

    @property
    def form(self) -> InputForm:
        return InputForm.KERAS_TENSORS if self.array_like else InputForm.KERAS_STREAM

    @property
    def array_like(self) -> bool:
        """Tensors Keras slices into batches (``batch_size``, ``shuffle``, ``validation_split`` apply)."""
        from kfitx import _keras

        return _keras.array_like((self.x, self.y, self.sample_weight))

    @property
    def dense_batches(self) -> bool:
        """Tensors without a sparse one; a stream (generator object, ``DataLoader``, Grain) is not known to be."""
        from kfitx import _keras

        if not self.array_like:
            return False
        return not any(_keras.is_sparse(leaf) for leaf in flatten((self.x, self.y, self.sample_weight)))

    @property
    def label(self) -> str:
        """What the input is, for messages."""
        from kfitx import _keras

        return "tensors" if self.array_like else _keras.input_kind(self.x)

    @property
    def num_samples(self) -> int | None:
        if not self.array_like:
            return None
        leaves = [leaf for leaf in flatten(self.x) if getattr(leaf, "shape", None)]
        return int(leaves[0].shape[0]) if leaves else None

    def describe(self) -> str:
        return f"{self.label} ({type(self.x).__name__}), read by Keras's data adapter"

    def with_sample_weight(self, sample_weight: Any) -> Source:
        if not self.array_like:
            return super().with_sample_weight(sample_weight)
        return KerasSource(self.x, self.y, sample_weight)

    def split(self, validation_split: float) -> tuple[Source, Source]:
        if not self.array_like:
            return super().split(validation_split)
        from kfitx import _keras

        train, validation = _keras.train_validation_split((self.x, self.y, self.sample_weight), validation_split)
        return KerasSource(*train), KerasSource(*validation)

    def passthrough(self) -> Any:
        """What ``model.fit`` gets: ``(x, y, sample_weight)`` for tensors, else ``x`` itself."""
        return (self.x, self.y, self.sample_weight) if self.array_like else self.x

    def adapter(self, reading: Reading) -> Any:
        """Keras's data adapter for this reading; made once per reading (a generator is peeked only once)."""
        from kfitx import _keras

        key: tuple[Any, ...] = (reading.batch_size, reading.shuffle, reading.steps, id(reading.class_weight))
        if not self.array_like:
            key = ()  # one adapter for the stream: making another would read from it again
        if key not in self._adapters:
            self._adapters[key] = _keras.data_adapter(
                self.x, self.y, self.sample_weight, batch_size=reading.batch_size, steps=reading.steps,
                shuffle=reading.shuffle if self.array_like else False, class_weight=reading.class_weight)
        return self._adapters[key]

    def as_dataset(self, reading: Reading) -> Any:
        """The adapter's ``tf.data`` stream, one pass per iteration (``model.fit``'s epoch rules apply to it)."""
        from kfitx import _keras

        return _keras.adapter_dataset(self.adapter(reading))

    def feed(self, reading: Reading, *, group: int = 1, pull: bool = False) -> EpochIterator:
        from kfitx.data.feed import DatasetFeed

        adapter = self.adapter(reading)
        numpy = reading.runtime.numpy_batches
        batches = _AdapterBatches(adapter, reading.runtime.backend) if numpy else self.as_dataset(reading)
        return DatasetFeed(batches, reading, group, pull)  # weighted by Keras's adapter (class_weight)


class _AdapterBatches:
    """A Keras data adapter as a "dataset" of batches read in Python for :class:`kfitx.data.feed.DatasetFeed`
    (JAX and torch: the backend's own arrays, as ``model.fit`` reads them there)."""

    def __init__(self, adapter: Any, backend: str) -> None:
        self.adapter, self.backend = adapter, backend

    def cardinality(self) -> int:
        n = self.adapter.num_batches
        return -2 if n is None else int(n)  # tf.data's "unknown"

    def __iter__(self) -> Any:
        from kfitx import _keras

        self.adapter.on_epoch_begin()
        return iter(_keras.backend_batches(self.adapter, self.backend))
