"""Keras 2's ``fit_generator``, which Keras 3 removed, on top of the ``generator`` strategy.

Keras 2 code runs as written, with ``model.fit_generator(`` turned into
``kfitx.compat.fit_generator(model, ``::

    aug = ImageDataGenerator(rotation_range=20, zoom_range=0.15, width_shift_range=0.2,
                             height_shift_range=0.2, shear_range=0.15, horizontal_flip=True,
                             fill_mode="nearest")
    H = kfitx.compat.fit_generator(model, aug.flow(trainX, trainY, batch_size=BS),
                                   validation_data=(testX, testY),
                                   steps_per_epoch=len(trainX) // BS, epochs=EPOCHS)

``ImageDataGenerator`` lives in Keras 3's legacy namespace:
``from tensorflow.keras.preprocessing.image import ImageDataGenerator``
(``keras.preprocessing.image`` no longer has it). An ``aug.flow(x, y)`` iterator
is not read image by image: kfitx trains on its arrays and applies the same
augmentation to whole batches at once (:mod:`kfitx.augment`), which is what makes
it faster than ``model.fit(aug.flow(...))``.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeGuard

from kfitx.data import ArraySource, GeneratorSource, Source, coerce
from kfitx.errors import OptionError, message

if TYPE_CHECKING:
    import keras
    import numpy as np
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

__all__ = ["fit_generator", "source_of"]


class _ArrayFlow(Protocol):
    """What kfitx reads of an ``ImageDataGenerator.flow(x, y)`` iterator (Keras's ``NumpyArrayIterator``)."""

    x: np.ndarray
    y: np.ndarray | None
    sample_weight: np.ndarray | None
    image_data_generator: ImageDataGenerator
    batch_size: int
    shuffle: bool
    seed: int | None


def _is_array_flow(obj: object) -> TypeGuard[_ArrayFlow]:
    """An ``ImageDataGenerator.flow(x, y)`` iterator that kfitx can serve from its arrays."""
    return (type(obj).__name__ == "NumpyArrayIterator" and hasattr(obj, "image_data_generator")
            and not getattr(obj, "x_misc", None) and not getattr(obj, "save_to_dir", None))


def source_of(generator: object, steps_per_epoch: int | None = None) -> tuple[Source, dict[str, object]]:
    """What ``fit_generator``'s first argument is, as a kfitx source and generator options.

    Returns:
        ``(source, options)``: options are ``augment`` / ``batch_size`` /
        ``shuffle`` / ``seed`` for an ``ImageDataGenerator.flow`` iterator, else empty.
    """
    if _is_array_flow(generator):
        flow = generator
        return ArraySource(flow.x, flow.y, flow.sample_weight), {
            "augment": flow.image_data_generator, "batch_size": flow.batch_size,
            "shuffle": bool(flow.shuffle), "seed": flow.seed}
    if inspect.isgenerator(generator) or (isinstance(generator, Iterator) and not callable(generator)):
        if steps_per_epoch is None:
            raise OptionError(message(
                "fit_generator needs steps_per_epoch for a generator object (as Keras 2 did): it is "
                "read once, across all epochs",
                "steps_per_epoch=None",
                "Pass steps_per_epoch=len(train_x) // batch_size, or pass the generator function "
                "itself (not called) so that kfitx restarts it every epoch."))
        started = generator
        return GeneratorSource(lambda: started), {}
    return coerce(generator), {}


def fit_generator(model: keras.Model, generator: object, steps_per_epoch: int | None = None, epochs: int = 1,
                  verbose: int | str = 1, callbacks: Sequence[keras.callbacks.Callback] | None = None,
                  validation_data: object = None, validation_steps: int | None = None,
                  validation_freq: int | Collection[int] = 1, class_weight: Mapping[int, float] | None = None,
                  max_queue_size: int = 10, workers: int = 1, use_multiprocessing: bool = False,
                  shuffle: bool = True, initial_epoch: int = 0, **kwargs: object) -> keras.callbacks.History:
    """``model.fit_generator`` of Keras 2, with its arguments, on the ``generator`` strategy.

    Args:
        model: A compiled ``keras.Model``.
        generator: ``ImageDataGenerator.flow(...)`` (augmented on whole batches),
            a generator object yielding ``(inputs, targets)`` or ``(inputs,
            targets, sample_weights)`` (read once across epochs, so
            ``steps_per_epoch`` is required, as in Keras 2), a generator function,
            a ``PyDataset`` / ``Sequence`` (e.g. ``flow_from_directory``), or a
            ``tf.data.Dataset``.
        validation_data: ``(x, y)``, ``(x, y, sample_weight)``, a generator object
            (with ``validation_steps``) or any of the above; never augmented by kfitx.
        max_queue_size, workers, use_multiprocessing: As in Keras 2: batches
            produced ahead, threads reading a PyDataset, a worker process.
        **kwargs: Further ``generator`` strategy options (``augment``, ``timeout``,
            ...) or ``kfitx.fit`` arguments (``seed``).

    Returns:
        The ``keras.callbacks.History``.
    """
    from kfitx.api import fit

    source, options = source_of(generator, steps_per_epoch)
    if validation_data is not None and (inspect.isgenerator(validation_data)
                                        or type(validation_data).__name__ == "NumpyArrayIterator"):
        validation_data, _ = source_of(validation_data, validation_steps)
    shuffle = bool(options.pop("shuffle", True)) and shuffle
    for name, value in options.items():
        kwargs.setdefault(name, value)
    return fit(model, source, strategy="generator", steps_per_epoch=steps_per_epoch, epochs=epochs,
               verbose=verbose, callbacks=callbacks, validation_data=validation_data,
               validation_steps=validation_steps, validation_freq=validation_freq,
               class_weight=class_weight, max_queue_size=max_queue_size,
               workers=workers, use_multiprocessing=use_multiprocessing,
               initial_epoch=initial_epoch, shuffle=shuffle, **kwargs)
