"""How a fit reads a source (:class:`Reading`), the closed set of input forms (:class:`InputForm`), and the rules
every source shares: the cast (floats as ``keras.config.floatx()``, :func:`train_dtype`), nesting through
``keras.tree`` (:func:`flatten`, :func:`map_structure`) and the targets a batch must hold (:func:`require_targets`).

Below :mod:`kfitx.data.base` (the :class:`~kfitx.data.base.Source` protocol), so that the epoch iterator, the
feeds and the worker read them without importing the sources.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from kfitx.errors import DataError, message
from kfitx.runtime import LOCAL, Runtime


class WorkerSettings(Protocol):
    """What :meth:`Reading.worker` reads of a source (:meth:`kfitx.data.Source.worker_settings`)."""

    def worker_settings(self) -> dict[str, Any] | None: ...

__all__ = ["InputForm", "Reading", "flatten", "map_structure", "require_targets", "train_dtype"]


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


class InputForm(enum.Enum):
    """What a fit reads from a source: a small closed set, stated by each source (:attr:`Source.form`)
    and decided once per fit (``FitPlan.train_form``, ``FitPlan.validation_form``).

    Strategies and plugins ask the form (or the properties below), never a source's class.
    """

    #: Numpy arrays in RAM: kfitx's zero-copy tf.data gather, or Keras's own array adapter on JAX and torch.
    ARRAYS = "arrays"
    #: Arrays of which some is a memory map (a ``.npy`` file): gathered batch by batch, never loaded whole.
    MEMORY_MAP = "memory-mapped arrays"
    #: Batches a Python iterator yields, a fresh iterator each pass: a generator factory, a plugin's source.
    PYTHON_BATCHES = "batches read in Python"
    #: A ``tf.data.Dataset`` of batches, read as it is.
    TF_DATA = "tf.data"
    #: A ``keras.utils.PyDataset``, read by index.
    PYDATASET = "PyDataset"
    #: Tensors only Keras's array adapter slices (ragged, sparse, strings): handed to ``model.fit`` as they are.
    KERAS_TENSORS = "tensors Keras slices"
    #: A stream only Keras's adapters read (generator object, torch ``DataLoader``, Grain, distributed dataset).
    KERAS_STREAM = "a stream Keras reads"

    @property
    def in_memory(self) -> bool:
        """Arrays the process can index (in RAM or memory-mapped): only they are split, weighted, sized."""
        return self in (InputForm.ARRAYS, InputForm.MEMORY_MAP)

    @property
    def read_by_keras(self) -> bool:
        """Input only Keras's data adapters read: ``model.fit`` is always given it as it is."""
        return self in (InputForm.KERAS_TENSORS, InputForm.KERAS_STREAM)

    @property
    def passes_through(self) -> bool:
        """``model.fit`` can be given the user's own object as it is (:meth:`Source.passthrough`)."""
        return self in (InputForm.TF_DATA, InputForm.PYDATASET, InputForm.KERAS_TENSORS, InputForm.KERAS_STREAM)

    @property
    def refills(self) -> bool:
        """With ``steps_per_epoch``, a pass that ends inside an epoch is followed by a new one (Keras 2's
        ``fit_generator`` rule), so the source's tf.data stream is one endless stream of passes; every other
        form is read one pass per iteration, ``model.fit``'s epoch rules carrying a pass across epochs."""
        return self is InputForm.PYTHON_BATCHES


@dataclass(frozen=True)
class Reading:
    """How one fit reads a source; ``FitPlan.reading()`` makes one from the fit's arguments.

    Attributes:
        batch_size: Samples per batch (arrays; streams yield their own batches).
        shuffle: ``True``: a new order each pass; ``"batch"``: within batches;
            ``False``: the stored order (arrays; a PyDataset read by a worker).
        seed: Seed of the shuffling.
        steps: Batches per epoch, or ``None`` for one pass per epoch.
        steps_per_pass: Batches in one pass of the source at ``batch_size``, where known
            (the plan resolves it once; ``None`` for a reading made outside a plan).
        class_weight: ``model.fit``'s ``class_weight``: a source read with it yields weighted
            batches ``(x, y, sample_weight)``, from :meth:`Source.as_dataset` and :meth:`Source.feed`
            alike (:mod:`kfitx.data.weights`; Keras's own adapters apply it for the input they read).
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
        automatic_grouping: kfitx chose the steps per compiled call itself: a last, partial
            group reports the epoch's last batch to callbacks (:mod:`kfitx.data.epoch_iterator`).
        initial_epoch: The fit's first epoch: the number of the first pass a source of
            Python batches is asked for (:meth:`Source.get_numpy_iterator`).
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
    steps_per_pass: int | None = None
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
    automatic_grouping: bool = False
    initial_epoch: int = 0
    runtime: Runtime = LOCAL

    @property
    def repeat(self) -> bool:
        """``steps`` given: a generator factory's stream runs across epochs, a new pass when one ends.

        Every other source is read one pass per iteration, and ``model.fit``'s epoch
        rules (those of Keras's ``EpochIterator``) carry a pass into the next epoch.
        """
        return self.steps is not None

    def worker(self, source: WorkerSettings) -> dict[str, Any] | None:
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
