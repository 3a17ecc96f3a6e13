"""What a data source is, and how a fit reads one: :class:`InputForm`, :class:`Source` and :class:`Reading`.

A :class:`Source` is shaped like Keras's data adapters (``keras/src/trainers/data_adapters/data_adapter.py``):
it says what a fit reads from it --

* its :class:`InputForm`, one of a small closed set, stated by the source and decided once per fit
  (``FitPlan.train_form``): strategies and plugins ask the form, never the source's class;
* its batches: :meth:`Source.as_dataset` (a ``tf.data.Dataset``, Keras's ``get_tf_dataset``),
  :meth:`Source.get_numpy_iterator` (one pass read in Python, Keras's ``get_numpy_iterator``)
  and :meth:`Source.feed` (each epoch's batches for a strategy's own loop, :mod:`kfitx.data.feed`,
  as the backend's tensors on JAX and torch);
* its cardinality: :meth:`Source.num_batches` (batches per pass, or ``None``: unknown or endless),
  :meth:`Source.has_partial_batch` and :meth:`Source.partial_batch_size`.

How to read it -- batch size, shuffling, steps, the worker settings of
generators -- is a :class:`Reading`, which a fit plan makes
(``plan.reading()``). The rules every kind shares live here once: floats are
cast to ``keras.config.floatx()`` as Keras casts them (:func:`train_dtype`),
and nested data goes through ``keras.tree``.

A third-party source (a plugin's, taught to ``kfitx.fit`` through the ``kfitx_sources`` hook)
subclasses :class:`Source` and implements :meth:`Source.get_numpy_iterator` (and, where it knows
them, ``kind``, :meth:`Source.num_batches` and :meth:`Source.describe`): everything else -- a
``tf.data`` stream read by kfitx's bounded worker, the loop's feed, ``model.fit``'s input --
comes from this base, as for a generator factory (see ``docs/plugins.md``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from kfitx.data.reading import InputForm, Reading, flatten, map_structure, require_targets, train_dtype
from kfitx.errors import DataError, message
from kfitx.runtime import Runtime

if TYPE_CHECKING:
    import tensorflow as tf

    from kfitx.data.epoch_iterator import EpochIterator

__all__ = ["InputForm", "Reading", "Source", "flatten", "map_structure", "require_targets", "train_dtype"]


def keras_cuts(source: Source, runtime: Runtime) -> bool:
    """Whether Keras's own array adapter cuts ``source``'s batches, as plain ``model.fit(x, y)`` cuts them:
    arrays in RAM on JAX and torch (numpy batches, no TensorFlow). Memory maps are gathered by tf.data
    instead (Keras would load a map whose floats are not ``floatx`` whole, to cast it), and on
    TensorFlow kfitx's tf.data pipeline over the arrays is faster. The one place this is decided."""
    return source.form is InputForm.ARRAYS and runtime.numpy_batches


class Source:
    """A data source: what a fit reads from one input (the protocol built-ins and plugins implement).

    Shaped like Keras's ``DataAdapter``. Subclasses are small frozen dataclasses, one per input kind.
    A third-party source (``kfitx_sources`` hook) implements:

    * :meth:`get_numpy_iterator` -- one pass of batches, ``x``, ``(x, y)`` or ``(x, y, sample_weight)``
      of numpy arrays (the one method a source of :attr:`InputForm.PYTHON_BATCHES` must implement);
    * optionally ``kind`` (a word for messages), :meth:`num_batches` (batches per pass, where known),
      :meth:`describe`, and :meth:`default_steps` (to give ``steps_per_epoch`` itself, or to refuse a
      fit without it).

    The base gives the rest of what a fit reads, for every strategy: :meth:`as_dataset` (a tf.data
    stream read by kfitx's bounded worker), :meth:`feed` (a strategy's own loop), :meth:`open_pass`.
    Built-in kinds override them with their own pipelines and state another :attr:`form`.

    Attributes:
        kind: What the data is, for messages ("arrays", "generator", "tf.data", "PyDataset").
    """

    kind: ClassVar[str] = "source"

    @property
    def form(self) -> InputForm:
        """What a fit reads from this source (:class:`InputForm`); the base serves
        :attr:`InputForm.PYTHON_BATCHES` (batches from :meth:`get_numpy_iterator`)."""
        return InputForm.PYTHON_BATCHES

    @property
    def in_memory(self) -> bool:
        """Whether the data is arrays the process can index (in RAM or memory-mapped): only such data can be
        split, weighted, or trained on by ``model.fit(x, y)``. An in-memory source answers the in-memory
        protocol below (``x``, ``y``, ``sample_weight``, :meth:`arrays`, :attr:`memory_mapped`,
        :attr:`resident_nbytes`); other sources keep its defaults."""
        return self.form.in_memory

    @property
    def num_samples(self) -> int | None:
        """Number of samples, or ``None`` when unknown (streams)."""
        return None

    @property
    def nbytes(self) -> int | None:
        """Size of the data in bytes where knowable, else ``None``."""
        return None

    def num_batches(self, batch_size: int) -> int | None:
        """Batches in one pass at ``batch_size``, or ``None`` if unknown or endless (Keras's ``num_batches``)."""
        n = self.num_samples
        return None if n is None else math.ceil(n / batch_size)

    def has_partial_batch(self, batch_size: int) -> bool | None:
        """Whether a pass ends with a batch smaller than ``batch_size`` (``None``: unknown; a stream's
        batches are what it yields)."""
        n = self.num_samples
        return None if n is None else n % batch_size != 0

    def partial_batch_size(self, batch_size: int) -> int | None:
        """Samples in the last, partial batch of a pass; ``None`` without one or when unknown."""
        n = self.num_samples
        return None if n is None or n % batch_size == 0 else n % batch_size

    def default_steps(self, steps: int | None, role: str) -> int | None:
        """``steps_per_epoch`` (or ``validation_steps``, named by ``role``) for this source.

        ``steps`` as the user gave it; a source that knows its own count gives it
        when ``steps`` is ``None``; one that would never end without it raises.
        """
        return steps

    @property
    def dense_batches(self) -> bool:
        """Whether every batch is known to hold dense tensors only (no sparse ones) before it is read: Keras's
        grouping of steps on JAX (3.16 and later) stacks a group's batches, which it refuses for sparse tensors."""
        return True

    def describe(self) -> str:
        """One line for messages and logs."""
        size = self.nbytes
        return self.kind + ("" if size is None else f" ({size / 2**20:.1f} MiB)")

    # -- the in-memory protocol (``in_memory`` sources; the defaults are a stream's) ---------------

    x: Any = None  #: The inputs (arrays, or a list / dict of them), as ``model.fit``'s ``x``.
    y: Any = None  #: The targets, or ``None``.
    sample_weight: Any = None  #: Per-sample weights, or ``None``.

    @property
    def memory_mapped(self) -> bool:
        """Some array is a memory map (or a view of one): its pages are read as batches need them."""
        return False

    @property
    def resident_nbytes(self) -> int:
        """Bytes the data holds in the process's anonymous memory (what a copy of it would add)."""
        return 0

    def arrays(self) -> tuple[Any, ...]:
        """``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``, as ``model.fit`` packs them."""
        raise DataError(message("Arrays held in memory", self.describe(),
                                "Train on it as a stream (strategy='generator' or 'loop')."))

    # -- what only arrays can do ------------------------------------------------

    def with_sample_weight(self, sample_weight: Any) -> Source:
        """This source with per-sample weights joined (arrays only)."""
        raise DataError(message("`sample_weight` goes with array data",
                                f"sample_weight= with a {self.kind} source",
                                "Yield (x, y, sample_weight) batches from the stream instead."))

    def split(self, validation_split: float) -> tuple[Source, Source]:
        """The first and the last ``validation_split`` fraction, as ``model.fit`` splits (arrays only)."""
        raise DataError(message("`validation_split` splits arrays only",
                                f"validation_split={validation_split} with a {self.kind} source",
                                "Pass validation_data=... instead."))

    # -- batches for a fit ------------------------------------------------------

    def get_numpy_iterator(self, reading: Reading, epoch: int) -> Iterator[Any]:
        """One pass of batches read in Python: ``x``, ``(x, y)`` or ``(x, y, sample_weight)`` of numpy arrays
        (or what numpy turns into arrays). Called once per pass, by kfitx's worker or a strategy's own loop.

        Args:
            reading: How the fit reads (``reading.seed``, ``reading.shuffle``, ``reading.batch_size`` are the
                fit's; a source may use them to order its batches reproducibly).
            epoch: The pass's number, counted from the fit's ``initial_epoch``: without ``steps_per_epoch``
                each pass is one epoch, so it is the epoch as callbacks number it.
        """
        raise DataError(message("A source that yields its batches in Python (get_numpy_iterator)", self.describe(),
                                "Implement get_numpy_iterator(reading, epoch) in the source."))

    def passthrough(self) -> Any:
        """What ``model.fit`` can be given as it is (forms where :attr:`InputForm.passes_through`); else ``None``.

        A tf.data dataset or a PyDataset itself; the input of a :class:`kfitx.data.KerasSource`
        (``(x, y, sample_weight)`` for tensors, else ``x``); ``None`` for arrays and Python batches.
        """
        return None

    def as_dataset(self, reading: Reading) -> tf.data.Dataset:
        """A ``tf.data.Dataset`` of batches, ``x``, ``(x, y)`` or ``(x, y, sample_weight)`` (``get_tf_dataset``).

        Without ``reading.steps`` each iteration is one pass (one epoch); with it, where the form
        :attr:`~InputForm.refills`, one endless stream. Python batches are read by a background
        worker, stopped when the fit's :func:`kfitx.data.boundary` ends.
        """
        from kfitx.data._producer import stream

        self._require_batches()
        return stream(self, reading, repeat=reading.repeat and self.form.refills)

    def feed(self, reading: Reading, *, group: int = 1, pull: bool = False) -> EpochIterator:
        """Each epoch's batches for a strategy's own loop (see :mod:`kfitx.data.feed`).

        Args:
            reading: How to read.
            group: Batches per group (steps per compiled call).
            pull: Read each batch in Python (one at a time), rather than handing the
                compiled step a tf.data iterator.
        """
        from kfitx.data.feed import PythonFeed

        opener = self.open_pass(reading)

        def open_epoch() -> tuple[Iterator[Any], Callable[[], None]]:
            iterator = opener()
            return iterator, getattr(iterator, "close", lambda: None)

        refill = self.form.refills and reading.steps is not None  # without steps a pass is the epoch
        return PythonFeed(open_epoch, reading, None, group, self.kind, refill=refill)

    # -- the worker behind streams read in Python --------------------------------

    def open_pass(self, reading: Reading) -> Callable[[], Iterator[Any]]:
        """A function returning a fresh iterator over one pass each time it is called (passes numbered from
        ``reading.initial_epoch``), for a background worker or a strategy's own loop."""
        self._require_batches()
        passes = itertools.count(reading.initial_epoch)

        def one_pass() -> Iterator[Any]:
            batches = self.get_numpy_iterator(reading, next(passes))
            try:
                return iter(batches)
            except TypeError:
                raise DataError(message(f"The {self.kind} must give an iterator of batches for each pass",
                                        type(batches).__name__)) from None

        return one_pass

    def _require_batches(self) -> None:
        """Raises the :class:`DataError` of a source that gives neither batches in Python nor a stream of its own."""
        if type(self).get_numpy_iterator is Source.get_numpy_iterator:
            self.get_numpy_iterator(Reading(), 0)

    def worker_settings(self) -> dict[str, Any] | None:
        """The source's own ``workers`` / ``use_multiprocessing`` / ``max_queue_size`` (``{}``: none of its
        own), or ``None`` when no background worker reads this kind of source (arrays, tf.data, Keras input)."""
        return {} if self.form is InputForm.PYTHON_BATCHES else None
