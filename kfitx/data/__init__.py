"""Data sources: what the data is, and its batches for a fit, one adapter per input kind.

Shaped like Keras's ``trainers/data_adapters/``:

* :class:`Source`, :class:`InputForm` and :class:`Reading` (:mod:`~kfitx.data.base`): what
  every source answers, as Keras's data adapters do -- its form (one of a closed set,
  decided once per fit), its batches for tf.data and in Python, its cardinality --
  and how a fit reads it; the cast rule (floats as ``floatx``) and nesting (``keras.tree``).
  :class:`Source` is also the public protocol of a plugin's source, taught to
  ``kfitx.fit`` through the ``kfitx_sources`` hook (``docs/plugins.md``);
* one module per kind: :class:`ArraySource` (numpy arrays and ``.npy`` memory
  maps, :mod:`~kfitx.data.arrays`), :class:`GeneratorSource` (generator
  factories, :mod:`~kfitx.data.generators`), :class:`DatasetSource`
  (``tf.data``, :mod:`~kfitx.data.tfdata`), :class:`PyDatasetSource`
  (``keras.utils.PyDataset``, :mod:`~kfitx.data.pydataset`);
* :func:`coerce` (:mod:`~kfitx.data.dispatch`): what users pass, made a source (the
  installed ``kfitx_sources`` hook asked first), the one place a source's type is tested;
* :mod:`~kfitx.data.epoch_iterator`: the one place that counts steps -- ``model.fit``'s epoch and
  pass rules, as Keras's ``EpochIterator`` owns them -- read by strategies that run their own loop
  through a source's feed (:mod:`~kfitx.data.feed`), the worker behind a generator's stream counting
  each pass by the same rules; ``class_weight`` is applied once, by the source's reading
  (:mod:`~kfitx.data.weights`);
* :func:`boundary` (:mod:`~kfitx.data.boundaries`): where pipeline and worker
  errors become the fit's :class:`KfitxError`, and workers are stopped.

A strategy asks the source for batches, and the plan for its form, and never checks its type::

    def fit(self, model, plan):
        if plan.train_form.in_memory:  # kfitx.data.InputForm
            ...
        train = plan.train.as_dataset(plan.reading())

TensorFlow and Keras are imported inside functions only: a tf.data or Keras
object can only exist if its library is already imported.
"""

from __future__ import annotations

from kfitx.data.arrays import ArraySource, npy
from kfitx.data.base import InputForm, Reading, Source, keras_cuts
from kfitx.data.boundaries import Boundary, boundary
from kfitx.data.dispatch import arrays, coerce, dataset, generator
from kfitx.data.generators import GeneratorSource
from kfitx.data.keras_input import KerasSource
from kfitx.data.pydataset import PyDatasetSource
from kfitx.data.tfdata import DatasetSource

__all__ = [
    "ArraySource",
    "Boundary",
    "DatasetSource",
    "GeneratorSource",
    "InputForm",
    "KerasSource",
    "PyDatasetSource",
    "Reading",
    "Source",
    "arrays",
    "boundary",
    "coerce",
    "dataset",
    "generator",
    "keras_cuts",
    "npy",
]
