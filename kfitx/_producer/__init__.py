"""Batches made in a background worker while the model trains, with every wait bounded.

Separation of concerns:

* a *pass opener* returns a fresh iterator over one pass of the data: one call of
  a generator factory, or one read of a ``PyDataset`` in (optionally shuffled)
  index order (:func:`pass_opener`, in :mod:`kfitx._producer.passes`);
* the worker -- a thread, or a forked process -- runs passes one after another and
  puts batches on a bounded queue; a process sends them over a pipe only it and
  its parent hold (:mod:`kfitx._producer.workers`);
* every batch is checked against the first one (structure, trailing shapes,
  dtype) on the consumer side (:mod:`kfitx._producer.checks`);
* :class:`Producer` starts the worker, serves checked batches to
  ``tf.data.Dataset.from_generator``, turns every fault into a :class:`KfitxError`
  and stops the worker in bounded time (:mod:`kfitx._producer.producer`).
"""

from __future__ import annotations

from kfitx._producer.passes import pass_opener
from kfitx._producer.producer import Producer

__all__ = ["Producer", "pass_opener"]
