"""What a user passes as ``augment``, and how it is mapped over a tf.data pipeline.

:func:`adapt` recognises the kind and returns an :class:`Augmentation`, or says
what would have been accepted; :func:`map_dataset` numbers the batches, gives
each a seed and maps ``apply`` over x.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from kfitx.augment.base import Augmentation
from kfitx.augment.function import _CallableAugmentation
from kfitx.augment.image_data_generator import (
    _ImageDataGeneratorAugmentation,
    _is_image_data_generator,
)
from kfitx.augment.layers import _as_layers, _LayersAugmentation
from kfitx.data import boundaries as _boundary
from kfitx.errors import AugmentationError, KfitxError, message
from kfitx.runtime.lazy import is_instance as _is_instance

if TYPE_CHECKING:
    import tensorflow as tf

    from kfitx.augment.base import Nest

_ACCEPTED = (
    "`augment` must be None, a function fn(x, y) -> (x, y) on numpy batches, a Keras "
    "preprocessing layer (or a list / keras.Sequential of them), or an ImageDataGenerator"
)
_STREAM = 0x61756721  # folded into every batch seed, so augmentation never reuses the shuffle's seeds


def adapt(augment: object) -> Augmentation | None:
    """Turns what a user passes as ``augment`` into an :class:`Augmentation`.

    Args:
        augment: ``None``; an :class:`Augmentation`; a function ``fn(x, y) -> (x, y)``
            (or ``fn(x) -> x`` for data without targets) on numpy batches, which
            gets a seeded ``numpy.random.Generator`` if it takes a keyword ``rng``;
            a Keras preprocessing layer, a list / tuple or ``keras.Sequential`` of
            them; or an ``ImageDataGenerator`` (see :func:`image_data_generator_class`).

    Returns:
        ``None`` for ``None``, else the augmentation.

    Raises:
        AugmentationError: for anything else, listing what is accepted.
    """
    if augment is None or isinstance(augment, Augmentation):
        return augment
    if _is_image_data_generator(augment):
        return _ImageDataGeneratorAugmentation(augment)
    layers = _as_layers(augment)
    if layers is not None:
        return _LayersAugmentation(layers)
    if isinstance(augment, type):
        raise AugmentationError(message(_ACCEPTED, f"the class {augment.__name__} itself",
                                        f"Pass an instance, e.g. {augment.__name__}(...)."))
    if isinstance(augment, (list, tuple)):
        bad = [type(item).__name__ for item in augment if not _is_instance(item, "keras", "layers.Layer")]
        raise AugmentationError(message(_ACCEPTED, f"a {type(augment).__name__} holding "
                                        f"{', '.join(bad) or 'nothing'}",
                                        "A list may hold Keras layers only; wrap other steps in one function."))
    if callable(augment):
        return _CallableAugmentation(augment)
    shown = repr(augment) if isinstance(augment, (str, int, float)) else type(augment).__name__
    raise AugmentationError(message(_ACCEPTED, shown, "See docs/augment.md for an example of each."))


def map_dataset(dataset: tf.data.Dataset, augmentation: object, *, seed: int | None = None,
                steps_per_epoch: int | None = None, initial_epoch: int = 0,
                report: Callable[[KfitxError], object] | None = None) -> tf.data.Dataset:
    """Applies ``augmentation`` to the x of every batch of ``dataset``.

    Each batch gets a stateless seed from ``tf.data.Dataset.random(seed,
    rerandomize_each_iteration=True)``: the same ``seed`` gives the same stream,
    each new iteration (epoch) new augmentations. The map runs in parallel
    (``AUTOTUNE``) and keeps the order; the caller prefetches. What the
    augmentation raises is reported, as an :class:`AugmentationError` naming the
    batch, to the boundary open here (``kfitx.fit`` opens one), which raises it.

    Args:
        dataset: A ``tf.data.Dataset`` of batches: ``x``, ``(x,)``, ``(x, y)`` or
            ``(x, y, sample_weight)``. Training batches only.
        augmentation: From :func:`adapt` (anything :func:`adapt` takes is adapted).
        seed: Seed of the augmentation stream; ``None`` for a random one.
        steps_per_epoch: Batches per epoch of a stream that runs across epochs
            (so that a failed batch is named by its epoch), or ``None``.
        initial_epoch: The fit's first epoch, for those names.
        report: Called with the :class:`AugmentationError` of a failed batch;
            by default the boundary open here (``kfitx.fit`` opens one) reports it.

    Returns:
        The dataset with x augmented: same structure, shapes and dtypes (integer x
        augmented by layers or an ImageDataGenerator comes out as floats); y and
        sample weights unchanged (a Python function may change y's values).

    Raises:
        AugmentationError: if this augmentation cannot handle these batches.
    """
    import tensorflow as tf

    augmentation = adapt(augmentation)
    if augmentation is None:
        return dataset
    spec = dataset.element_spec
    packed = isinstance(spec, tuple)
    if packed and not 1 <= len(spec) <= 3:
        raise AugmentationError(message(
            "Batches must be x, (x,), (x, y) or (x, y, sample_weight)", f"tuples of {len(spec)} items",
            "Pack several inputs as a tuple or dict inside x: ((x1, x2), y)."))
    augmentation.check(spec[0] if packed else spec)
    if report is None:
        opened = _boundary.current()
        report = None if opened is None else _weakly(opened)

    def where(index: int) -> str:
        if steps_per_epoch:
            return (f"training batch {index % steps_per_epoch} of epoch "
                    f"{initial_epoch + index // steps_per_epoch + 1}")
        return f"training batch {index} of its epoch"

    augmentation = augmentation.for_pipeline(report, where)

    @tf.autograph.experimental.do_not_convert
    def augment(indexed: tuple[tf.Tensor, Nest], random: tf.Tensor) -> Nest:
        index, element = indexed
        batch_seed = tf.random.experimental.stateless_fold_in(tf.stack([random, index]), _STREAM)
        if packed:  # (x, y) or (x, y, sample_weight)
            parts = cast("tuple[Nest, ...]", element)
            x, rest = parts[0], parts[1:]
        else:
            x, rest = element, ()
        new_x, new_y = augmentation.apply(x, rest[0] if rest else None, seed=batch_seed, batch=index)
        if not packed:
            return new_x
        return (new_x,) + ((new_y,) if rest else ()) + tuple(rest[1:])

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip((dataset.enumerate(), seeds)).map(
        augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _weakly(opened: _boundary.Boundary) -> Callable[[KfitxError], None]:
    """``opened.report`` without keeping ``opened``: tf.data keeps the augmentation as long as the iterator, and the
    boundary keeps the fault, whose traceback keeps the iterator (a cycle through TensorFlow that Python's
    collector cannot see; at the interpreter's teardown, deleting such an iterator can deadlock)."""
    ref = weakref.ref(opened)

    def report(fault: KfitxError) -> None:
        alive = ref()
        if alive is not None:
            alive.report(fault)

    return report
