"""``model.fit``'s ``class_weight``, applied once: by the source's reading.

A source read with ``Reading.class_weight`` yields weighted batches ``(x, y,
sample_weight)``: its tf.data stream (:func:`weighted`, in each source's
``as_dataset``) and the batches a strategy's own loop reads in Python
(:class:`kfitx.data.feed.PythonFeed`). Keras's own data adapters, for the input they
read, apply it themselves (:class:`kfitx.data.KerasSource`, arrays cut by Keras on JAX
and torch), and input handed to ``model.fit`` as it is gets ``class_weight`` there.
The argument itself is checked once, with the fit's arguments (``kfitx.plan.checks``).

kfitx's rule is that of arrays in ``model.fit``: a class the dict omits weighs 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kfitx.errors import DataError, message

__all__ = ["class_weights", "weighted"]


def class_weights(class_weight: Mapping[int, float]) -> Callable[..., tuple[Any, Any, Any]]:
    """``class_weight`` as a batch function ``(x, y) -> (x, y, sample_weight)``.

    Made of TensorFlow ops, so it serves ``dataset.map`` and eager batches alike;
    classes are read from ``y`` as Keras reads them (integer labels, one-hot
    rows, or a single column).
    """
    import keras
    import tensorflow as tf

    table = tf.constant([float(class_weight.get(c, 1.0)) for c in range(int(max(class_weight)) + 1)])

    def apply(*batch: Any) -> tuple[Any, Any, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch[0] if len(batch) == 1 else batch)
        if sample_weight is not None:
            raise DataError(message("Either `class_weight` or sample weights, not both",
                                    "both", "Fold the class weights into the sample weights."))
        if y is None or tf.nest.is_nested(y):
            raise DataError(message("`class_weight` needs batches with a single target array y",
                                    "no y" if y is None else f"{type(y).__name__} of targets",
                                    "Pass sample weights for multi-output models."))
        y = tf.convert_to_tensor(y)
        rank, last = y.shape.rank, y.shape[-1] if y.shape.rank else None
        if not rank or rank < 2:
            classes = tf.cast(tf.round(y), tf.int32)
        elif last is not None:
            classes = (tf.argmax(y, axis=-1, output_type=tf.int32) if last > 1
                       else tf.cast(tf.round(tf.squeeze(y, axis=-1)), tf.int32))
        else:
            classes = tf.cond(tf.shape(y)[-1] > 1, lambda: tf.argmax(y, axis=-1, output_type=tf.int32),
                              lambda: tf.cast(tf.round(tf.squeeze(y, axis=-1)), tf.int32))
        # A class the dict omits weighs 1, as in model.fit (also one above its largest key).
        size = tf.shape(table)[0]
        weights = tf.where(classes < size, tf.gather(table, tf.clip_by_value(classes, 0, size - 1)), 1.0)
        return x, y, weights

    return apply


def weighted(dataset: Any, class_weight: Mapping[int, float] | None) -> Any:
    """``dataset`` (a ``tf.data.Dataset`` of batches) with ``class_weight`` made sample weights; as it is without."""
    if class_weight is None:
        return dataset
    import tensorflow as tf

    return dataset.map(class_weights(class_weight), num_parallel_calls=tf.data.AUTOTUNE)
