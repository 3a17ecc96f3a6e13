"""A source's batches for a strategy's own loop: an :class:`~kfitx.data.epoch_iterator.EpochIterator` over its passes.

The epoch iterator owns every step and pass rule (``steps_per_epoch`` shorter or
longer than a pass, groups and the batch indices callbacks see, the endless
guard); the two feeds here say only what a pass of the source is:

* :class:`DatasetFeed` -- a ``tf.data.Dataset`` (arrays through
  :func:`kfitx.data.arrays.array_dataset`, tf.data, a Keras adapter's stream), or
  any object with ``cardinality()`` and ``__iter__`` (on JAX and torch, Keras's own
  adapters: :class:`kfitx.data.arrays.KerasBatches`). A pass is one iterator of it,
  read whole by the model's compiled step a group at a time, or, with ``pull``, a
  list of up to ``group`` batches read in Python (always on JAX and torch,
  ``reading.runtime.numpy_batches``). Under a ``tf.distribute`` strategy
  (``reading.runtime``) a compiled step reads a distributed iterator: each replica its
  share of every batch.
* :class:`PythonFeed` -- generators and PyDatasets, read in this thread: a pass is one
  call of the opener (a generator factory called again; a PyDataset read in the order
  :mod:`kfitx.data.pydataset` gives, its ``workers`` unused, ``on_epoch_begin/end``
  called), each batch checked as a worker's batches are and weighted by
  ``reading.class_weight``.

The batches are weighted already where they come from the source's reading
(:mod:`kfitx.data.weights`); a feed adds nothing but the reading in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

from kfitx.data.epoch_iterator import EpochIterator
from kfitx.data.reading import Reading, require_targets

__all__ = ["DatasetFeed", "PythonFeed"]


class DatasetFeed(EpochIterator):
    """Batches of a ``tf.data.Dataset`` (see the module docstring).

    Args:
        dataset: A dataset of batches (weighted already, where ``reading.class_weight`` asks).
        reading: How to read it: ``steps`` (batches per epoch, or ``None`` for one pass),
            ``automatic_grouping`` and ``runtime``.
        group: Batches per group (steps per compiled call).
        pull: Read the batches in Python (``data`` is a list of up to ``group`` batches).
    """

    def __init__(self, dataset: Any, reading: Reading, group: int, pull: bool) -> None:
        cardinality = dataset.cardinality  # a method; an attribute of a tf.distribute dataset
        cardinality = int(cardinality() if callable(cardinality) else cardinality)
        self.dataset = dataset
        self.runtime = reading.runtime
        self.numpy = reading.runtime.numpy_batches
        self._distributed: Any = None  # the dataset distributed over the runtime's strategy
        pull = pull or self.numpy
        super().__init__(self._open_pass, steps=reading.steps, pass_length=cardinality if cardinality >= 0 else None,
                         group=group, pull=pull, last_batch=reading.automatic_grouping, kind="dataset")

    def _open_pass(self) -> tuple[Iterator[Any], Callable[[], None]]:
        return self._iter(), _nothing

    def _iter(self) -> Iterator[Any]:
        if self.numpy and hasattr(self.dataset, "as_numpy_iterator"):
            return iter(self.dataset.as_numpy_iterator())
        if not self.pull and self.runtime.tf_strategy is not None:  # a compiled step: each replica its share
            from kfitx.runtime import distribute

            if self._distributed is None:
                self._distributed = distribute.distribute(self.dataset, self.runtime)
            return iter(self._distributed)
        return iter(self.dataset)


class PythonFeed(EpochIterator):
    """Batches read in Python (see the module docstring).

    Args:
        open_epoch: Returns ``(iterator, close)`` for one pass; called when the pass's first batch is
            read (a pass the epoch iterator opens ahead and never reads calls nothing).
        reading: How to read: ``steps`` (batches per epoch, or ``None`` for one pass),
            ``endless_after``, ``class_weight``, ``targets``, ``automatic_grouping``, ``runtime``.
        pass_length: Batches in one pass where known (PyDatasets), else ``None``.
        group: Batches per group.
        kind: The source's kind, for messages.
        refill: A pass that ends inside an epoch is followed by a new one (a generator
            factory); else the epoch ends there, as ``model.fit`` ends it (a PyDataset).
    """

    def __init__(self, open_epoch: Callable[[], tuple[Iterator[Any], Callable[[], None]]],
                 reading: Reading, pass_length: int | None, group: int, kind: str, *, refill: bool = False) -> None:
        from kfitx.data.weights import class_weights

        self.reading = reading
        self.weigh = None if reading.class_weight is None else class_weights(reading.class_weight)
        self.signature: Any = None  # the first batch's layout, shapes and dtypes; later ones must agree

        def open_pass() -> tuple[Iterator[Any], Callable[[], None]]:
            one_pass = _lazily(open_epoch)
            return one_pass, one_pass.close

        super().__init__(open_pass, steps=reading.steps, pass_length=pass_length, group=group, pull=True,
                         last_batch=reading.automatic_grouping, kind=kind, checked=True,
                         endless_after=reading.endless_after, refill=refill, prepare=self._batch)

    def _batch(self, batch: Any, epoch: int, index: int) -> Any:
        """``batch`` checked as a worker's batches are (numeric arrays, floats as floatx, like the first), weighted."""
        from kfitx.data._producer.checks import _normalise, _Signature

        where = f"batch {index} of epoch {epoch}"
        batch = _normalise(batch, lambda: f"{where} of the {self.kind}", self.kind)
        if self.signature is None:
            require_targets(self.reading, isinstance(batch, tuple) and len(batch) >= 2, self.kind, where,
                            "an array" if not isinstance(batch, tuple) else "a 1-tuple")
            self.signature = _Signature(batch, self.kind)
        batch = self.signature.conform(batch, epoch, index)
        if self.weigh is None:
            return batch
        batch = self.weigh(*batch) if isinstance(batch, (tuple, list)) else self.weigh(batch)
        if self.reading.runtime.numpy_batches:  # the class weights were computed with TensorFlow ops
            import keras
            import numpy as np

            batch = keras.tree.map_structure(np.asarray, batch)
        return batch


def _lazily(open_epoch: Callable[[], tuple[Iterator[Any], Callable[[], None]]]) -> Generator[Any, None, None]:
    """One pass, opened at its first batch and closed when it ends or is closed."""
    iterator, close = open_epoch()
    try:
        yield from iterator
    finally:
        close()


def _nothing() -> None:
    return None
