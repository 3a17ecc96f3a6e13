"""What a data source is, and how a fit reads one: :class:`Source` and :class:`Reading`.

A :class:`Source` knows what the data is -- its kind, its size where knowable,
whether it is held in memory -- and gives batches for a fit in two forms:

* :meth:`Source.as_dataset` -- a ``tf.data.Dataset`` of batches, what
  ``model.fit`` and ``model.evaluate`` read (the TensorFlow adapter);
* :meth:`Source.feed` -- each epoch's batches read in Python, for strategies
  that run their own loop (:mod:`kfitx.data.feed`).

How to read it -- batch size, shuffling, steps, the worker settings of
generators -- is a :class:`Reading`, which a fit plan makes
(``plan.reading()``). The rules every kind shares live here once: floats are
cast to ``keras.config.floatx()`` as Keras casts them (:func:`train_dtype`),
and nested data goes through ``keras.tree``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from kfitx.errors import DataError, message
from kfitx.runtime import LOCAL, Runtime

__all__ = ["ENDLESS_WARNING", "Reading", "Source", "flatten", "map_structure", "require_targets", "train_dtype",
           "warn_endless"]

# A pass without steps_per_epoch this long is probably endless: said at once, in a warning, long before
# endless_after (100,000 by default) ends the fit; a finite generator that long is only told once.
ENDLESS_WARNING = 10_000


def flatten(structure: Any) -> list[Any]:
    """The leaves of a nested structure, as ``keras.tree`` orders them (dicts by key)."""
    import keras

    return keras.tree.flatten(structure)


def map_structure(fn: Callable[[Any], Any], structure: Any) -> Any:
    """``fn`` applied to every leaf, the structure kept (``keras.tree.map_structure``)."""
    import keras

    return keras.tree.map_structure(fn, structure)


def train_dtype(dtype: Any) -> np.dtype:
    """The dtype Keras trains on for data of ``dtype``: floats become ``floatx``, the rest stay.

    The one cast rule of every source kind (Keras's array adapter casts so too).
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        return dtype
    keras = sys.modules.get("keras")
    return np.dtype(keras.config.floatx() if keras is not None else "float32")


def require_targets(reading: Reading, has_y: bool, kind: str, where: str, shown: str) -> None:
    """Raises a :class:`DataError` when batches without ``y`` reach a model compiled with a loss."""
    if reading.targets and not has_y:
        raise DataError(message(
            f"The {kind} must give (x, y) batches: the model is compiled with a loss, which needs targets",
            f"x alone ({shown}) at {where}",
            "Yield (x, y) or (x, y, sample_weight) batches; a model that computes its own loss "
            "(add_loss) is compiled with loss=None."))


def warn_endless(kind: str, batches: int, endless_after: int) -> None:
    """The early word on a pass that has not ended after :data:`ENDLESS_WARNING` batches."""
    import warnings

    warnings.warn(f"kfitx: the {kind} has yielded {batches:,} batches in one pass without ending, and no "
                  f"steps_per_epoch was given, so each pass is an epoch. If it never ends, pass "
                  f"steps_per_epoch=N; otherwise the fit stops it at endless_after={endless_after:,} batches.",
                  RuntimeWarning, stacklevel=2)


@dataclass(frozen=True)
class Reading:
    """How one fit reads a source; ``FitPlan.reading()`` makes one from the fit's arguments.

    Attributes:
        batch_size: Samples per batch (arrays; streams yield their own batches).
        shuffle: ``True``: a new order each pass; ``"batch"``: within batches;
            ``False``: the stored order (arrays; a PyDataset read by a worker).
        seed: Seed of the shuffling.
        steps: Batches per epoch, or ``None`` for one pass per epoch.
        class_weight: ``model.fit``'s ``class_weight``; applied by :meth:`Source.feed`
            (``model.fit`` applies it itself to what :meth:`Source.as_dataset` gives).
        workers, use_multiprocessing, max_queue_size: The worker reading a
            generator or PyDataset: ``None`` means the PyDataset's own setting,
            else 1 thread, no process, 10 batches ahead.
        timeout: Most seconds to wait for one batch from a worker.
        endless_after: A stream without ``steps`` yielding more batches than this
            in one pass is taken for an endless one (a :class:`DataError`).
        shuffle_buffer: ``None`` for a full permutation per pass, else the size
            of a shuffle buffer, in samples (arrays).
        parallel_calls: Batches gathered at once (``None``: tf.data's AUTOTUNE).
        deterministic: Keep the batch order.
        targets: Batches must hold ``y`` (the model is compiled with a loss); one
            without is a :class:`DataError` at the first batch.
        runtime: The fit's backend and distribution (the plan's; :data:`kfitx.runtime.LOCAL`,
            TensorFlow without a distribution, for a reading made outside a fit). On JAX and
            torch (``runtime.numpy_batches``) :meth:`Source.feed` gives groups of numpy batches
            read in Python, and arrays are cut by Keras's own array adapter (:func:`keras_cuts`);
            under a ``tf.distribute`` strategy a compiled step's batches are distributed over it.
    """

    batch_size: int = 32
    shuffle: bool | str = False
    seed: int | None = None
    steps: int | None = None
    class_weight: Mapping[int, float] | None = None
    workers: int | None = None
    use_multiprocessing: bool | None = None
    max_queue_size: int | None = None
    timeout: float = 60.0
    endless_after: int = 100_000
    shuffle_buffer: int | None = None
    parallel_calls: int | None = None
    deterministic: bool = True
    targets: bool = False
    runtime: Runtime = LOCAL

    @property
    def repeat(self) -> bool:
        """``steps`` given: a generator factory's stream runs across epochs, a new pass when one ends.

        Every other source is read one pass per iteration, and ``model.fit``'s epoch
        rules (those of Keras's ``EpochIterator``) carry a pass into the next epoch.
        """
        return self.steps is not None

    def worker(self, source: Source) -> dict[str, Any] | None:
        """The settings of the worker reading ``source``: these, else the source's own, else the defaults.

        ``None`` for a source no worker reads (arrays, tf.data).
        """
        own = source.worker_settings()
        if own is None:
            return None
        defaults = {"workers": 1, "use_multiprocessing": False, "max_queue_size": 10}
        chosen = {}
        for name, default in defaults.items():
            value = getattr(self, name)
            value = own.get(name) if value is None else value
            chosen[name] = default if value is None else type(default)(value)
        return chosen


def keras_cuts(source: Source, runtime: Runtime) -> bool:
    """Whether Keras's own array adapter cuts ``source``'s batches, as plain ``model.fit(x, y)`` cuts them:
    arrays in RAM on JAX and torch (numpy batches, no TensorFlow). Memory maps are gathered by tf.data
    instead (Keras would load a map whose floats are not ``floatx`` whole, to cast it), and on
    TensorFlow kfitx's tf.data pipeline over the arrays is faster. The one place this is decided."""
    return source.in_memory and runtime.numpy_batches and not source.memory_mapped


class Source:
    """Base of every data source. Subclasses are small frozen dataclasses, one per input kind.

    Attributes:
        kind: What the data is, for messages ("arrays", "generator", "tf.data", "PyDataset").
        in_memory: Whether the data is arrays the process can index (in RAM or
            memory-mapped): only such data can be split, weighted, or trained on
            by ``model.fit(x, y)``. An in-memory source answers the in-memory
            protocol below (``x``, ``y``, ``sample_weight``, :meth:`arrays`,
            :attr:`memory_mapped`, :attr:`resident_nbytes`); other sources keep its defaults.
        streams_in_graph: Whether :meth:`as_dataset` runs no Python per batch
            (arrays, tf.data), rather than a worker reading Python batches.
    """

    kind: ClassVar[str] = "source"
    in_memory: ClassVar[bool] = False
    streams_in_graph: ClassVar[bool] = False

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

    def passthrough(self) -> Any:
        """What ``model.fit`` can be given as it is, when kfitx's pipeline gains nothing on it; else ``None``.

        A tf.data dataset or a PyDataset itself; the input of a :class:`kfitx.data.KerasSource`
        (``(x, y, sample_weight)`` for tensors, else ``x``); ``None`` for arrays and generator factories.
        """
        return None

    def as_dataset(self, reading: Reading) -> Any:
        """A ``tf.data.Dataset`` of batches: ``x``, ``(x, y)`` or ``(x, y, sample_weight)``.

        Without ``reading.steps`` each iteration is one pass (one epoch); with it,
        one endless stream. Generators and PyDatasets are read by a background
        worker, stopped when the fit's :func:`kfitx.data.boundary` ends.
        """
        raise DataError(message("A source that can be read as a tf.data stream", self.describe()))

    def feed(self, reading: Reading, *, group: int = 1, pull: bool = False) -> Any:
        """Each epoch's batches for a strategy's own loop (see :mod:`kfitx.data.feed`).

        Args:
            reading: How to read.
            group: Batches per group (steps per compiled call).
            pull: Read each batch in Python (one at a time), rather than handing the
                compiled step a tf.data iterator.
        """
        raise DataError(message("A source that can be read batch by batch", self.describe()))

    # -- the worker behind streams read in Python --------------------------------

    def open_pass(self, reading: Reading) -> Callable[[], Iterator[Any]]:
        """A function returning a fresh iterator over one pass, for a background worker."""
        raise DataError(message("A generator or a PyDataset for a worker to read", self.describe()))

    def worker_settings(self) -> dict[str, Any] | None:
        """The source's own ``workers`` / ``use_multiprocessing`` / ``max_queue_size`` (``{}``: none of its
        own), or ``None`` when no background worker reads this kind of source."""
        return None
