"""kfitx-accumulate: the ``accumulate`` strategy, large batches in small pieces (gradient accumulation).

Each batch of ``batch_size`` samples is split into ``accumulate_steps``
micro-batches that go through the model one after the other; their gradients,
each weighted by its share of the batch, are summed, and the optimizer takes one
step per batch. The update is the one the whole batch would give (to float
round-off), while activations are held for one micro-batch at a time: the batch
size a model needs, on an accelerator that cannot hold it.

A custom loop, written as a third party writes one, with only public API
(``kfitx.Strategy``, ``kfitx.FitPlan``, ``kfitx.hookimpl``, ``kfitx.data``, ``kfitx.errors``, Keras):

* batches: arrays through ``tf.data`` (a new permutation each epoch), a
  ``tf.data.Dataset`` as it is, or a generator factory called afresh each epoch;
* the step: one compiled function per batch, looping over its micro-batches;
* around it, ``model.fit``'s loop: one ``keras.callbacks.CallbackList`` (History
  and progress bar included), ``reset_metrics`` each epoch, validation through
  ``model.evaluate`` with the same callbacks, ``stop_training``, ``initial_epoch``
  (also as ``BackupAndRestore`` sets it) and the History returned.

A model's own ``train_step`` override is not used: the step is the standard one
(forward, ``compute_loss``, gradients, ``compute_metrics``), micro-batched.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import kfitx
from kfitx.data import ArraySource, DatasetSource, GeneratorSource, Source
from kfitx.errors import DataError, OptionError, message

__all__ = ["AccumulateStrategy", "kfitx_strategies"]


def _positive_int(name: str, value: Any) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise OptionError(message(f"`{name}` must be a positive int", repr(value)))
    return value


def _class_weights(class_weight: Mapping[int, float]) -> Callable[[Any, Any, Any], Any]:
    """``model.fit``'s ``class_weight`` as sample weights, from integer labels or one-hot rows."""
    import tensorflow as tf

    if not isinstance(class_weight, Mapping) or not class_weight:
        raise OptionError(message("`class_weight` must be a non-empty dict {class index: weight}",
                                  repr(class_weight)))
    table = tf.constant([float(class_weight.get(c, 1.0)) for c in range(int(max(class_weight)) + 1)])

    def weigh(x: Any, y: Any, sample_weight: Any) -> Any:
        if sample_weight is not None or y is None or tf.nest.is_nested(y):
            raise DataError(message("class_weight with a single target array and no sample weights",
                                    "sample weights too" if sample_weight is not None else "no single y"))
        y = tf.convert_to_tensor(y)
        if y.shape.rank and y.shape.rank > 1 and y.shape[-1] > 1:
            classes = tf.argmax(y, axis=-1, output_type=tf.int32)
        else:
            classes = tf.cast(tf.round(tf.reshape(y, [-1])), tf.int32)
        return tf.gather(table, classes)

    return weigh


class AccumulateStrategy(kfitx.Strategy):
    """Gradient accumulation: one optimizer step per batch, computed in micro-batches.

    Options:
        accumulate_steps: Micro-batches per batch (default 4). A batch of 64 with
            ``accumulate_steps=4`` runs 4 forward/backward passes of 16 samples and
            one optimizer step; a smaller last batch is split into at most as many
            micro-batches as it has samples.
        endless_after: A generator given no ``steps_per_epoch`` ends each epoch by
            ending; one that yields more batches than this in one epoch stops the
            fit with a ``DataError`` instead of running forever (default 100000).
    """

    name = "accumulate"
    description = "Gradient accumulation: one optimizer step per batch, computed in micro-batches"
    defaults = {"accumulate_steps": 4, "endless_after": 100_000}
    renamed_options = {"infinite_after": "endless_after"}  # kfitx's one name for the rule, since 0.2
    #: Read by kfitx.testing: summing micro-batch gradients rounds differently from one batch.
    weight_tolerance = 1e-5

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.accumulate_steps = _positive_int("accumulate_steps", self.options["accumulate_steps"])
        _positive_int("endless_after", self.options["endless_after"])

    def supports(self, source: Source) -> str | None:
        if isinstance(source, (ArraySource, DatasetSource, GeneratorSource)):
            return None
        return ("The 'accumulate' strategy reads arrays, tf.data datasets and generator factories, "
                f"not a {source.kind}.")

    # -- batches ----------------------------------------------------------------

    def _batches(self, source: Source, batch_size: int, shuffle: bool | str, seed: int | None,
                 steps_per_epoch: int | None) -> tuple[Callable[[], Iterator[Any]], int | None]:
        """``(epoch() -> iterator of batches, batches per epoch or None)``, with model.fit's steps_per_epoch."""
        import keras
        import tensorflow as tf

        if isinstance(source, ArraySource):
            floatx = keras.config.floatx()
            cast = lambda a: tf.convert_to_tensor(a, dtype=floatx if a.dtype.kind == "f" else None)
            parts = tuple(tf.nest.map_structure(cast, part) for part in source.arrays())
            indices = tf.data.Dataset.range(source.num_samples)
            if shuffle:
                indices = indices.shuffle(source.num_samples, seed=seed, reshuffle_each_iteration=True)
            dataset = indices.batch(batch_size).map(
                lambda i: tf.nest.map_structure(lambda t: tf.gather(t, i), parts),
                num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
            one_pass: Callable[[], Iterator[Any]] = lambda: iter(dataset)
            length: int | None = math.ceil(source.num_samples / batch_size)
        elif isinstance(source, DatasetSource):
            one_pass = lambda: iter(source.dataset)
            length = source.steps(batch_size)
        else:
            assert isinstance(source, GeneratorSource)
            one_pass = lambda: iter(source)
            steps_per_epoch = steps_per_epoch or source.steps_per_epoch
            length = None
        if steps_per_epoch is None:
            return one_pass, length

        def passes() -> Iterator[Any]:  # one stream across epochs; a pass that ends starts the next
            while True:
                empty = True
                for batch in one_pass():
                    empty = False
                    yield batch
                if empty:
                    raise DataError(message("a source that yields batches", "an empty pass"))

        stream = passes()
        return (lambda: itertools.islice(stream, steps_per_epoch)), steps_per_epoch

    # -- the step ---------------------------------------------------------------

    def _make_step(self, model: Any) -> Callable[..., Any]:
        import tensorflow as tf

        weights = model.trainable_variables
        sums = [tf.Variable(tf.zeros_like(w), trainable=False, name="accumulated") for w in weights]
        loss_metric = next(m for m in model.metrics if m.name == "loss")
        parts = self.accumulate_steps

        @tf.function(reduce_retracing=True)
        def step(x: Any, y: Any, sample_weight: Any) -> Any:
            n = tf.shape(tf.nest.flatten(x)[0])[0]
            pieces = tf.minimum(n, parts)
            for total in sums:
                total.assign(tf.zeros_like(total))
            for i in tf.range(pieces):
                begin, end = (i * n) // pieces, ((i + 1) * n) // pieces
                cut = lambda t: None if t is None else t[begin:end]
                xi, yi, wi = (tf.nest.map_structure(cut, part) for part in (x, y, sample_weight))
                with tf.GradientTape() as tape:
                    y_pred = model(xi, training=True)
                    loss = model.compute_loss(x=xi, y=yi, y_pred=y_pred, sample_weight=wi, training=True)
                    scaled = model.optimizer.scale_loss(loss)
                share = tf.cast(end - begin, loss.dtype) / tf.cast(n, loss.dtype)
                for total, grad in zip(sums, tape.gradient(scaled, weights)):
                    if grad is not None:
                        total.assign_add(tf.convert_to_tensor(grad) * tf.cast(share, grad.dtype))
                loss_metric.update_state(loss, sample_weight=end - begin)
                model.compute_metrics(xi, yi, y_pred, sample_weight=wi)
            model.optimizer.apply_gradients(zip([tf.convert_to_tensor(s) for s in sums], weights))
            return model.get_metrics_result()

        return step

    # -- fit --------------------------------------------------------------------

    def grouping(self) -> tuple[int, str]:
        return 1, "gradient accumulation runs its own compiled step, one batch per call"

    def fit(self, model: Any, plan: kfitx.FitPlan) -> Any:
        import keras

        epoch_batches, steps = self._batches(plan.train, plan.batch_size, plan.shuffle, plan.seed,
                                             plan.steps_per_epoch)
        weigh = None if plan.class_weight is None else _class_weights(plan.class_weight)
        callbacks = plan.callbacks
        if not isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks = keras.callbacks.CallbackList(callbacks, add_history=True, add_progbar=plan.verbose != 0,
                                                     verbose=plan.verbose, epochs=plan.epochs, steps=steps,
                                                     model=model)
        history = next(c for c in callbacks.callbacks if isinstance(c, keras.callbacks.History))
        evaluate = self._validation(model, plan.validation, plan.validation_batch_size, plan.validation_steps,
                                    callbacks)
        plan.report.note(accumulate_steps=self.accumulate_steps,
                         micro_batch_size=math.ceil(plan.batch_size / self.accumulate_steps))
        self._train(model, epoch_batches, callbacks, weigh, epochs=plan.epochs, initial_epoch=plan.initial_epoch,
                    evaluate=evaluate, validation_freq=plan.validation_freq)
        return history

    def _validation(self, model: Any, validation: Any, batch_size: int, steps: int | None,
                    callbacks: Any) -> Callable[[], dict[str, Any]] | None:
        if validation is None:
            return None
        source = validation
        if isinstance(source, ArraySource):
            x, y, w = (source.arrays() + (None, None))[:3]
            return lambda: model.evaluate(x, y, sample_weight=w, batch_size=batch_size, steps=steps,
                                          callbacks=callbacks, return_dict=True)
        if isinstance(source, DatasetSource):
            return lambda: model.evaluate(source.dataset, steps=steps, callbacks=callbacks, return_dict=True)
        if isinstance(source, GeneratorSource):
            return lambda: model.evaluate(iter(source), steps=steps or source.steps_per_epoch,
                                          callbacks=callbacks, return_dict=True)
        raise DataError(message("validation_data as arrays, a tf.data.Dataset or a generator factory",
                                source.describe()))

    def _train(self, model: Any, epoch_batches: Callable[[], Iterator[Any]], callbacks: Any,
               weigh: Callable[..., Any] | None, *, epochs: int, initial_epoch: int,
               evaluate: Callable[[], dict[str, Any]] | None, validation_freq: Any) -> None:
        """``model.fit``'s epoch loop, in its order."""
        import keras

        limit = self.options["endless_after"]
        step = None
        model.stop_training = False
        callbacks.on_train_begin()
        logs: dict[str, Any] = {}
        epoch_logs: dict[str, Any] | None = None
        # BackupAndRestore sets the model's _initial_epoch in on_train_begin, and fit reads it so too.
        first = getattr(model, "_initial_epoch", None) or initial_epoch
        for epoch in range(first, epochs):
            model.reset_metrics()
            callbacks.on_epoch_begin(epoch)
            index = -1
            for index, batch in enumerate(epoch_batches()):
                if index >= limit:
                    raise DataError(message(f"A generator without steps_per_epoch to end within "
                                            f"endless_after={limit} batches", f"more in epoch {epoch}",
                                            "Pass steps_per_epoch=N for an infinite generator."))
                x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(
                    tuple(batch) if isinstance(batch, list) else batch)
                if weigh is not None:
                    sample_weight = weigh(x, y, sample_weight)
                if step is None:
                    step = self._build(model, x, y, sample_weight)
                callbacks.on_train_batch_begin(index)
                logs = step(x, y, sample_weight)
                callbacks.on_train_batch_end(index, logs)
                if model.stop_training:
                    break
            if index < 0:
                raise DataError(message("at least one batch per epoch", f"none in epoch {epoch}"))
            epoch_logs = dict(model.get_metrics_result())
            if evaluate is not None and _should_validate(epoch, validation_freq):
                epoch_logs.update({f"val_{k}": v for k, v in evaluate().items()})
            callbacks.on_epoch_end(epoch, epoch_logs)
            if model.stop_training:
                break
        if isinstance(model.optimizer, keras.optimizers.Optimizer) and epochs > 0:
            model.optimizer.finalize_variable_values(model.trainable_weights)
        callbacks.on_train_end(logs=epoch_logs)

    def _build(self, model: Any, x: Any, y: Any, sample_weight: Any) -> Callable[..., Any]:
        """Builds what the compiled step may not create (metrics, optimizer slots), then the step."""
        y_pred = model(x, training=False)
        model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)  # builds the compiled metrics
        model.reset_metrics()
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        return self._make_step(model)


def _should_validate(epoch: int, freq: Any) -> bool:
    """``validation_freq`` as ``model.fit`` reads it: every ``freq`` epochs, or the (1-based) epochs listed."""
    if isinstance(freq, int) and not isinstance(freq, bool) and freq >= 1:
        return (epoch + 1) % freq == 0
    if isinstance(freq, (list, tuple, set, range)):
        return epoch + 1 in freq
    raise OptionError(message("`validation_freq` must be a positive int or a list of epochs", repr(freq)))


@kfitx.hookimpl
def kfitx_strategies() -> list[type[kfitx.Strategy]]:
    return [AccumulateStrategy]
