"""The ``generator`` strategy: batches made while the model trains (Keras 2's ``fit_generator``).

For data too large for RAM and for augmentation on the fly. Separation of concerns:

* the training stream is the source's own ``tf.data`` stream
  (:meth:`kfitx.data.Source.as_dataset`): arrays and ``.npy`` memory maps through a
  vectorised gather over the mapped pages (nothing is loaded up front, and the
  pages read are file-backed, reclaimable memory); a ``tf.data.Dataset`` as it is;
  generators and PyDatasets read by a worker thread or process running ahead of
  training by ``max_queue_size`` batches, with this strategy's worker options;
* the augmentation (:mod:`kfitx.augment`) is mapped over training batches only,
  in parallel, and the stream is prefetched, so producing the next batches
  overlaps the current step;
* training is ``model.fit`` over that stream, as in the ``memory`` strategy, so
  callbacks, History, ``initial_epoch`` and ``BackupAndRestore`` are Keras's own
  (steps grouped per compiled call only where the plan, :mod:`kfitx.plan`, allows);
* tuning (:meth:`GeneratorStrategy.hyperparameters`): ``augment="tune"`` (or the
  ``"tune-no-flip"`` preset) leaves the augmentation to the search: flips, shift,
  rotation and zoom, each on or off, as AutoKeras's ``ImageAugmentation`` block
  searches them, as an ``ImageDataGenerator``;
* faults -- a generator or augmentation that raises or yields a wrong batch, a
  worker that dies or stalls -- end the fit with a :class:`KfitxError` naming
  the batch, and every worker is stopped before ``fit`` returns or raises (both
  by the boundary ``kfitx.fit`` opens, :mod:`kfitx.data.boundaries`).
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

from kfitx.data import Source
from kfitx.errors import AugmentationError, OptionError, message
from kfitx.hookspecs import hookimpl
from kfitx.plan import FitPlan
from kfitx.plan.checks import closest
from kfitx.strategy import BACKENDS, Strategy

if TYPE_CHECKING:  # pragma: no cover
    from kfitx.augment import Augmentation

logger = logging.getLogger("kfitx")


#: ``augment`` presets searched by the tuner: which transforms each one tunes.
AUGMENT_PRESETS: dict[str, tuple[str, ...]] = {
    "tune": ("flip", "shift", "rotation", "zoom"),
    "tune-no-flip": ("shift", "rotation", "zoom"),  # digits, text, anything with a left and a right
}


def _positive(options: dict[str, Any], name: str, kind: type[int] | type[float] = int) -> None:
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
            In a keras-tuner search, ``"tune"`` or ``"tune-no-flip"``: the
            augmentation is tuned (see :meth:`hyperparameters`).
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
    backends = BACKENDS
    description = ("Streams batches made while training: on-the-fly augmentation, generators, "
                   "out-of-core .npy")
    defaults = {"augment": None, "workers": None, "use_multiprocessing": None, "max_queue_size": None,
                "timeout": 60.0, "steps_per_execution": "auto", "endless_after": 100_000}
    interchangeable = True  # without augmentation

    def is_interchangeable(self) -> bool:
        """Without augmentation it trains as ``model.fit`` does (a tuned preset counts as augmentation)."""
        return self.options["augment"] is None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in ("workers", "max_queue_size", "endless_after"):
            _positive(self.options, name)
        _positive(self.options, "timeout", float)
        if self.options["use_multiprocessing"] not in (None, True, False):
            raise OptionError(message("`use_multiprocessing` must be True, False or None",
                                      repr(self.options["use_multiprocessing"])))
        self.augmentation: Augmentation | None = None
        augment = self.options["augment"]
        if isinstance(augment, str):
            if augment not in AUGMENT_PRESETS:
                raise AugmentationError(message(
                    "`augment` must be an augmentation (a function, Keras layers, an ImageDataGenerator) or, in "
                    f"a keras-tuner search, a preset tuned per trial: {', '.join(map(repr, AUGMENT_PRESETS))}",
                    repr(augment), closest(augment, list(AUGMENT_PRESETS)).strip() or None))
        elif augment is not None:
            from kfitx.augment import adapt

            self.augmentation = adapt(self.options["augment"])

    def supports(self, source: Source) -> str | None:
        return None  # every kind of source can be streamed

    def hyperparameters(self, hp: Any) -> dict[str, Any]:
        """With ``augment="tune"`` (or a preset), declares the augmentation's strength; returns it.

        As AutoKeras's ``ImageAugmentation`` block: ``horizontal_flip`` and ``vertical_flip``
        (``hp.Boolean``), ``shift`` (``hp.Choice`` of 0 or 0.1 of the width and height),
        ``rotation`` (0 or 36 degrees, a tenth of a turn) and ``zoom`` (0 or 0.1), each
        under this strategy's name (``generator/shift``). ``"tune-no-flip"`` leaves the
        flips out. The value is an ``ImageDataGenerator`` (images ``(batch, height,
        width, channels)``), or ``None`` when every transform is off. Any other
        ``augment`` declares nothing.
        """
        searched = AUGMENT_PRESETS.get(self.options["augment"]) if isinstance(self.options["augment"], str) else None
        if searched is None:
            return {}
        settings: dict[str, Any] = {}
        if "flip" in searched:
            settings["horizontal_flip"] = bool(hp.Boolean("horizontal_flip", default=False))
            settings["vertical_flip"] = bool(hp.Boolean("vertical_flip", default=False))
        if "shift" in searched:
            settings["width_shift_range"] = settings["height_shift_range"] = hp.Choice("shift", [0.0, 0.1]) or 0.0
        if "rotation" in searched:
            settings["rotation_range"] = hp.Choice("rotation", [0, 36]) or 0
        if "zoom" in searched:
            settings["zoom_range"] = hp.Choice("zoom", [0.0, 0.1]) or 0.0
        if not any(settings.values()):
            return {"augment": None}
        from kfitx.augment import image_data_generator_class

        return {"augment": image_data_generator_class()(**settings)}

    def _reading(self) -> dict[str, Any]:
        """The worker options, as the plan's reading takes them."""
        names = ("workers", "use_multiprocessing", "max_queue_size", "timeout", "endless_after")
        return {name: self.options[name] for name in names}

    def fit(self, model: Any, plan: FitPlan) -> Any:
        if isinstance(self.options["augment"], str):
            raise OptionError(message("`augment` to be an augmentation in a fit outside a search",
                                      repr(self.options["augment"]), "A preset is tuned by kfitx.tuner "
                                      "(StrategyHyperModel); pass an augmentation to kfitx.fit."))
        options = self._reading()
        if self.augmentation is None:  # arrays on JAX / torch: Keras's own array adapter, no tf.data
            train = plan.train_input(**options)
        else:
            from kfitx.augment import map_dataset

            train = map_dataset(plan.train_dataset(**options), self.augmentation, seed=plan.seed,
                                steps_per_epoch=plan.steps_per_epoch, initial_epoch=plan.initial_epoch)
        if plan.own_stream(train):  # kfitx's own tf.data stream, not arrays Keras cuts or the user's own input
            import tensorflow as tf

            train = train.prefetch(tf.data.AUTOTUNE)
        validation = plan.validation_input(**options)
        augment = None if self.augmentation is None else self.augmentation.describe()
        reading = plan.reading(**options)
        processes = any((reading.worker(s) or {}).get("use_multiprocessing")
                        for s in (plan.train, plan.validation) if s is not None)
        plan.report.note(augment=augment, workers="process" if processes else "thread")
        logger.info("generator: %s; %s; %d step(s) per compiled call (%s)", plan.train.describe(),
                    augment or "no augmentation", plan.steps_per_execution, plan.grouping)
        with plan.grouped(model), warnings.catch_warnings():
            if plan.steps_per_epoch is None:  # a stream of unknown length: its end ends the epoch
                warnings.filterwarnings("ignore", "Your input ran out of data")
            return model.fit(**plan.fit_kwargs(train, validation))


@hookimpl
def kfitx_strategies() -> list[type[Strategy]]:
    return [GeneratorStrategy]
