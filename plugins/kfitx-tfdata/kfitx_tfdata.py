"""kfitx-tfdata: the ``tfdata`` strategy, ``model.fit`` over a tuned ``tf.data`` pipeline.

The TensorFlow-specific fast path for arrays and ``tf.data`` datasets:

* the batches are the source's own tf.data stream (``plan.train_dataset()``):
  for arrays, kfitx's gather over tensors that alias the arrays (floats as Keras's
  ``floatx``; memory-mapped ``.npy`` files are never loaded), a new permutation
  every epoch (or a bounded ``shuffle_buffer``), ``parallel_calls`` batches at once;
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
``kfitx.data``, ``kfitx.errors`` and ``kfitx.augment``. Pipeline errors (an
augmentation that raises) are kfitx's to map: ``kfitx.fit`` raises them as
:class:`kfitx.AugmentationError`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import kfitx
from kfitx.data import Source
from kfitx.errors import OptionError, message

__all__ = ["TFDataStrategy", "kfitx_strategies"]


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
    #: model.fit reads a tf.data pipeline on every backend (Keras turns its batches into the backend's arrays).
    backends = ("tensorflow", "jax", "torch")
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
        return None  # every source has a tf.data stream: generators and PyDatasets through kfitx's worker

    # -- the pipeline ---------------------------------------------------------

    def _tune(self, value: Any) -> Any:
        import tensorflow as tf

        return tf.data.AUTOTUNE if value == "auto" else value

    def reading(self, plan: kfitx.FitPlan, validation: bool = False) -> kfitx.data.Reading:
        """How the plan's data is read: kfitx's reading with this strategy's shuffle buffer and parallelism."""
        parallel = self.options["parallel_calls"]
        return plan.reading(validation, shuffle_buffer=self.options["shuffle_buffer"],
                            parallel_calls=None if parallel == "auto" else parallel,
                            deterministic=self.options["deterministic"])

    def pipeline(self, plan: kfitx.FitPlan) -> Any:
        """The training pipeline: the source's batches, cache, augmentation, ``map_fn``, prefetch."""
        import tensorflow as tf

        reading = self.reading(plan)
        cache = self.options["cache"]
        if cache and not plan.train.in_memory:  # cache one pass, then repeat the cached pass
            dataset = plan.train.as_dataset(dataclasses.replace(reading, steps=None))
            dataset = dataset.cache("" if cache is True else cache)
            if reading.repeat and plan.train_form.refills:  # a generator's passes run on within an epoch
                dataset = dataset.repeat()
        else:
            dataset = plan.train.as_dataset(reading)
        if self.augmentation is not None:
            from kfitx import augment

            dataset = augment.map_dataset(dataset, self.augmentation, seed=plan.seed,
                                          steps_per_epoch=plan.steps_per_epoch, initial_epoch=plan.initial_epoch)
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

    def fit(self, model: Any, plan: kfitx.FitPlan) -> Any:
        train = self.pipeline(plan)
        validation = None
        if plan.validation is not None:
            validation = plan.validation.as_dataset(self.reading(plan, validation=True))
            validation = validation.prefetch(self._tune(self.options["prefetch"]))
        plan.report.note(
            augment=None if self.augmentation is None else self.augmentation.describe(),
            map_fn=getattr(self.options["map_fn"], "__name__", None),
            cache="not needed for arrays" if plan.train.in_memory else self.options["cache"])
        with plan.grouped(model):
            return model.fit(**plan.fit_kwargs(train, validation))


@kfitx.hookimpl
def kfitx_strategies() -> list[type[kfitx.Strategy]]:
    return [TFDataStrategy]
