"""Augmentation of training batches inside a tf.data pipeline.

Separation of concerns:

* :func:`adapt` (:mod:`~kfitx.augment.dispatch`) recognises what a user passes as
  ``augment`` -- a Python function on numpy batches (:mod:`~kfitx.augment.function`),
  Keras preprocessing layers (:mod:`~kfitx.augment.layers`), or an
  ``ImageDataGenerator`` (:mod:`~kfitx.augment.image_data_generator`) -- and returns
  an :class:`Augmentation`, or says what would have been accepted;
* an :class:`Augmentation` (:mod:`~kfitx.augment.base`) knows how to augment *one
  batch* (``apply``), given a per-batch random seed and the batch's index;
* :func:`map_dataset` (:mod:`~kfitx.augment.dispatch`) is the plumbing: it numbers
  the batches, gives each one a seed from ``tf.data.Dataset.random`` (the same
  ``seed`` gives the same stream, every new pass over the dataset gets new
  augmentations), and maps ``apply`` over x in parallel and in order, leaving y and
  sample weights alone;
* ``ImageDataGenerator`` semantics are re-implemented on whole batches in TF ops
  (:mod:`~kfitx.augment.image_ops`: ``_random_params``, ``_apply_transform``,
  ``_standardize``, each the batched twin of the generator's method of the same
  name); what is not vectorised runs per image through the generator's own methods.

Only training batches are augmented; the caller never maps validation data.
TensorFlow and Keras are imported inside functions only.
"""

from __future__ import annotations

from kfitx.augment.base import Augmentation
from kfitx.augment.dispatch import adapt, map_dataset
from kfitx.augment.image_data_generator import image_data_generator_class

__all__ = ["Augmentation", "adapt", "image_data_generator_class", "map_dataset"]
