"""The training engine's TensorFlow adapter: the only TensorFlow-specific code the engine runs.

:mod:`kfitx.engine` is backend-neutral; it asks this module for a callable
``run(data) -> logs`` (or ``None`` when the data ran out) per kind of step:

* :func:`model_function` -- the model's own train step: Keras's compiled
  train function when it runs several steps per call (or under a
  ``tf.distribute`` scope, or eagerly), else :class:`CompiledStep` over
  ``model.train_step``, which is what makes one-batch-per-call training fast;
* :class:`CompiledStep` -- a function of one batch made of backend ops, compiled
  once. Given the feed's ``tf.data`` iterator it runs one concrete function
  that reads the next batch inside the graph (no Python batch, no argument
  matching per call: most of ``train_on_batch``'s per-call cost); given a list
  of batches read in Python (generators, batch hooks) it calls a compiled
  function on each.

Under a ``tf.distribute`` strategy (:mod:`kfitx.runtime.distribute`) the feed's iterator
is a distributed one (each replica its share of every global batch), batches
read in Python are split over the replicas the same way, a step runs through
``strategy.run`` and its outputs are reduced to one value, and the model's
optimizer and metrics are built before the first step, as ``model.fit`` builds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from kfitx import _keras
from kfitx.engine.adapter import BackendAdapter, Batch, Logs, Run, StepFunction
from kfitx.runtime import Runtime, distribute

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

#: What one call reads on TensorFlow: batches read in Python, or a tf.data iterator (distributed or not).
TfData: TypeAlias = "list[Batch] | tf.data.Iterator"


def _no_optionals(batch: Batch) -> Batch:
    """Keras turns ``None`` parts of tf.data batches into empty ``Optional``s; its steps expect ``None``."""
    import keras
    import tensorflow as tf

    return keras.tree.map_structure(lambda t: None if isinstance(t, tf.experimental.Optional) else t, batch)


def _build_from(model: keras.Model, runtime: Runtime, data: TfData) -> None:
    """Builds the model before its first distributed step, from the data it is about to get."""
    import tensorflow as tf

    if isinstance(data, list):
        batch = data[0] if data else None
    elif isinstance(data, tf.distribute.DistributedIterator):
        batch = distribute.local_spec(data.element_spec)
    else:
        batch = data.element_spec
    if batch is not None:
        distribute.build(model, batch, runtime)


class CompiledStep:
    """``fn(model, batch) -> logs`` compiled once, fed from a ``tf.data`` iterator or with batches.

    Args:
        model: The model, passed to ``fn``.
        fn: Trains on one batch; made of TensorFlow / Keras ops (traced once).
        runtime: The fit's runtime (its ``tf.distribute`` strategy, if any, runs the step).
        autograph: Convert Python control flow in ``fn`` (off for the model's
            own step, as Keras compiles it).
    """

    def __init__(self, model: keras.Model, fn: StepFunction, runtime: Runtime, *,
                 autograph: bool = True) -> None:
        import tensorflow as tf

        def one_batch(batch: Batch) -> Logs:
            return fn(model, _no_optionals(batch))

        if not autograph:
            one_batch = tf.autograph.experimental.do_not_convert(one_batch)
        self.model = model
        self.runtime = runtime
        strategy = runtime.tf_strategy
        self.distributed = strategy is not None
        self._built = not self.distributed
        if strategy is not None:  # each replica runs the step on its share; one value comes out
            local_step = one_batch

            def one_batch(batch: Batch) -> Logs:
                return distribute.reduce(strategy.run(local_step, args=(batch,)), runtime)

        self.eager = bool(model.run_eagerly)
        self._fn = one_batch
        jit = bool(model.jit_compile)
        self._on_batch = tf.function(one_batch, reduce_retracing=True, jit_compile=jit)
        inner = self._on_batch if jit else one_batch  # XLA compiles the step, not the iterator read
        self._inner = inner
        self._concrete: tf.types.experimental.ConcreteFunction | None = None
        self._spec: tf.TypeSpec | None = None
        self._iterator: tf.data.Iterator | None = None
        self._components: list[tf.Tensor] = []

    def _for(self, iterator: tf.data.Iterator) -> tf.types.experimental.ConcreteFunction:
        """The concrete function for this iterator (the same one for every iterator of a dataset).

        It takes the iterator's component tensors (its resource handle), not the
        iterator: binding a composite argument costs more per call than the step
        of a small model.
        """
        import tensorflow as tf

        if iterator is not self._iterator:
            spec = tf.type_spec_from_value(iterator)
            if self._concrete is None or spec != self._spec:
                inner = self._inner

                def on_iterator(*components: tf.Tensor) -> Logs:
                    return inner(tf.nest.pack_sequence_as(spec, list(components), expand_composites=True).get_next())

                signature = tf.nest.flatten(spec, expand_composites=True)
                self._concrete = tf.function(on_iterator, input_signature=signature).get_concrete_function()
                self._spec = spec
            self._iterator, self._components = iterator, tf.nest.flatten(iterator, expand_composites=True)
        return self._concrete

    def __call__(self, data: TfData) -> Logs | None:
        """Trains on ``data``: the next batch of a tf.data iterator, or each batch of a list."""
        import tensorflow as tf

        if not self._built:
            _build_from(self.model, self.runtime, data)
            self._built = True
        if isinstance(data, list):
            logs: Logs | None = None
            for batch in data:
                if self.distributed:
                    batch = distribute.split(batch, self.runtime)
                logs = self._fn(batch) if self.eager else self._on_batch(batch)
            return logs
        try:
            if self.eager:
                return self._fn(next(data))
            if self.distributed:  # a distributed iterator: bound as it is
                return self._on_batch(data.get_next())
            return self._for(data)(*self._components)
        except (StopIteration, tf.errors.OutOfRangeError):
            return None  # the iterator was empty: the epoch is over


def _model_train_step(model: keras.Model, batch: Batch) -> Logs:
    return model.train_step(batch)


def model_function(model: keras.Model, steps_per_call: int, runtime: Runtime) -> Run:
    """The model's own train step as ``run(data)``, ``steps_per_call`` batches per call."""
    distributed = runtime.tf_strategy is not None
    if steps_per_call == 1 and not model.run_eagerly and not distributed:
        return CompiledStep(model, _model_train_step, runtime, autograph=False)
    built = [not distributed]

    def run(data: TfData) -> Logs | None:
        import tensorflow as tf

        if not built[0]:
            _build_from(model, runtime, data)
            built[0] = True
        if isinstance(data, list) and distributed:
            data = [distribute.split(batch, runtime) for batch in data]
        try:
            return _keras.train_function(model)(iter(data) if isinstance(data, list) else data)
        except (StopIteration, tf.errors.OutOfRangeError):
            return None

    return run


class Adapter(BackendAdapter):
    """TensorFlow: compiled steps fed from the tf.data iterator (see the module docstring)."""

    def model_function(self, model: keras.Model, steps_per_call: int) -> Run:
        return model_function(model, steps_per_call, self.runtime)

    def compiled_step(self, model: keras.Model, fn: StepFunction) -> Run | None:
        return CompiledStep(model, fn, self.runtime)
