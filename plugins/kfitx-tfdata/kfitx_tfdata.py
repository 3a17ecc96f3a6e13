"""kfitx-tfdata: the ``tfdata`` strategy, ``model.fit`` over a tuned ``tf.data`` pipeline.

The TensorFlow-specific fast path for arrays and ``tf.data`` datasets:

* arrays become tensors once (floats as Keras's ``floatx``); every epoch a new
  permutation of the sample indices is batched and each batch is gathered in a
  parallel map. Memory-mapped arrays (``kfitx.data.npy``) are not loaded: each
  batch reads only its rows;
* augmentation runs in parallel maps, overlapped with training by ``prefetch``:
  ``augment`` takes anything ``kfitx.augment`` accepts (a function on numpy
  batches, Keras preprocessing layers, an ``ImageDataGenerator``), ``map_fn`` a
  TensorFlow function ``fn(x, y) -> (x, y)`` that runs in graph mode;
* a ``tf.data`` source can be cached (in memory, or in a file) before
  augmentation, so an expensive decode runs once;
* ``model.fit`` trains, so every callback behaves as Keras makes it behave, and
  several steps run per compiled call only where the fit plan allows it (no
  callback acts per batch), as in kfitx's own strategies.

Only kfitx's public API is used: ``kfitx.Strategy``, ``kfitx.FitPlan``, ``kfitx.hookimpl``,
``kfitx.data``, ``kfitx.errors`` and ``kfitx.augment``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import kfitx
from kfitx.data import ArraySource, DatasetSource, Source
from kfitx.errors import AugmentationError, DataError, OptionError, message

__all__ = ["TFDataStrategy", "kfitx_strategies"]

def _memory_mapped(array: Any) -> bool:
    return isinstance(array, np.memmap)


def _tuples(structure: Any) -> Any:
    """Lists become tuples: tf.data would stack a list into one tensor."""
    if isinstance(structure, dict):
        return {k: _tuples(v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return tuple(_tuples(v) for v in structure)
    return structure


def _auto_or_positive(name: str, value: Any) -> None:
    if value != "auto" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise OptionError(message(f"`{name}` must be 'auto' or a positive int", repr(value)))


class TFDataStrategy(kfitx.Strategy):
    """``model.fit`` over a tuned ``tf.data`` pipeline, from arrays or a ``tf.data.Dataset``.

    Options:
        augment: ``None``, or anything ``kfitx.augment.adapt`` accepts: a function
            ``fn(x, y) -> (x, y)`` on numpy batches, Keras preprocessing layers, an
            ``ImageDataGenerator``. Mapped over training batches in parallel.
        map_fn: ``None``, or a TensorFlow function ``fn(x, y) -> (x, y)`` on batch
            tensors, mapped in graph mode (no Python per batch), after ``augment``.
        cache: ``False``; ``True`` to cache a ``tf.data`` source's batches in memory
            after the first epoch, or a file path to cache them on disk. Arrays
            need no cache (they are in memory, or memory-mapped), so it is ignored there.
        shuffle_buffer: ``None`` (a full permutation per epoch, as ``model.fit``) or
            the size of tf.data's shuffle buffer, in samples.
        parallel_calls: ``"auto"`` (tf.data's AUTOTUNE) or the number of batches
            gathered and augmented at once.
        prefetch: ``"auto"`` or the number of batches prepared ahead of training.
        deterministic: ``True`` keeps the batch order (reproducible); ``False`` lets
            a batch that is ready overtake a slow one.
        steps_per_execution: ``"auto"``: 16 steps per compiled call (or the largest
            number dividing ``steps_per_epoch``) when no callback of the fit acts per
            batch (the fit plan decides, and knows keras-tuner's callbacks), else 1,
            so batch callbacks see every batch; or an int.
    """

    name = "tfdata"
    description = "model.fit over a tuned tf.data pipeline: parallel gather and augmentation, prefetch, cache"
    defaults = {"augment": None, "map_fn": None, "cache": False, "shuffle_buffer": None,
                "parallel_calls": "auto", "prefetch": "auto", "deterministic": True,
                "steps_per_execution": "auto"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in ("parallel_calls", "prefetch", "steps_per_execution"):
            _auto_or_positive(name, self.options[name])
        buffer = self.options["shuffle_buffer"]
        if buffer is not None and not (isinstance(buffer, int) and not isinstance(buffer, bool) and buffer >= 1):
            raise OptionError(message("`shuffle_buffer` must be None (a full shuffle) or a positive int",
                                      repr(buffer)))
        if self.options["map_fn"] is not None and not callable(self.options["map_fn"]):
            raise OptionError(message("`map_fn` must be a TensorFlow function fn(x, y) -> (x, y)",
                                      type(self.options["map_fn"]).__name__))
        cache = self.options["cache"]
        if not isinstance(cache, (bool, str)):
            raise OptionError(message("`cache` must be False, True (memory) or a file path", repr(cache)))
        self.augmentation = None
        if self.options["augment"] is not None:
            from kfitx import augment

            self.augmentation = augment.adapt(self.options["augment"])

    def supports(self, source: Source) -> str | None:
        import keras

        if keras.backend.backend() != "tensorflow":
            return f"The 'tfdata' strategy needs Keras's TensorFlow backend, not {keras.backend.backend()}."
        if isinstance(source, (ArraySource, DatasetSource)):
            return None
        return ("The 'tfdata' strategy reads arrays and tf.data datasets. Wrap a generator in "
                "tf.data.Dataset.from_generator(...), or use a strategy that streams Python generators.")

    # -- the pipeline ---------------------------------------------------------

    def _tune(self, value: Any) -> Any:
        import tensorflow as tf

        return tf.data.AUTOTUNE if value == "auto" else value

    def arrays_dataset(self, source: ArraySource, batch_size: int, *, shuffle: bool | str = False,
                       seed: int | None = None, repeat: bool = False) -> Any:
        """Batches of ``source`` as a ``tf.data.Dataset`` (no augmentation, no prefetch).

        Args:
            source: The arrays.
            batch_size: Samples per batch; the last one may be smaller, as in ``model.fit``.
            shuffle: ``True``: a new order every epoch; ``"batch"``: shuffled within
                each batch; ``False``: the stored order.
            seed: Seed of the shuffling.
            repeat: Repeat forever (for ``steps_per_epoch``).
        """
        import keras
        import tensorflow as tf

        floatx = keras.config.floatx()

        def as_leaf(array: np.ndarray) -> Any:
            if _memory_mapped(array):
                return array  # read batch by batch in gather()
            return tf.convert_to_tensor(array, dtype=floatx if array.dtype.kind == "f" else None)

        def gather(indices: Any) -> Any:
            def take(leaf: Any) -> Any:
                if not isinstance(leaf, np.ndarray):
                    return tf.gather(leaf, indices)
                dtype = np.dtype(floatx) if leaf.dtype.kind == "f" else leaf.dtype
                rows = tf.numpy_function(lambda i: np.asarray(leaf[i], dtype=dtype), [indices],
                                         tf.as_dtype(dtype), stateful=False)
                rows.set_shape((None,) + leaf.shape[1:])
                return rows

            return tf.nest.map_structure(take, leaves)

        parts = _tuples(source.arrays())
        leaves = tf.nest.map_structure(as_leaf, parts[0] if len(parts) == 1 else parts)
        indices = tf.data.Dataset.range(source.num_samples)
        if shuffle is True:
            indices = indices.shuffle(self.options["shuffle_buffer"] or source.num_samples, seed=seed,
                                      reshuffle_each_iteration=True)
        indices = indices.batch(batch_size)
        if shuffle == "batch":
            indices = indices.map(lambda i: tf.random.shuffle(i, seed=seed))
        if repeat:
            indices = indices.repeat()
        return indices.map(gather, num_parallel_calls=self._tune(self.options["parallel_calls"]),
                           deterministic=self.options["deterministic"])

    def pipeline(self, source: Source, batch_size: int = 32, *, shuffle: bool | str = True,
                 seed: int | None = None, repeat: bool = False) -> Any:
        """The training pipeline: batches, cache, augmentation, ``map_fn``, prefetch."""
        import tensorflow as tf

        if isinstance(source, ArraySource):
            dataset = self.arrays_dataset(source, batch_size, shuffle=shuffle, seed=seed, repeat=repeat)
        elif isinstance(source, DatasetSource):
            dataset = source.dataset
            cache = self.options["cache"]
            if cache:
                dataset = dataset.cache("" if cache is True else cache)
        else:
            raise DataError(message("Expected arrays or a tf.data.Dataset", source.describe()))
        if self.augmentation is not None:
            from kfitx import augment

            dataset = augment.map_dataset(dataset, self.augmentation, seed=seed)
        if self.options["map_fn"] is not None:
            dataset = dataset.map(self._map_fn(dataset.element_spec),
                                  num_parallel_calls=self._tune(self.options["parallel_calls"]),
                                  deterministic=self.options["deterministic"])
        options = tf.data.Options()
        options.deterministic = self.options["deterministic"]
        options.autotune.enabled = True
        return dataset.with_options(options).prefetch(self._tune(self.options["prefetch"]))

    def _map_fn(self, spec: Any) -> Any:
        fn = self.options["map_fn"]
        if not isinstance(spec, tuple):  # x only
            return lambda x: fn(x, None)[0]

        def apply(x: Any, y: Any = None, *rest: Any) -> Any:
            new_x, new_y = fn(x, y)
            return (new_x, new_y, *rest)

        return apply

    # -- fit ------------------------------------------------------------------

    def _validation(self, source: Source, batch_size: int) -> Any:
        if isinstance(source, ArraySource):
            return self.arrays_dataset(source, batch_size).prefetch(self._tune(self.options["prefetch"]))
        if isinstance(source, DatasetSource) or source.kind == "PyDataset":
            return source.dataset  # type: ignore[attr-defined]
        raise DataError(message("validation_data for the 'tfdata' strategy must be arrays, (x, y), a "
                                "tf.data.Dataset or a PyDataset", source.describe()))

    def _augmentation_failed(self) -> None:
        aug = self.augmentation
        if aug is not None and getattr(aug, "error", None) is not None:
            error = aug.error
            raise AugmentationError(message(
                "The augmentation to run on every training batch",
                f"{type(error).__name__}: {error} on batch {aug.error_batch}",
                "Fix the augmentation; it runs on numpy batches of the training data only.",
            )) from error

    def fit(self, model: Any, plan: kfitx.FitPlan) -> Any:
        train = self.pipeline(plan.train, plan.batch_size, shuffle=plan.shuffle, seed=plan.seed, repeat=plan.repeat)
        validation = None if plan.validation is None else self._validation(plan.validation,
                                                                             plan.validation_batch_size)
        plan.report.note(
            augment=None if self.augmentation is None else self.augmentation.describe(),
            map_fn=getattr(self.options["map_fn"], "__name__", None),
            cache=self.options["cache"] if isinstance(plan.train, DatasetSource) else "not needed for arrays")
        with plan.grouped(model):
            try:
                history = model.fit(**plan.fit_kwargs(train, validation))
            except Exception:
                self._augmentation_failed()  # the augmentation's own error, if it raised
                raise
        self._augmentation_failed()
        return history


@kfitx.hookimpl
def kfitx_strategies() -> list[type[kfitx.Strategy]]:
    return [TFDataStrategy]
