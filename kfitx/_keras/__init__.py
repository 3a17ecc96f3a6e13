"""Every use of a Keras or keras-tuner internal, in one package (``data.py``: Keras's data adapters;
``jax_trainer.py``: Keras's JAX trainer; ``tuner.py``: keras-tuner; the rest here).

kfitx otherwise calls only public API. Each function here wraps one private
attribute or module of a library kfitx depends on, and ``tests/test_keras_boundary.py``
pins each one, so that an upgrade which moves it fails there with a clear message
rather than deep inside a fit.

Tested with the versions in ``TESTED`` (also stated in ``pyproject.toml``; ``versions.py`` says what
happens outside them). Every look-up of an internal goes through ``versions.internal`` / ``attribute``, so
a Keras without it raises :class:`kfitx.errors.KerasVersionError` naming the version and the feature;
where Keras 3.16 changed an internal, the function chooses its implementation by ``keras_release()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING

from kfitx._keras.versions import TESTED, attribute, internal, keras_release, warn_if_untested  # noqa: F401

if TYPE_CHECKING:
    import keras
    import tensorflow as tf
    from keras.src.legacy.preprocessing.image import ImageDataGenerator
    from keras.src.trainers.data_adapters.data_adapter import DataAdapter

# --- Keras internals -------------------------------------------------------

#: Where Keras 3 keeps ``ImageDataGenerator`` (``tf.keras.preprocessing.image`` re-exports it).
LEGACY_IMAGE_MODULE = "keras.src.legacy.preprocessing.image"


def legacy_image_module() -> ModuleType:
    """Keras's legacy ``preprocessing.image`` module, home of ``ImageDataGenerator``.

    Raises:
        ImportError: if this Keras has none.
    """
    import importlib

    return importlib.import_module(LEGACY_IMAGE_MODULE)


def image_data_generator_validation_split(idg: ImageDataGenerator) -> float:
    """The ``validation_split`` an ``ImageDataGenerator`` was made with (Keras keeps it private)."""
    return float(getattr(idg, "_validation_split", 0.0) or 0.0)


def initial_epoch(model: keras.Model, default: int) -> int:
    """The epoch ``model.fit`` starts at: ``BackupAndRestore`` sets it on the model in ``on_train_begin``."""
    return getattr(model, "_initial_epoch", None) or default


def reset_initial_epoch(model: keras.Model) -> None:
    """Forgets the epoch a restored fit left on the model (Keras leaves it set after the fit)."""
    model._initial_epoch = None


def is_default_hook(callback: keras.callbacks.Callback, hook: str) -> bool:
    """Whether ``callback.<hook>`` is Keras's no-op (Keras marks those, and ``CallbackList`` reads the mark)."""
    return bool(getattr(getattr(callback, hook, None), "_is_default", False))


def tensorboard_profiles_batches(callback: keras.callbacks.Callback) -> bool:
    """Whether a ``TensorBoard`` callback profiles batches (its ``profile_batch``, as Keras keeps it)."""
    return bool(getattr(callback, "_start_batch", 0))


def seed_generators(layers: Iterable[keras.Layer]) -> list[keras.random.SeedGenerator]:
    """Every ``SeedGenerator`` of ``layers`` and of the layers inside them, each once."""
    found: dict[int, keras.random.SeedGenerator] = {}
    for layer in layers:
        flatten = attribute(layer, "_flatten_layers", "Augmentation with Keras layers")
        for sub in flatten(include_self=True, recursive=True):
            for gen in [*getattr(sub, "_seed_generators", ()), *getattr(sub, "_backend_generators", {}).values()]:
                found[id(gen)] = gen
    return list(found.values())


#: Keras's own layers whose call runs the user's code (which may add a loss): never taken for loss-free.
_USER_CODE_LAYERS = ("Lambda", "TorchModuleWrapper", "JaxLayer", "FlaxLayer", "TFSMLayer")


def adds_no_loss(model: keras.Model) -> bool:
    """Whether ``model`` certainly has no loss besides a compiled one: its weights carry no regularizer
    (``model.losses`` is empty) and a forward pass adds none -- every layer in it, the model too, is one of
    Keras's own classes that runs none of the user's code, with no activity regularizer. ``False`` wherever
    that is not known (a subclassed model or layer may call ``add_loss``)."""
    if model.losses:
        return False
    flatten = attribute(model, "_flatten_layers", "kfitx's check of validation without a loss")
    for layer in flatten(include_self=True, recursive=True):
        cls = type(layer)
        if not cls.__module__.startswith("keras.") or cls.__name__ in _USER_CODE_LAYERS:
            return False
        if getattr(layer, "activity_regularizer", None) is not None:
            return False
    return True


@contextlib.contextmanager
def seeds_drawn_from(generators: list[keras.random.SeedGenerator],
                     next_seed: Callable[..., object]) -> Iterator[None]:
    """While the body runs, each ``SeedGenerator`` draws its seeds from ``next_seed(ordered=True)``."""
    for gen in generators:
        gen.next = next_seed  # an instance attribute hides SeedGenerator.next
    try:
        yield
    finally:
        for gen in generators:
            del gen.next


@contextlib.contextmanager
def compiled_with_steps_per_execution(model: keras.Model, steps: int) -> Iterator[None]:
    """Runs the body with ``model`` compiled for ``steps`` steps per call, then puts its functions back.

    Keras reads ``steps_per_execution`` when it makes its train / test
    functions, so they are dropped for the body (made again on first use) and
    the model's own restored afterwards.
    """
    if steps == model.steps_per_execution:
        yield
        return
    saved = (model.steps_per_execution, model.train_function, model.test_function)
    model.steps_per_execution = steps
    model.train_function = model.test_function = None
    try:
        yield
    finally:
        model.steps_per_execution, model.train_function, model.test_function = saved


def trainer_base_name() -> str:
    """The name of the class every backend trainer derives from, in ``keras.src.trainers.trainer``: ``Trainer``
    up to Keras 3.15, ``BaseTrainer`` from 3.16 (where ``Trainer`` names only the backends' own classes)."""
    return "BaseTrainer" if keras_release() >= (3, 16) else "Trainer"


def backend_trainer(backend: str) -> type[keras.Model]:
    """The backend's trainer class, which ``keras.Model`` derives from on that backend: ``TensorFlowTrainer``,
    ``JAXTrainer``, ``TorchTrainer`` up to Keras 3.15; ``Trainer`` in each backend's module from 3.16."""
    name = "Trainer" if keras_release() >= (3, 16) else {"tensorflow": "TensorFlowTrainer", "jax": "JAXTrainer",
                                                          "torch": "TorchTrainer"}[backend]
    return internal(f"keras.src.backend.{backend}.trainer", name, f"Keras's {backend} trainer")


def is_trainer(model: object) -> bool:
    """Whether ``model`` is something ``model.fit`` trains: a ``keras.Model``, or a layer mixed with Keras's
    backend trainer (how Keras's own tests build models)."""
    import keras

    Trainer = internal("keras.src.trainers.trainer", trainer_base_name(), "kfitx.fit (telling a Keras trainer)")
    return isinstance(model, (keras.Model, Trainer)) and isinstance(model, keras.layers.Layer)


def train_function(model: keras.Model) -> Callable[..., Mapping[str, object]]:
    """The model's compiled train function, made if needed.

    On TensorFlow it is called with a ``tf.data`` iterator (it trains
    ``steps_per_execution`` batches and returns the logs; ``StopIteration`` or
    ``tf.errors.OutOfRangeError`` when the iterator is empty) or with a Python
    iterator of batches.
    """
    model.make_train_function()
    return model.train_function


def groups_steps_on_torch() -> bool:
    """Whether Keras's torch trainer runs ``steps_per_execution > 1``: from Keras 3.16 its train function trains
    on each batch of the list it is given; earlier ones refuse it in ``make_train_function``."""
    return keras_release() >= (3, 16)


def torch_train_function(model: keras.Model) -> Callable[[Iterable[object]], Mapping[str, object] | None]:
    """The model's torch train function as ``run(batches) -> logs``, one step per batch of the list: one call
    with the whole list where Keras groups steps on torch (3.16), else one call per batch (``data[0]``)."""
    train = train_function(model)
    if groups_steps_on_torch():
        return lambda batches: train(list(batches))

    def one_by_one(batches: Iterable[object]) -> Mapping[str, object] | None:
        logs = None
        for batch in batches:
            logs = train([batch])
        return logs

    return one_by_one


def array_adapter(x: object, y: object, sample_weight: object, *, batch_size: int, shuffle: bool | str,
                  class_weight: Mapping[int, float] | None) -> DataAdapter:
    """Keras's ``ArrayDataAdapter``: what ``model.fit`` cuts arrays with (``num_batches``, ``get_numpy_iterator()``)."""
    ArrayDataAdapter = internal("keras.src.trainers.data_adapters.array_data_adapter", "ArrayDataAdapter",
                                "Arrays on JAX and torch in kfitx's loop")
    return ArrayDataAdapter(x, y, sample_weight, batch_size=batch_size, shuffle=shuffle, class_weight=class_weight)


def cached_evaluate(model: keras.Model, x: object, y: object, sample_weight: object, *, batch_size: int | None,
                    steps: int | None, callbacks: keras.callbacks.CallbackList, backend: str) -> dict[str, float]:
    """``model.fit``'s validation: ``evaluate`` through one epoch iterator, made at the first validation of the
    fit and reused by the next ones (``_eval_epoch_iterator``), so a generator object is read on across
    epochs as ``model.fit`` reads it. :func:`forget_validation` ends it."""

    if getattr(model, "_eval_epoch_iterator", None) is None:
        extra: dict[str, object] = {}
        name = {"tensorflow": "TFEpochIterator", "jax": "JAXEpochIterator"}.get(backend, "TorchEpochIterator")
        Iterator = internal(f"keras.src.backend.{backend}.trainer", name, "Validation in kfitx's loop")
        if backend == "tensorflow":
            extra["distribute_strategy"] = model.distribute_strategy
        model._eval_epoch_iterator = Iterator(x=x, y=y, sample_weight=sample_weight, batch_size=batch_size,
                                              steps_per_execution=model.steps_per_execution, steps_per_epoch=steps,
                                              shuffle=False, **extra)
    return model.evaluate(x=x, y=y, sample_weight=sample_weight, batch_size=batch_size, steps=steps,
                          callbacks=callbacks, return_dict=True, _use_cached_eval_dataset=True)


def forget_validation(model: keras.Model) -> None:
    """Drops the validation iterator :func:`cached_evaluate` keeps (``model.fit`` does so at its start and end)."""
    model._eval_epoch_iterator = None


def fit_begin(model: keras.Model) -> None:
    """What ``model.fit`` does to the trainer before ``on_train_begin``: ``stop_training`` cleared, no
    validation iterator left from an earlier fit, the train function made."""
    model.stop_training = False
    forget_validation(model)
    model.make_train_function()


def fit_end(model: keras.Model, *, trained: bool) -> None:
    """What ``model.fit`` does to the trainer before ``on_train_end``: the optimizer's variables finalized
    (its EMA, when it keeps one) after any epoch, the validation iterator dropped."""
    import keras

    if trained and isinstance(model.optimizer, keras.optimizers.Optimizer):
        model.optimizer.finalize_variable_values(model.trainable_weights)
    forget_validation(model)


def unbuilt(model: keras.Model) -> bool:
    """Whether ``model.fit`` would build something before training (layers, compiled loss / metrics, optimizer)."""
    if not all(layer.built for layer in attribute(model, "_flatten_layers", "kfitx's loop (building the model)")()):
        return True
    parts = (getattr(model, "_compile_metrics", None), getattr(model, "_compile_loss", None), model.optimizer)
    return any(part is not None and not part.built for part in parts)


def symbolic_build(model: keras.Model, batch: object) -> None:
    """Builds what ``model.fit`` builds before its first step, from one batch's shapes (``Trainer._symbolic_build``)."""
    attribute(model, "_symbolic_build", "kfitx's loop (building the model)")(data_batch=batch)


@contextlib.contextmanager
def multi_worker_fit(model: keras.Model) -> Iterator[None]:
    """While the body runs, ``model.fit`` / ``evaluate`` train under ``MultiWorkerMirroredStrategy``.

    Keras 3.15.1's TensorFlow trainer fails there twice:

    * ``TensorFlowTrainer._maybe_symbolic_build`` reads the first distributed
      batch and, to get its shapes, calls ``strategy.reduce("MEAN", batch,
      axis=None)`` on the whole ``(x, y)`` structure; the multi-worker strategy's
      ``reduce`` takes one value, not a structure (``ValueError: Attempt to
      convert a value (PerReplica:...)``). Here the model is built from the
      batch's local values instead (only shapes are read);
    * ``reduce_per_replica(..., "auto")`` averages every step output across
      workers with ``strategy.reduce("MEAN", v, axis=0)``, which also reduces
      the value's own first axis: a scalar metric fails (``Invalid reduction
      dimension 0 for input with 0 dimensions``). Here the mean is taken across
      replicas only (``axis=None``), as on one worker.

    The model's compiled functions are made again inside, so that they are
    traced with the second fix (and kept: they work after the fit too).
    """
    import tensorflow as tf

    feature = "Training under tf.distribute.MultiWorkerMirroredStrategy"
    tf_trainer = internal("keras.src.backend.tensorflow.trainer", "", feature)
    for name in ("reduce_per_replica", "_collective_all_reduce_multi_worker"):
        internal("keras.src.backend.tensorflow.trainer", name, feature)
    attribute(model, "_symbolic_build", feature)
    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values: object, strategy: tf.distribute.Strategy, reduction: str) -> object:
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    def maybe_symbolic_build(iterator: Iterable[tuple[int, int, Iterator[object]]] | None = None,
                             data_batch: object = None) -> None:
        strategy = model.distribute_strategy
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = next(it)
                break
        local = lambda v: (strategy.experimental_local_results(v)[0]
                           if isinstance(v, tf.distribute.DistributedValues) else v)
        with strategy.scope():
            model._symbolic_build(data_batch=tf.nest.map_structure(local, data_batch))

    model.train_function = model.test_function = None
    tf_trainer.reduce_per_replica = reduce_per_replica
    model._maybe_symbolic_build = maybe_symbolic_build  # an instance attribute hides the method
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original_reduce
        del model._maybe_symbolic_build


def one_replica_spec(spec: tf.TypeSpec) -> tf.TypeSpec:
    """One replica's element spec, from a spec of a distributed iterator (tf.distribute's ``PerReplicaSpec``
    keeps them in ``_value_specs``); any other spec as it is."""
    specs = getattr(spec, "_value_specs", None)
    return specs[0] if specs else spec


# The other parts of the boundary, re-exported: callers use ``_keras.<name>``.
from kfitx._keras.data import (  # noqa: E402, F401
    adapter_dataset,
    adapts,
    array_like,
    backend_batches,
    data_adapter,
    input_kind,
    is_sparse,
    sparse_or_ragged,
    train_validation_split,
)
from kfitx._keras.jax_trainer import (  # noqa: E402, F401
    feeds_jax_scan,
    jax_distribute,
    jax_keep_state,
    jax_state,
    jax_state_begin,
    jax_state_end,
    jax_state_sync,
    jax_train_function,
    scans_steps_on_jax,
)
from kfitx._keras.tuner import (  # noqa: E402, F401
    reconnect_quickly,
    resume_ongoing_trials,
    route_trials,
    saw_epoch,
    search_directory,
    serve_oracle,
    stop_trials_when,
    tuner_base_class,
    tuner_callbacks,
    tuner_init_arguments,
    use_chief_server,
    wrap_tuner_methods,
)
