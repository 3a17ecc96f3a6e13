"""Where each epoch's batches come from, with ``model.fit``'s rules for ``steps_per_epoch``.

Separation of concerns (after Keras's ``trainers/epoch_iterator.py``): a feed
knows the data and how many batches an epoch has, and yields each epoch's
batches in groups ``(begin, end, data)``, as Keras's ``EpochIterator`` does;
the training step and the callbacks are the strategy's.

Sources make their feed (:meth:`kfitx.data.Source.feed`):

* :class:`DatasetFeed` -- arrays (through :func:`kfitx.data.arrays.array_dataset`)
  and tf.data. ``data`` is the tf.data iterator, from which the model's compiled
  train function reads a whole group; or, with ``pull``, a list holding one batch
  read in Python. Without ``steps_per_epoch`` every epoch is a fresh pass; with
  it one iterator runs across epochs, a new pass starting when a dataset of known
  length is used up (and one of unknown length that runs out ends the epoch with
  Keras's warning), exactly as in ``model.fit``. On JAX and torch
  (``reading.runtime.numpy_batches``), ``data`` is a list of up to ``group`` numpy batches, and
  the "dataset" may be any object with ``cardinality()`` and ``__iter__`` (arrays
  come through Keras's own array adapter, :class:`kfitx.data.arrays.KerasBatches`).
  Under a ``tf.distribute`` strategy (``reading.runtime``) a compiled step reads a
  distributed iterator: each replica its share of every batch.
* :class:`PythonFeed` -- generators and PyDatasets: a fresh iterator every epoch
  (the generator factory is called again; a PyDataset is read in this process, in
  the order :mod:`kfitx.data.pydataset` gives, its ``workers`` unused, with
  ``on_epoch_begin/end`` called), and
  ``data`` a list of batches. An epoch is ``steps_per_epoch`` batches, or one
  pass when that is not given. A generator that ends before ``steps_per_epoch``,
  yields nothing, or seems never to end is a :class:`DataError`, not a hang.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kfitx.data.base import ENDLESS_WARNING, Reading, require_targets, warn_endless
from kfitx.errors import DataError, OptionError, message

__all__ = ["DatasetFeed", "PythonFeed", "class_weights"]

Group = tuple[int, int, Any]


def class_weights(class_weight: Mapping[int, float]) -> Callable[..., tuple[Any, Any, Any]]:
    """``model.fit``'s ``class_weight`` as a batch function ``(x, y) -> (x, y, sample_weight)``.

    Made of TensorFlow ops, so it serves ``dataset.map`` and eager batches alike;
    classes are read from ``y`` as Keras reads them (integer labels, one-hot
    rows, or a single column).
    """
    import keras
    import tensorflow as tf

    if not isinstance(class_weight, Mapping) or not class_weight:
        raise OptionError(message("`class_weight` must be a non-empty dict {class index: weight}",
                                  repr(class_weight)))
    table = tf.constant([float(class_weight.get(c, 1.0)) for c in range(int(max(class_weight)) + 1)])

    def apply(*batch: Any) -> tuple[Any, Any, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch[0] if len(batch) == 1 else batch)
        if sample_weight is not None:
            raise DataError(message("Either `class_weight` or sample weights, not both",
                                    "both", "Fold the class weights into the sample weights."))
        if y is None or tf.nest.is_nested(y):
            raise DataError(message("`class_weight` needs batches with a single target array y",
                                    "no y" if y is None else f"{type(y).__name__} of targets",
                                    "Pass sample weights for multi-output models."))
        y = tf.convert_to_tensor(y)
        rank, last = y.shape.rank, y.shape[-1] if y.shape.rank else None
        if not rank or rank < 2:
            classes = tf.cast(tf.round(y), tf.int32)
        elif last is not None:
            classes = (tf.argmax(y, axis=-1, output_type=tf.int32) if last > 1
                       else tf.cast(tf.round(tf.squeeze(y, axis=-1)), tf.int32))
        else:
            classes = tf.cond(tf.shape(y)[-1] > 1, lambda: tf.argmax(y, axis=-1, output_type=tf.int32),
                              lambda: tf.cast(tf.round(tf.squeeze(y, axis=-1)), tf.int32))
        # A class the dict omits weighs 1, as in model.fit (also one above its largest key).
        size = tf.shape(table)[0]
        weights = tf.where(classes < size, tf.gather(table, tf.clip_by_value(classes, 0, size - 1)), 1.0)
        return x, y, weights

    return apply


def _out_of_data_warning() -> None:
    warnings.warn(  # model.fit's own words
        "Your input ran out of data; interrupting training. Make sure that your dataset or generator "
        "can generate at least `steps_per_epoch * epochs` batches. You may need to use the "
        "`.repeat()` function when building your dataset.",
        stacklevel=3,
    )


class DatasetFeed:
    """Batches of a ``tf.data.Dataset`` (see the module docstring).

    Args:
        dataset: A dataset of batches.
        reading: How to read it: ``steps`` (batches per epoch, or ``None`` for one
            pass) and ``class_weight`` (mapped over the batches).
        group: Batches per group (steps per compiled call).
        pull: Read the batches in Python (``data`` is a list of up to ``group`` batches).
        weighted: The batches carry the class weights already (Keras's adapter applied them).
    """

    def __init__(self, dataset: Any, reading: Reading, group: int, pull: bool, weighted: bool = False) -> None:
        if reading.class_weight is not None and not weighted:
            import tensorflow as tf

            dataset = dataset.map(class_weights(reading.class_weight), num_parallel_calls=tf.data.AUTOTUNE)
        cardinality = dataset.cardinality  # a method; an attribute of a tf.distribute dataset
        cardinality = int(cardinality() if callable(cardinality) else cardinality)
        self.dataset = dataset
        self.pass_length = cardinality if cardinality >= 0 else None
        self.steps_per_epoch = reading.steps
        self.group = group
        self.runtime = reading.runtime
        self.numpy = reading.runtime.numpy_batches
        self.pull = pull or self.numpy
        self._iterator: Iterator[Any] | None = None
        self._seen = 0
        self._distributed: Any = None  # the dataset distributed over the runtime's strategy

    @property
    def num_batches(self) -> int | None:
        """Batches per epoch as the callbacks' ``steps`` parameter reports it."""
        return self.steps_per_epoch or self.pass_length

    def _iter(self) -> Iterator[Any]:
        if self.numpy and hasattr(self.dataset, "as_numpy_iterator"):
            return self.dataset.as_numpy_iterator()
        if not self.pull and self.runtime.tf_strategy is not None:  # a compiled step: each replica its share
            from kfitx.runtime import distribute

            if self._distributed is None:
                self._distributed = distribute.distribute(self.dataset, self.runtime)
            return iter(self._distributed)
        return iter(self.dataset)

    def _data(self, iterator: Any) -> Any:
        """The iterator itself, or (pulled in Python) a list of up to ``group`` batches; ``None`` when empty."""
        if not self.pull:
            return iterator
        ended: tuple[type[BaseException], ...] = (StopIteration,)
        tf = sys.modules.get("tensorflow")
        if tf is not None:
            ended += (tf.errors.OutOfRangeError,)
        batches: list[Any] = []
        try:
            while len(batches) < self.group:
                batches.append(next(iterator))
        except ended:
            pass
        return batches or None

    def epoch(self, epoch: int) -> Iterator[Group]:
        """One epoch's groups ``(first step, last step, iterator or [batch])``."""
        steps = self.num_batches
        if not steps:  # unknown length, no steps_per_epoch: until the pass ends
            iterator = self._iter()
            for begin in itertools.count(0, self.group):
                data = self._data(iterator)
                if data is None:
                    return
                yield begin, begin + self.group - 1, data
            return  # not reached: the loop above ends by returning
        if self._iterator is None or self.steps_per_epoch is None:
            self._iterator, self._seen = self._iter(), 0
        for begin in range(0, steps, self.group):
            if self.pass_length and self._seen >= self.pass_length:
                if self.steps_per_epoch:
                    _out_of_data_warning()
                break
            self._seen += self.group
            data = self._data(self._iterator)
            if data is None:
                self.ran_out()
                return
            # Keras reports begin + group - 1 even past the epoch's end (its EpochIterator does).
            yield begin, begin + self.group - 1, data
        if self.pass_length and self._seen >= self.pass_length:
            # As Keras's EpochIterator: the next pass's iterator is made now (and, without
            # steps_per_epoch, made again when the next epoch starts). Counting iterators as it does
            # keeps a seeded shuffle (a new permutation per iterator) in step with model.fit's.
            self._iterator, self._seen = self._iter(), 0

    def restart(self) -> None:
        """The next epoch starts a new pass (after a batch was read to build the model, as Keras resets)."""
        self._iterator = None

    def ran_out(self) -> None:
        """The strategy's step found the iterator empty: the epoch ends, the next one starts a pass."""
        if self.steps_per_epoch:
            _out_of_data_warning()
        self._iterator = None


class PythonFeed:
    """Batches read in Python (see the module docstring).

    Without ``steps_per_epoch`` each epoch is one pass from a fresh iterator; with it a
    pass is carried across epochs (:meth:`_carried`).

    Args:
        open_epoch: Returns ``(iterator, close)`` for one pass.
        reading: How to read: ``steps`` (batches per epoch, or ``None`` for one
            pass), ``endless_after`` (most batches an epoch of unknown length may
            take) and ``class_weight`` (applied to every batch).
        pass_length: Batches in one pass where known (PyDatasets), else ``None``.
        group: Batches per group.
        kind: The source's kind, for messages.
        refill: A pass that ends inside an epoch is followed by a new one (a generator
            factory); else the epoch ends there, as ``model.fit`` ends it (a PyDataset).
    """

    def __init__(self, open_epoch: Callable[[], tuple[Iterator[Any], Callable[[], None]]],
                 reading: Reading, pass_length: int | None, group: int, kind: str, *, refill: bool = False) -> None:
        self.open_epoch = open_epoch
        self.pass_length = pass_length
        self.refill = refill
        self._pass: tuple[Iterator[Any], Callable[[], None]] | None = None
        self._seen = 0
        self.steps_per_epoch = reading.steps
        self.num_batches = reading.steps or pass_length
        self.group = group
        self.endless_after = reading.endless_after
        self.transform = None if reading.class_weight is None else class_weights(reading.class_weight)
        self.kind = kind
        self.reading = reading
        self.signature: Any = None  # the first batch's layout, shapes and dtypes; later ones must agree

    def _batch(self, batch: Any, epoch: int, index: int) -> Any:
        """``batch`` checked as a worker's batches are (numeric arrays, floats as floatx, like the first)."""
        from kfitx.data._producer.checks import _normalise, _Signature

        batch = _normalise(batch, lambda: f"batch {index} of epoch {epoch} of the {self.kind}", self.kind)
        if self.signature is None:
            self.signature = _Signature(batch, self.kind)
        batch = self.signature.conform(batch, epoch, index)
        if self.transform is None:
            return batch
        batch = self.transform(*batch) if isinstance(batch, (tuple, list)) else self.transform(batch)
        if self.reading.runtime.numpy_batches:  # the class weights were computed with TensorFlow ops
            import keras
            import numpy as np

            batch = keras.tree.map_structure(np.asarray, batch)
        return batch

    def epoch(self, epoch: int) -> Iterator[Group]:
        """One epoch's groups ``(first step, last step, [batches])``."""
        if self.steps_per_epoch is not None:
            yield from self._carried(epoch)
            return
        iterator, close = self.open_epoch()
        steps = self.num_batches
        try:
            begin = 0
            while steps is None or begin < steps:
                want = self.group if steps is None else min(self.group, steps - begin)
                batches = list(itertools.islice(iterator, want))
                if steps is not None and len(batches) < want:
                    raise DataError(message(
                        f"The {self.kind} must yield the {steps} batches its length says in every pass",
                        f"{begin + len(batches)} batch(es) in epoch {epoch}",
                        "Make __len__ (num_batches) say how many batches __getitem__ gives.",
                    ))
                if not batches and begin == 0:
                    raise DataError(message(f"The {self.kind} must yield at least one batch per epoch",
                                            f"no batches in epoch {epoch}"))
                if steps is None and begin + len(batches) > self.endless_after:
                    raise DataError(message(
                        f"A {self.kind} without steps_per_epoch must end, each pass being one epoch",
                        f"more than endless_after={self.endless_after} batches in epoch {epoch}",
                        "For an infinite generator pass steps_per_epoch=N (to kfitx.fit or "
                        "kfitx.data.generator); for a longer finite one raise the endless_after option.",
                    ))
                if steps is None and begin < ENDLESS_WARNING <= begin + len(batches) and \
                        ENDLESS_WARNING < self.endless_after:
                    warn_endless(self.kind, ENDLESS_WARNING, self.endless_after)
                if batches and begin == 0:
                    self._first(batches[0], epoch)
                if batches:
                    yield begin, begin + self.group - 1, [self._batch(b, epoch, begin + i)
                                                            for i, b in enumerate(batches)]
                begin += len(batches)
                if len(batches) < want:
                    return
        finally:
            close()

    def _first(self, batch: Any, epoch: int) -> None:
        require_targets(self.reading, isinstance(batch, (tuple, list)) and len(batch) >= 2, self.kind,
                        f"batch 0 of epoch {epoch}", type(batch).__name__)

    def _open(self) -> tuple[Iterator[Any], Callable[[], None]]:
        if self._pass is None:
            self._pass, self._seen = self.open_epoch(), 0
        return self._pass

    def _end_pass(self) -> None:
        if self._pass is not None:
            self._pass[1]()
        self._pass, self._seen = None, 0

    def _carried(self, epoch: int) -> Iterator[Group]:
        """An epoch of ``steps_per_epoch`` batches from a pass carried across epochs, by ``model.fit``'s rules.

        A generator factory is called again when its pass ends (its stream never runs out). A
        PyDataset's pass is carried into the next epoch when it is longer than ``steps_per_epoch``,
        and, as in ``model.fit``, ends the epoch early ("ran out of data") when it is shorter.
        """
        steps, begin = self.steps_per_epoch, 0
        assert steps is not None  # called only with steps_per_epoch (see epoch)
        while begin < steps:
            if self.pass_length and self._seen >= self.pass_length:
                _out_of_data_warning()
                self._end_pass()
                return
            want = min(self.group, steps - begin)
            iterator, _ = self._open()
            batches = list(itertools.islice(iterator, want))
            while len(batches) < want and self.refill:  # the factory's next pass follows
                if self._seen == 0 and not batches or self._pass is None:
                    raise DataError(message(f"The {self.kind} must yield at least one batch each time it is "
                                            "started", f"no batches in epoch {epoch}"))
                self._end_pass()
                iterator, _ = self._open()
                more = list(itertools.islice(iterator, want - len(batches)))
                if not more:
                    self._end_pass()  # a fresh pass gave nothing: the check above raises
                batches += more
            if not batches:
                _out_of_data_warning()
                self._end_pass()
                return
            if self._seen == 0 and begin == 0:
                self._first(batches[0], epoch)
            self._seen += len(batches)
            yield begin, begin + self.group - 1, [self._batch(b, epoch, begin + i) for i, b in enumerate(batches)]
            begin += len(batches)
            if len(batches) < want:
                _out_of_data_warning()
                self._end_pass()
                return
        if self.pass_length and self._seen >= self.pass_length:
            self._end_pass()  # the next epoch starts a new pass, as Keras's EpochIterator does

    def restart(self) -> None:
        """The next epoch starts a new pass (after a batch was read to build the model, as Keras resets)."""
        self._end_pass()

    def close(self) -> None:
        """Ends a pass carried across epochs (the fit is over)."""
        self._end_pass()
