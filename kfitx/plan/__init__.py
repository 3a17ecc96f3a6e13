"""``FitPlan``: the arguments of one ``kfitx.fit``, resolved once, before any strategy runs.

Separation of concerns (each argument belongs to one place):

* this module: every ``model.fit`` argument -- defaults applied, values checked,
  ``sample_weight`` / ``validation_split`` / ``validation_data`` turned into a
  training and a validation source, ``steps_per_epoch`` / ``validation_steps``
  reconciled with the data, the callbacks as a list, the seed applied, and how
  many steps run per compiled call (with the reason, knowing the distribution
  scope and the backend);
* the strategy: its own options (checked in its ``__init__``) and the training;
* :class:`FitReport`: what was decided, filled by the plan, the strategy and the
  ``kfitx_fit`` wrappers; ``kfitx.fit`` turns it into ``history.kfitx``, once.

A strategy that delegates to ``model.fit`` needs three things of the plan::

    def fit(self, model, plan):
        train = plan.train_dataset()  # the source's tf.data stream, read as the plan says
        with plan.grouped(model):
            return model.fit(**plan.fit_kwargs(train, plan.validation_dataset()))
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from kfitx.data import InputForm, Reading, Source, coerce, keras_cuts
from kfitx.data.epoch_iterator import limit_steps
from kfitx.data.epochs import across_epochs
from kfitx.errors import DataError, message
from kfitx.plan.against_model import check_against_model, check_validation_loss
from kfitx.plan.checks import (
    FIT_ARGS,
    check_fit_args,
    check_input_dtypes,
    check_inputs,
    check_model,
)
from kfitx.plan.grouping import WantsGrouping, decide_grouping, per_batch_callbacks, steps_per_execution
from kfitx.runtime import LOCAL, Runtime, distribute, resolve

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

__all__ = ["FIT_ARGS", "FitPlan", "FitReport", "Planned", "build_plan", "check_fit_args", "check_model"]


class Planned(WantsGrouping, Protocol):
    """What the plan reads of the strategy it is made for (a :class:`kfitx.Strategy`): its name and grouping."""

    @property
    def name(self) -> str: ...

@dataclass
class FitReport:
    """What kfitx decided for one fit; ``kfitx.fit`` returns it as ``history.kfitx`` (a dict).

    Attributes:
        strategy: The strategy that trained (for ``auto``: the one it chose).
        steps_per_execution: Steps per compiled call.
        grouping: Why that many.
        details: Everything else, added with :meth:`note` by the strategy
            (``augment``, ``workers``, ...) and by ``kfitx_fit`` wrappers.
        automatic: kfitx chose ``steps_per_execution`` itself, because no callback acts per batch
            (:attr:`kfitx.plan.grouping.Grouping.automatic`); not in :meth:`as_dict`.
    """

    strategy: str
    steps_per_execution: int
    grouping: str
    details: dict[str, Any] = field(default_factory=dict)
    automatic: bool = False

    def note(self, **items: Any) -> None:
        """Adds entries to the report."""
        self.details.update(items)

    def as_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "steps_per_execution": self.steps_per_execution,
                "grouping": self.grouping, **self.details}


@dataclass(frozen=True, eq=False)
class FitPlan:
    """One fit, resolved: what ``model.fit`` would derive from its arguments.

    Strategies read it; nobody changes it (``dataclasses.replace`` makes a variant).

    Attributes:
        train: The training source (``sample_weight`` joined, the validation split cut off).
        train_form: What a fit reads from :attr:`train` (:class:`kfitx.data.InputForm`), decided
            once, when the plan is made: strategies and plugins ask it, never the source's class.
        validation_form: The same for :attr:`validation`, or ``None`` without validation data.
        report: What was decided (becomes ``history.kfitx``); ``strategy``,
            ``steps_per_execution`` and ``grouping`` read it.
        validation: The validation source, or ``None``.
        epochs, initial_epoch, batch_size, shuffle, seed, verbose, class_weight,
        validation_freq: As in ``model.fit``, defaults applied
            (``batch_size`` 32, ``verbose`` ``"auto"``, ...).
        validation_batch_size: Defaults to ``batch_size``.
        steps_per_epoch: What ``model.fit``'s argument is (strategies pass it on): batches per epoch, or
            ``None`` for one pass of the data (a generator source's own ``steps_per_epoch`` counts;
            ``keras.config.max_steps_per_epoch`` limits it).
        validation_steps: Validation batches, or ``None`` for one pass.
        steps_per_pass, validation_steps_per_pass: Batches in one pass of :attr:`train` (of
            :attr:`validation`) at its batch size, or ``None`` where unknown (a stream): resolved once,
            here; readers never recompute a pass (:attr:`batches_per_epoch`).
        callbacks: The fit's callbacks as a list (or the ``CallbackList`` given).
        targets: Whether batches must hold ``y`` (the model is compiled with a loss).
        runtime: The backend and the distribution the fit trains under (:class:`kfitx.runtime.Runtime`),
            resolved once; every reading of the plan carries it to the data layer.
    """

    train: Source
    report: FitReport
    validation: Source | None = None
    epochs: int = 1
    initial_epoch: int = 0
    batch_size: int = 32
    validation_batch_size: int = 32
    shuffle: bool | str = True
    seed: int | None = None
    verbose: int | str = "auto"
    class_weight: Mapping[int, float] | None = None
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    steps_per_pass: int | None = None
    validation_steps_per_pass: int | None = None
    validation_freq: int | Collection[int] = 1
    callbacks: list[keras.callbacks.Callback] | keras.callbacks.CallbackList = field(default_factory=list)
    targets: bool = False
    runtime: Runtime = LOCAL
    train_form: InputForm = field(init=False)
    validation_form: InputForm | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_form", self.train.form)
        object.__setattr__(self, "validation_form", None if self.validation is None else self.validation.form)

    @property
    def strategy(self) -> str:
        """The name of the strategy the plan was made for."""
        return self.report.strategy

    @property
    def steps_per_execution(self) -> int:
        """Steps per compiled call for the model's own step."""
        return self.report.steps_per_execution

    @property
    def grouping(self) -> str:
        """Why :attr:`steps_per_execution` is what it is."""
        return self.report.grouping

    @property
    def automatic_grouping(self) -> bool:
        """kfitx chose :attr:`steps_per_execution` itself (no callback acts per batch), not the user."""
        return self.report.automatic

    @property
    def batches_per_epoch(self) -> int | None:
        """Batches each training epoch reads: ``steps_per_epoch``, else one pass; ``None`` when that is
        unknown (a stream read until it ends)."""
        return self.steps_per_epoch or self.steps_per_pass

    def reading(self, validation: bool = False, **options: Any) -> Reading:
        """How to read :attr:`train` (or, with ``validation``, :attr:`validation`) for this fit.

        Training: ``batch_size``, ``shuffle``, ``seed``, ``steps_per_epoch`` and
        ``class_weight``; validation: ``validation_batch_size``,
        ``validation_steps``, no shuffling. ``options`` set the rest of
        :class:`kfitx.data.Reading` (a strategy's worker settings, ...).
        """
        base: dict[str, Any]
        if validation:
            base = {"batch_size": self.validation_batch_size, "steps": self.validation_steps,
                    "steps_per_pass": self.validation_steps_per_pass, "targets": self.targets,
                    "runtime": self.runtime}
        else:
            base = {"batch_size": self.batch_size, "shuffle": self.shuffle, "seed": self.seed,
                    "steps": self.steps_per_epoch, "steps_per_pass": self.steps_per_pass,
                    "class_weight": self.class_weight, "targets": self.targets,
                    "automatic_grouping": self.automatic_grouping,
                    "initial_epoch": self.initial_epoch, "runtime": self.runtime}
        return Reading(**{**base, **options})

    def train_dataset(self, **options: Any) -> tf.data.Dataset:
        """:attr:`train` as a ``tf.data.Dataset``, read as :meth:`reading` says."""
        return self.train.as_dataset(self.reading(**options))

    def validation_dataset(self, **options: Any) -> tf.data.Dataset | None:
        """:attr:`validation` as a ``tf.data.Dataset``, or ``None`` without validation data."""
        if self.validation is None:
            return None
        return self.validation.as_dataset(self.reading(validation=True, **options))

    def train_input(self, *, passthrough: bool = False, **options: Any) -> object:
        """:attr:`train` in the form ``model.fit`` reads fastest on this backend.

        * input only Keras's adapters read (:attr:`train_form` ``KERAS_TENSORS`` or ``KERAS_STREAM``:
          generator objects, torch ``DataLoader``, Grain, ragged and sparse tensors, ...): as it is;
        * with ``passthrough`` (a strategy that adds nothing to streams), a tf.data
          dataset or a PyDataset as it is, too (:meth:`kfitx.data.Source.passthrough`);
        * on JAX and torch, arrays in RAM (``ARRAYS``) as they are (``plan.train.arrays()``): Keras's
          own array adapter cuts numpy batches without TensorFlow;
        * otherwise -- arrays on TensorFlow, memory maps (Keras would load a map whose
          floats are not ``floatx`` whole, to cast it), Python batches (generator factories,
          plugins' sources), and streams without ``passthrough`` -- :meth:`train_dataset`.

        :meth:`fit_kwargs` passes the batch size and the shuffling with what Keras cuts or reads itself.
        """
        return self._input(self.train, self.train_form, passthrough, self.reading(**options))

    def validation_input(self, *, passthrough: bool = False, **options: Any) -> object:
        """:attr:`validation` as :meth:`train_input` gives the training data, or ``None``."""
        if self.validation is None:
            return None
        assert self.validation_form is not None
        return self._input(self.validation, self.validation_form, passthrough,
                           self.reading(validation=True, **options))

    @staticmethod
    def _input(source: Source, form: InputForm, passthrough: bool, reading: Reading) -> object:
        if form.read_by_keras or (passthrough and form.passes_through):
            return source.passthrough()
        if keras_cuts(source, reading.runtime):
            return source.arrays()
        return source.as_dataset(reading)

    def own_stream(self, data: object, validation: bool = False) -> TypeGuard[tf.data.Dataset]:
        """Whether ``data`` -- what a strategy made of :attr:`train` (or :attr:`validation`) -- is a tf.data
        stream kfitx built (which it shuffled and batched; a strategy may map or prefetch it), rather than
        arrays Keras cuts (a tuple) or the user's own input, which Keras reads as ``model.fit`` reads it."""
        source, form = (self.validation, self.validation_form) if validation else (self.train, self.train_form)
        if isinstance(data, tuple) or source is None or form is None:
            return False
        return not (form.passes_through and data is source.passthrough())

    def fit_kwargs(self, train: object, validation: object = None) -> dict[str, Any]:
        """The keyword arguments of ``model.fit(**plan.fit_kwargs(train, validation))``.

        Args:
            train: The training data the strategy made of :attr:`train`: a dataset
                (tf.data or a PyDataset, already batched and shuffled: Keras does
                neither for datasets), or the tuple ``plan.train.arrays()``, which
                Keras then batches and shuffles as the plan says.
            validation: The same for :attr:`validation`, or ``None`` for no validation.
        """
        kwargs: dict[str, Any] = {
            "epochs": self.epochs, "initial_epoch": self.initial_epoch, "verbose": self.verbose,
            "callbacks": self.callbacks, "class_weight": self.class_weight, "steps_per_epoch": self.steps_per_epoch,
        }
        if isinstance(train, tuple):
            kwargs.update(zip(("x", "y", "sample_weight"), train))
            kwargs.update(batch_size=self.batch_size, shuffle=self.shuffle)
        elif not self.own_stream(train):  # the user's own stream: Keras reads it as model.fit does
            kwargs.update(x=train, shuffle=self.shuffle)
        else:
            # Shuffled by whoever built it, and weighted by the source's reading (kfitx.data.weights).
            kwargs.update(x=train, shuffle=False, class_weight=None)
            kwargs["x"] = self._held_open(kwargs["x"], self.train_form, self.steps_per_epoch, spare_pass=True)
        if validation is not None:
            if self.own_stream(validation, validation=True):
                validation = self._held_open(validation, self.validation_form, self.validation_steps)
            kwargs.update(validation_data=validation, validation_steps=self.validation_steps,
                          validation_freq=self.validation_freq)
            if isinstance(validation, tuple):
                kwargs["validation_batch_size"] = self.validation_batch_size
        return kwargs

    def _held_open(self, dataset: object, form: InputForm | None, steps: int | None,
                   spare_pass: bool = False) -> object:
        """kfitx's own stream of in-memory arrays, read through one iterator for the whole fit (:func:`across_epochs`)
        where every epoch reads it whole: no ``steps``, no distribution, no callback acting per batch (one could end an
        epoch or an evaluation early), and on TensorFlow only: on JAX and torch ``model.fit`` builds an unbuilt model
        from a batch read off a fresh iterator first, which from a held-open stream would be the epoch's first."""
        if (steps is not None or form is None or not form.in_memory or self.runtime.numpy_batches
                or self.runtime.distributed or self.runtime.tf_strategy is not None
                or per_batch_callbacks(self.callbacks)):
            return dataset
        return across_epochs(dataset, spare_pass=spare_pass)

    @contextlib.contextmanager
    def grouped(self, model: keras.Model) -> Iterator[None]:
        """Runs the body with the model at :attr:`steps_per_execution`, then puts it back.

        Under a ``tf.distribute`` strategy the body also runs in the model's
        strategy scope, and under ``MultiWorkerMirroredStrategy`` with Keras's
        multi-worker faults worked around (:mod:`kfitx.runtime.distribute`), so that
        ``model.fit`` trains there.
        """
        with distribute.training(model, self.runtime), steps_per_execution(model, self.steps_per_execution):
            yield


# -- the training and validation sources -----------------------------------------------------------


def _split(source: Source, sample_weight: object, validation_split: float,
           validation_data: object) -> tuple[Source, Source | None]:
    """The training and validation sources, as ``model.fit`` derives them (``kfitx.fit`` hands
    ``validation_data`` over already a source, the installed ``kfitx_sources`` hook asked first)."""
    if sample_weight is not None:
        source = source.with_sample_weight(sample_weight)
    if validation_split and validation_data is None:
        return source.split(validation_split)
    return source, None if validation_data is None else coerce(validation_data)


def _needs_targets(model: keras.Model) -> bool:
    """Whether Keras's own step will need ``y``: a compiled loss, and neither ``train_step`` nor
    ``compute_loss`` overridden (a custom step may train on x alone)."""
    import keras

    if getattr(model, "loss", None) is None:
        return False
    return all(getattr(type(model), name, None) is getattr(keras.Model, name, None)
               for name in ("train_step", "compute_loss"))


# -- the plan -------------------------------------------------------------------------------------


def build_plan(model: keras.Model, source: Source, strategy: Planned, fit_args: Mapping[str, Any],
               runtime: Runtime | None = None) -> FitPlan:
    """Resolves ``fit_args`` (names from :data:`FIT_ARGS`) for ``strategy`` training ``model`` on ``source``.

    ``strategy`` is the :class:`kfitx.Strategy` that will train (its ``name`` and
    ``grouping()`` are read); ``runtime`` the fit's (``kfitx.fit`` resolves it once;
    by default :func:`kfitx.runtime.resolve` is asked here). ``validation_data`` may be a
    source already (``kfitx.fit`` coerces it with the installed ``kfitx_sources`` hook asked first).

    Applies the seed (``keras.utils.set_random_seed``), so that layers' randomness
    is reproducible whichever strategy trains.

    Raises:
        OptionError: an unknown fit argument or a bad value.
        DataError: data that cannot be split or weighted as asked, or arrays whose
            samples do not have the shape of the model's input.
    """
    import keras

    runtime = runtime or resolve(model)
    args = dict(check_fit_args(fit_args))
    train, validation = _split(source, args.pop("sample_weight", None), args.pop("validation_split", 0.0) or 0.0,
                               args.pop("validation_data", None))
    targets = _needs_targets(model)
    for role, part in (("x", train), ("validation_data x", validation)):
        check_against_model(model, part, role, runtime)
        if part is None:
            continue
        form = part.form
        if form is InputForm.KERAS_TENSORS:
            check_input_dtypes(model, part.x, role)
        if form.in_memory:
            check_inputs(model, part.x, role)
            if targets and part.y is None:
                raise DataError(message(
                    f"Targets for {'x' if role == 'x' else 'validation_data'}: the model is compiled with a loss",
                    "x alone (y=None)", "Pass y (kfitx.fit(model, x, y) or validation_data=(x_val, y_val)); a "
                    "model that computes its own loss (add_loss) is compiled with loss=None."))
    batch_size = args.pop("batch_size", None) or 32
    steps = limit_steps(train.default_steps(args.pop("steps_per_epoch", None), "steps_per_epoch"))
    validation_steps = args.pop("validation_steps", None)
    validation_batch_size = args.pop("validation_batch_size", None) or batch_size
    if validation is not None:
        validation_steps = validation.default_steps(validation_steps, "validation_steps")
    epochs = args.pop("epochs", 1)
    max_epochs = keras.config.max_epochs()
    if max_epochs and max_epochs < epochs:
        import warnings

        warnings.warn(f"Limiting epochs to {max_epochs}", stacklevel=3)  # as model.fit does
        epochs = max_epochs
    if validation is not None:  # a model with no loss to validate: said before the first step
        check_validation_loss(model, runtime, epochs, args.get("initial_epoch", 0), args.get("validation_freq", 1))
    callbacks = distribute.chief_only(args.pop("callbacks", None) or [], runtime)
    group, reason, automatic = decide_grouping(model, strategy, callbacks, (steps, validation_steps), runtime,
                                         (train, validation))
    seed = args.pop("seed", None)
    if seed is not None:
        keras.utils.set_random_seed(seed)  # dropout and other layers' randomness
    return FitPlan(
        train=train, report=FitReport(strategy.name, group, reason, automatic=automatic), validation=validation,
        epochs=epochs, initial_epoch=args.pop("initial_epoch", 0), batch_size=batch_size,
        validation_batch_size=validation_batch_size,
        shuffle=args.pop("shuffle", True), seed=seed, verbose=args.pop("verbose", "auto"),
        class_weight=args.pop("class_weight", None), steps_per_epoch=steps, validation_steps=validation_steps,
        steps_per_pass=train.num_batches(batch_size),
        validation_steps_per_pass=None if validation is None else validation.num_batches(validation_batch_size),
        validation_freq=args.pop("validation_freq", 1), callbacks=callbacks, targets=targets, runtime=runtime,
    )
