"""One tf.data iterator for the whole fit: :func:`across_epochs`.

``model.fit`` given a finite dataset and no ``steps_per_epoch`` makes a new
iterator of it every epoch (and every evaluation), and a tf.data iterator is
costly to make: each one instantiates and optimizes the pipeline's functions
again, starts its threads, and tunes its parallelism and prefetching from
nothing. Measured on 8x8 images in batches of 32 (2-core CPU), an
``ImageDataGenerator`` pipeline took ~45 ms to open against ~0.4 ms per batch
once open, and the restarted prefetching made the first batches of each epoch
wait on the training step: an epoch of 45 batches cost 5x the same epoch read
from an iterator kept open.

:func:`across_epochs` keeps one iterator over the stream repeated, and gives
``model.fit`` a small dataset of one pass's length whose elements are pulled
from that iterator: Keras still makes an iterator of it each epoch, but that one
holds one small function, and the pipeline behind it, with its threads and
buffers, runs on across epochs. Each epoch reads exactly one pass, so the
batches are those of the stream read anew each epoch.
"""

from __future__ import annotations

from typing import Any

from kfitx.runtime.lazy import is_instance

__all__ = ["across_epochs", "pass_length"]


def pass_length(dataset: Any) -> int | None:
    """The number of batches in one pass of ``dataset``, or ``None`` where it is infinite or unknown (or
    ``dataset`` is no ``tf.data.Dataset``)."""
    if not is_instance(dataset, "tensorflow", "data.Dataset"):
        return None
    import tensorflow as tf

    steps = int(dataset.cardinality())
    return steps if steps > 0 and steps != int(tf.data.INFINITE_CARDINALITY) else None


def across_epochs(dataset: Any, *, spare_pass: bool = False) -> Any:
    """``dataset``, one pass per iteration, read through one iterator kept open across iterations.

    Only for a stream read whole at each iteration (every pass to its end): an
    iteration left unfinished would leave the next one starting mid-pass. A fit
    reads its training data so when no callback can stop an epoch early, and its
    validation data when no callback can stop an evaluation early.

    Args:
        dataset: A finite ``tf.data.Dataset`` whose each iteration is one pass (a
            new order, new augmentations, as the stream makes them).
        spare_pass: After each pass, open one more and drop its first batch, as
            ``model.fit`` does: its epoch iterator opens the next pass when an epoch
            ends, then another when the next epoch begins, so a stream that draws anew
            per iteration (a seeded shuffle, augmentation) gives its epochs every other
            draw. With it, each iteration is what ``model.fit`` would have read (and
            kfitx's own loop, which counts passes as Keras does).

    Returns:
        A dataset of the same elements, cardinality and structure; each iteration
        of it is the next pass of the one open iterator. The iterator lives as long
        as the dataset returned.
    """
    import tensorflow as tf

    steps = pass_length(dataset)
    if steps is None:
        return dataset
    # The iterator is held by the traced function's captured resource only, not by a Python closure:
    # a fault's traceback that keeps the returned dataset then keeps no iterator object alive.
    stream = dataset
    if spare_pass:  # opened as model.fit opens it (its random draws made), one batch read, nothing kept
        stream = dataset.concatenate(dataset.take(1).filter(tf.autograph.experimental.do_not_convert(
            lambda *_: tf.constant(False))))
    opened = [iter(stream.repeat().prefetch(tf.data.AUTOTUNE))]

    @tf.autograph.experimental.do_not_convert
    def pull(_: Any) -> Any:
        return opened[0].get_next()

    pulled = tf.data.Dataset.range(steps).map(pull)  # traced here: `pull` reads `opened` now, not later
    opened.clear()
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return pulled.with_options(options)
