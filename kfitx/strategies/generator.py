"""The ``generator`` strategy: batches made while the model trains (Keras 2's ``fit_generator``).

For data too large for RAM and for augmentation on the fly. Separation of concerns:

* the training stream is a ``tf.data`` pipeline built per source: arrays and
  ``.npy`` memory maps through :func:`kfitx._pipeline.array_dataset` (a vectorised
  gather over the mapped pages: nothing is loaded up front, and the pages read
  are file-backed, reclaimable memory); a ``tf.data.Dataset`` as it is;
  generators and PyDatasets through a :class:`kfitx._producer.Producer` (a worker
  thread or process running ahead of training by ``max_queue_size`` batches);
* the augmentation (:mod:`kfitx.augment`) is mapped over training batches only,
  in parallel, and the stream is prefetched, so producing the next batches
  overlaps the current step;
* training is ``model.fit`` over that stream, as in the ``memory`` strategy, so
  callbacks, History, ``initial_epoch`` and ``BackupAndRestore`` are Keras's own
  (steps grouped per compiled call only where the plan, :mod:`kfitx.plan`, allows);
* faults -- a generator or augmentation that raises or yields a wrong batch, a
  worker that dies or stalls -- end the fit with a :class:`KfitxError` naming
  the batch, and every worker is stopped before ``fit`` returns or raises.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import TYPE_CHECKING, Any

from kfitx._producer import Producer, pass_opener
from kfitx.data import ArraySource, DatasetSource, GeneratorSource, PyDatasetSource, Source
from kfitx.errors import AugmentationError, KfitxError, OptionError, message
from kfitx.hookspecs import hookimpl
from kfitx._pipeline import array_dataset
from kfitx.plan import FitPlan
from kfitx.strategy import Strategy

if TYPE_CHECKING:  # pragma: no cover
    from kfitx.augment import Augmentation

logger = logging.getLogger("kfitx")


def _positive(options: dict[str, Any], name: str, kind: type = int) -> None:
    value = options[name]
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, kind)) or value <= 0):
        raise OptionError(message(f"`{name}` must be a positive {kind.__name__} or None", repr(value)))


class GeneratorStrategy(Strategy):
    """Streams batches produced while the model trains, optionally augmented.

    Options:
        augment: ``None``, a callable ``fn(x, y) -> (x, y)`` on numpy batches,
            Keras preprocessing layers (one, a list, or a ``Sequential``), or an
            ``ImageDataGenerator`` (vectorised over whole batches). Training batches
            only; validation data is never augmented. See :mod:`kfitx.augment`.
        workers: Threads reading a PyDataset's batches at once. ``None``: the
            PyDataset's own ``workers`` (Keras's meaning), else 1.
        use_multiprocessing: Run the generator / PyDataset in a forked worker
            process instead of a thread (for generators that hold the GIL, or that
            may crash or hang: a process can always be stopped). ``None``: the
            PyDataset's own setting, else ``False``.
        max_queue_size: Batches the worker may produce ahead of training (what it
            holds in memory). ``None``: the PyDataset's own, else 10.
        timeout: Most seconds to wait for one batch from a worker before the fit
            stops with a :class:`WorkerError` (default 60).
        steps_per_execution: ``"auto"`` or a positive int, as in ``memory``.
        endless_after: A generator given no ``steps_per_epoch`` must end (each pass
            is an epoch); one yielding more batches than this in one pass is taken
            for an endless one and the fit stops asking for ``steps_per_epoch``.
    """

    name = "generator"
    description = ("Streams batches made while training: on-the-fly augmentation, generators, "
                   "out-of-core .npy")
    defaults = {"augment": None, "workers": None, "use_multiprocessing": None, "max_queue_size": None,
                "timeout": 60.0, "steps_per_execution": "auto", "endless_after": 100_000}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in ("workers", "max_queue_size", "endless_after"):
            _positive(self.options, name)
        _positive(self.options, "timeout", float)
        if self.options["use_multiprocessing"] not in (None, True, False):
            raise OptionError(message("`use_multiprocessing` must be True, False or None",
                                      repr(self.options["use_multiprocessing"])))
        self.augmentation: Augmentation | None = None
        if self.options["augment"] is not None:
            from kfitx.augment import adapt

            self.augmentation = adapt(self.options["augment"])

    def supports(self, source: Source) -> str | None:
        if isinstance(source, (ArraySource, DatasetSource, GeneratorSource, PyDatasetSource)):
            return None
        return ("The 'generator' strategy streams arrays, .npy files, tf.data datasets, generators and "
                f"PyDatasets, not a {source.kind} source.")

    # -- streams ----------------------------------------------------------------

    def _setting(self, source: Source, name: str, keras_name: str, default: Any) -> Any:
        value = self.options[name]
        if value is None and isinstance(source, PyDatasetSource):
            value = getattr(source.dataset, keras_name, None)
        return default if value is None else value

    def _producer(self, source: Source, *, repeat: bool, shuffle: bool, seed: int | None) -> Producer:
        return Producer(
            pass_opener(source, shuffle=shuffle, seed=seed,
                        workers=int(self._setting(source, "workers", "workers", 1))),
            kind=source.kind, repeat=repeat,
            processes=bool(self._setting(source, "use_multiprocessing", "use_multiprocessing", False)),
            queue_size=int(self._setting(source, "max_queue_size", "max_queue_size", 10)),
            timeout=float(self.options["timeout"]), endless_after=self.options["endless_after"],
        )

    def _stream(self, source: Source, *, batch_size: int, shuffle: Any, seed: int | None, repeat: bool,
                producers: list[Producer], stack: contextlib.ExitStack) -> Any:
        """A tf.data dataset of the source's batches (not augmented)."""
        import tensorflow as tf

        if isinstance(source, ArraySource):
            return array_dataset(source, batch_size, shuffle=shuffle, seed=seed, repeat=repeat)
        if isinstance(source, DatasetSource):
            return source.dataset.repeat() if repeat else source.dataset
        producer = self._producer(source, repeat=repeat, shuffle=shuffle is True, seed=seed)
        stack.callback(producer.close)
        producers.append(producer)
        first = producer.peek()
        spec = tf.nest.map_structure(lambda a: tf.TensorSpec((None, *a.shape[1:]), a.dtype), first)
        return tf.data.Dataset.from_generator(producer.batches, output_signature=spec)

    # -- fit --------------------------------------------------------------------

    def fit(self, model: Any, plan: FitPlan) -> Any:
        import tensorflow as tf

        producers: list[Producer] = []
        with contextlib.ExitStack() as stack:
            train = self._stream(plan.train, batch_size=plan.batch_size, shuffle=plan.shuffle, seed=plan.seed,
                                 repeat=plan.repeat, producers=producers, stack=stack)
            if self.augmentation is not None:
                from kfitx.augment import map_dataset

                train = map_dataset(train, self.augmentation, seed=plan.seed)
            train = train.prefetch(tf.data.AUTOTUNE)
            validation = None if plan.validation is None else self._stream(
                plan.validation, batch_size=plan.validation_batch_size, shuffle=False, seed=None,
                repeat=plan.validation_steps is not None, producers=producers, stack=stack)
            augment = None if self.augmentation is None else self.augmentation.describe()
            plan.report.note(augment=augment, workers="process" if any(p.processes for p in producers) else "thread")
            logger.info("generator: %s; %s; %d step(s) per compiled call (%s)", plan.train.describe(),
                        augment or "no augmentation", plan.steps_per_execution, plan.grouping)
            try:
                with plan.grouped(model), warnings.catch_warnings():
                    if plan.steps_per_epoch is None:  # a stream of unknown length: its end ends the epoch
                        warnings.filterwarnings("ignore", "Your input ran out of data")
                    return model.fit(**plan.fit_kwargs(train, validation))
            except Exception as err:
                fault = self._fault(producers, plan.steps_per_epoch, plan.initial_epoch)
                if fault is None or fault is err:
                    raise
                raise fault from (fault.__cause__ or err)

    def _fault(self, producers: list[Producer], steps_per_epoch: int | None,
               initial_epoch: int) -> KfitxError | None:
        """The kfitx error behind a failed fit: a producer's, or the augmentation's."""
        for producer in producers:
            if producer.error is not None:
                return producer.error
        aug = self.augmentation
        if aug is None or aug.error is None:
            return None
        if isinstance(aug.error, KfitxError):
            return aug.error
        index = aug.error_batch
        if index is None:
            where = "a training batch"
        elif steps_per_epoch:
            where = f"training batch {index % steps_per_epoch} of epoch {initial_epoch + index // steps_per_epoch + 1}"
        else:
            where = f"training batch {index} of its epoch"
        err = AugmentationError(message(
            "The augmentation must transform every training batch without raising",
            f"{type(aug.error).__name__}({str(aug.error)!r}) at {where}",
            f"Fix the augmentation ({aug.describe()}); the traceback above shows where it failed."))
        err.__cause__ = aug.error
        return err


@hookimpl
def kfitx_strategies() -> list[type[Strategy]]:
    return [GeneratorStrategy]
