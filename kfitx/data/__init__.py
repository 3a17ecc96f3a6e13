"""Data sources: what the data is, and its batches for a fit, one adapter per input kind.

Shaped like Keras's ``trainers/data_adapters/``:

* :class:`Source` and :class:`Reading` (:mod:`~kfitx.data.base`): what every
  source answers -- kind, size, whether it is held in memory -- and how a fit
  reads it; the cast rule (floats as ``floatx``) and nesting (``keras.tree``);
* one module per kind: :class:`ArraySource` (numpy arrays and ``.npy`` memory
  maps, :mod:`~kfitx.data.arrays`), :class:`GeneratorSource` (generator
  factories, :mod:`~kfitx.data.generators`), :class:`DatasetSource`
  (``tf.data``, :mod:`~kfitx.data.tfdata`), :class:`PyDatasetSource`
  (``keras.utils.PyDataset``, :mod:`~kfitx.data.pydataset`);
* :func:`coerce` (:mod:`~kfitx.data.dispatch`): what users pass, made a source;
* :mod:`~kfitx.data.feed`: each epoch's batches for strategies that run their own loop;
* :func:`boundary` (:mod:`~kfitx.data.boundaries`): where pipeline and worker
  errors become the fit's :class:`KfitxError`, and workers are stopped.

A strategy asks the source for batches and never checks its type::

    def fit(self, model, plan):
        train = plan.train.as_dataset(plan.reading())
        ...

TensorFlow and Keras are imported inside functions only: a tf.data or Keras
object can only exist if its library is already imported.
"""

from __future__ import annotations

from kfitx.data.arrays import ArraySource, npy
from kfitx.data.base import Reading, Source, keras_cuts
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
