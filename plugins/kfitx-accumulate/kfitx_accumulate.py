"""kfitx-accumulate: the ``accumulate`` strategy, large batches in small pieces (gradient accumulation).

Each batch of ``batch_size`` samples is split into ``accumulate_steps``
micro-batches that go through the model one after the other; their gradients,
each weighted by its share of the batch, are summed, and the optimizer takes one
step per batch. The update is the one the whole batch would give (to float
round-off), while activations are held for one micro-batch at a time: the batch
size a model needs, on an accelerator that cannot hold it.

A step plugin, written as a third party writes one, with only public API: the
strategy is its options plus one function of a batch, and ``kfitx.fit_loop``
runs it inside ``model.fit``'s loop (callbacks in their order, epochs,
validation, ``stop_training``, History), compiled once and fed from the
pipeline. A model's own ``train_step`` override is not used: the step is the
standard one (forward, ``compute_loss``, gradients, ``compute_metrics``),
micro-batched.
"""

from __future__ import annotations

import math
from typing import Any

import kfitx
from kfitx.errors import OptionError, message

__all__ = ["AccumulateStrategy", "kfitx_strategies"]


def _positive_int(name: str, value: Any) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise OptionError(message(f"`{name}` must be a positive int", repr(value)))
    return value


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
    backends = ("tensorflow", "jax", "torch")
    description = "Gradient accumulation: one optimizer step per batch, computed in micro-batches"
    defaults = {"accumulate_steps": 4, "endless_after": 100_000}
    renamed_options = {"infinite_after": "endless_after"}  # kfitx's one name for the rule, since 0.2
    #: Read by kfitx.testing: summing micro-batch gradients rounds differently from one batch.
    weight_tolerance = 1e-5

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.accumulate_steps = _positive_int("accumulate_steps", self.options["accumulate_steps"])
        _positive_int("endless_after", self.options["endless_after"])

    def grouping(self) -> str:
        # Its step trains one batch per compiled call; a group (the model's steps_per_execution, or
        # kfitx's when no callback acts per batch) is that many calls between two batch callbacks.
        return "auto"

    def fit(self, model: Any, plan: kfitx.FitPlan) -> Any:
        own = _own_step(model, plan)
        if own:  # Keras's own step on whole batches: model.fit's result, without accumulation
            plan.report.note(accumulate_steps=1, accumulate=f"off: {own}")
            return kfitx.fit_loop(model, plan, endless_after=self.options["endless_after"])
        plan.report.note(accumulate_steps=self.accumulate_steps,
                         micro_batch_size=math.ceil(plan.batch_size / self.accumulate_steps))
        return kfitx.fit_loop(model, plan, kfitx.TrainStep(_Accumulate(self.accumulate_steps, plan.runtime)),
                              endless_after=self.options["endless_after"])


def _own_step(model: Any, plan: kfitx.FitPlan) -> str | None:
    """Why the batches cannot be split into micro-batches here, or ``None`` when they can."""
    import keras

    if getattr(type(model), "train_step", None) is not keras.Model.train_step:
        return "the model has its own train_step, which accumulation would bypass"
    if plan.train_form is kfitx.data.InputForm.KERAS_TENSORS and any(
            "Sparse" in type(t).__name__ or "Ragged" in type(t).__name__
            for t in keras.tree.flatten((plan.train.x, plan.train.y))):
        return "ragged or sparse inputs are not cut into micro-batches"
    return None


class _Accumulate:
    """``step(model, batch)``: the batch in ``parts`` micro-batches, one optimizer step."""

    def __init__(self, parts: int, runtime: Any) -> None:
        self.parts, self.runtime = parts, runtime
        self.sums: list[Any] = []
        self.__name__ = "accumulate"

    def __call__(self, model: Any, batch: Any) -> Any:
        backend = self.runtime.backend  # the fit's, resolved once by kfitx (plan.runtime)
        if backend == "jax":
            return _jax_step(model, batch, self.parts, self.runtime.jax_distribution)
        if backend == "torch":
            return _torch_step(model, batch, self.parts)
        return self._tf_step(model, batch)

    def _tf_step(self, model: Any, batch: Any) -> Any:
        import keras
        import tensorflow as tf

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        first_x = keras.tree.flatten(x)[0]
        n = tf.shape(first_x, out_type=tf.int64)[0] if isinstance(first_x, tf.SparseTensor) else tf.shape(first_x)[0]
        n = tf.cast(n, tf.int32)
        pieces = tf.minimum(n, self.parts)

        def cut(t: Any, begin: Any, end: Any) -> Any:
            if t is None:
                return None
            if isinstance(t, tf.SparseTensor):  # rows begin:end of a sparse batch
                shape = tf.shape(t, out_type=tf.int64)
                part = tf.sparse.slice(t, tf.concat([[tf.cast(begin, tf.int64)], tf.zeros_like(shape[1:])], 0),
                                       tf.concat([[tf.cast(end - begin, tf.int64)], shape[1:]], 0))
                part.set_shape([None, *t.shape[1:]])
                return part
            return t[begin:end]

        def micro_batch(i: Any) -> list[Any]:
            begin, end = (i * n) // pieces, ((i + 1) * n) // pieces
            xi, yi, wi = (keras.tree.map_structure(lambda t: cut(t, begin, end), part)
                          for part in (x, y, sample_weight))
            with tf.GradientTape() as tape:
                y_pred = model(xi, training=True)
                loss = _compute_loss(model, xi, yi, y_pred, wi)
                scaled = model.optimizer.scale_loss(loss)
            # Under tf.distribute, compute_loss divides by the replicas (their gradients are summed);
            # the logged loss is the unscaled one, as in Keras's own step.
            replicas = tf.distribute.get_replica_context().num_replicas_in_sync
            next(m for m in model.metrics if m.name == "loss").update_state(loss * replicas, sample_weight=end - begin)
            model.compute_metrics(xi, yi, y_pred, sample_weight=wi)
            share = tf.cast(end - begin, loss.dtype) / tf.cast(n, loss.dtype)
            # Read after the forward pass, as Keras's own step reads them: it builds a model without an Input.
            return [None if g is None else tf.convert_to_tensor(g) * tf.cast(share, g.dtype)
                    for g in tape.gradient(scaled, model.trainable_variables)]

        # The first piece outside the loop: layers, metrics and optimizer build their variables there.
        first = micro_batch(tf.constant(0))
        weights = model.trainable_variables
        if not self.sums:
            with tf.init_scope():
                self.sums = [tf.Variable(tf.zeros(w.shape, w.dtype), trainable=False) for w in weights]
        for total, grad in zip(self.sums, first):
            total.assign(tf.zeros_like(total) if grad is None else grad)
        for i in tf.range(1, pieces):
            for total, grad in zip(self.sums, micro_batch(i)):
                if grad is not None:
                    total.assign_add(grad)
        if weights:  # nothing to train (a model without trainable weights): Keras's step skips it too
            model.optimizer.apply_gradients(list(zip([tf.convert_to_tensor(s) for s in self.sums], weights)))
        return model.get_metrics_result()


def _compute_loss(model: Any, x: Any, y: Any, y_pred: Any, sample_weight: Any) -> Any:
    """``model.compute_loss``, with ``training`` only where the model's override takes it (as Keras calls it)."""
    import inspect

    if "training" in inspect.signature(model.compute_loss).parameters:
        return model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
    return model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)


def _pieces(batch: Any, parts: int) -> tuple[int, list[tuple[int, int, Any, Any, Any]]]:
    """The batch's size and its micro-batches ``(begin, end, x, y, sample_weight)``, in Python (JAX, torch)."""
    import keras

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(tuple(batch) if isinstance(batch, list) else batch)
    n = int(keras.tree.flatten(x)[0].shape[0])
    pieces = min(n, parts)
    cuts = []
    for i in range(pieces):
        begin, end = (i * n) // pieces, ((i + 1) * n) // pieces
        cut = lambda t: None if t is None else t[begin:end]  # noqa: B023 (used within this iteration)
        cuts.append((begin, end, *(keras.tree.map_structure(cut, part) for part in (x, y, sample_weight))))
    return n, cuts


def _loss_metric(model: Any) -> Any:
    return next(m for m in model.metrics if m.name == "loss")


def _torch_step(model: Any, batch: Any, parts: int) -> Any:
    """Micro-batches with autograd, one ``optimizer.apply`` (as Keras's torch ``train_step``)."""
    import torch

    n, cuts = _pieces(batch, parts)
    weights = model.trainable_variables
    sums: list[Any] | None = None
    for begin, end, x, y, sample_weight in cuts:
        model.zero_grad()
        y_pred = model(x, training=True)
        loss = _compute_loss(model, x, y, y_pred, sample_weight)
        _loss_metric(model).update_state(loss.detach(), sample_weight=end - begin)
        model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        model.optimizer.scale_loss(loss).backward()
        share = (end - begin) / n
        grads = [None if w.value.grad is None else w.value.grad * share for w in weights]
        sums = grads if sums is None else [g if s is None else s + g for s, g in zip(sums, grads)]
    with torch.no_grad():
        model.optimizer.apply(sums, weights)
    return model.get_metrics_result()


def _laid_out(cuts: list[tuple[int, int, Any, Any, Any]], distribution: Any) -> list[tuple[int, int, Any, Any, Any]]:
    """Under a ``keras.distribution`` (``DataParallel``, ...), each micro-batch split over the devices as
    ``model.fit`` splits a batch, so that every device computes its share; one whose size does not divide
    over them stays whole (every device then computes all of it: the same numbers)."""
    import keras

    if distribution is None:
        return cuts
    mesh = distribution.device_mesh
    shards = mesh.shape[mesh.axis_names.index(distribution.batch_dim_name)]

    def one(t: Any) -> Any:
        return keras.distribution.distribute_tensor(t, distribution.get_data_layout(t.shape))

    def spread(part: Any) -> Any:
        return keras.tree.map_structure(one, part) if part is not None else None

    return [(begin, end, spread(x), spread(y), spread(sample_weight))
            if (end - begin) % shards == 0 else (begin, end, x, y, sample_weight)
            for begin, end, x, y, sample_weight in cuts]


def _jax_step(model: Any, batch: Any, parts: int, distribution: Any) -> Any:
    """Micro-batches with ``jax.value_and_grad`` of the model's stateless loss, one ``stateless_apply``."""
    import jax

    n, cuts = _pieces(batch, parts)
    cuts = _laid_out(cuts, distribution)
    grad_fn = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    optimizer_variables = [v.value for v in model.optimizer.variables]
    sums: list[Any] | None = None
    for begin, end, x, y, sample_weight in cuts:
        metrics_variables = [v.value for v in model.metrics_variables]
        (_, (loss, y_pred, non_trainable, metrics_variables)), grads = grad_fn(
            trainable, non_trainable, metrics_variables, x, y, sample_weight, training=True,
            optimizer_variables=optimizer_variables)
        for variable, value in zip(model.metrics_variables, metrics_variables):
            variable.assign(value)
        _loss_metric(model).update_state(loss, sample_weight=end - begin)
        model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        share = (end - begin) / n
        grads = [g * share for g in grads]
        sums = grads if sums is None else [s + g for s, g in zip(sums, grads)]
    trainable, optimizer_variables = model.optimizer.stateless_apply(optimizer_variables, sums, trainable)
    for variables, values in ((model.trainable_variables, trainable), (model.non_trainable_variables, non_trainable),
                              (model.optimizer.variables, optimizer_variables)):
        for variable, value in zip(variables, values):
            variable.assign(value)
    return model.get_metrics_result()


@kfitx.hookimpl
def kfitx_strategies() -> list[type[kfitx.Strategy]]:
    return [AccumulateStrategy]
