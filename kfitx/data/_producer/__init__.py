"""Batches made in a background worker while the model trains, with every wait bounded.

Separation of concerns:

* a *pass opener* returns a fresh iterator over one pass of the data: one call of
  a generator factory, or one read of a ``PyDataset`` in (optionally shuffled)
  index order (the source's ``open_pass``);
* the worker -- a thread, or a forked process -- runs passes one after another and
  puts batches on a bounded queue; a process sends them over a pipe only it and
  its parent hold (:mod:`kfitx.data._producer.workers`);
* every batch is checked against the first one (structure, trailing shapes,
  dtype) on the consumer side (:mod:`kfitx.data._producer.checks`);
* :class:`Producer` starts the worker, serves checked batches to
  ``tf.data.Dataset.from_generator``, turns every fault into a :class:`KfitxError`
  and stops the worker in bounded time (:mod:`kfitx.data._producer.producer`);
* :func:`stream` makes a source's ``tf.data`` stream of it, the worker stopped
  and its faults reported through the fit's :mod:`boundary <kfitx.data.boundaries>`.
"""

from __future__ import annotations

from kfitx.data._producer.producer import Producer, stream

__all__ = ["Producer", "stream"]
