"""Augmentation by Keras preprocessing layers, traced into the tf.data map.

The layers run with ``training=True``; while they are traced, their
``SeedGenerator``s draw from the per-batch seed (:func:`_seeded_per_batch`), so
a run is reproducible and each pass differs.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kfitx import _keras
from kfitx.augment.base import Augmentation
from kfitx.errors import AugmentationError, message
from kfitx.runtime.lazy import is_instance as _is_instance

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from kfitx.augment.base import Nest

_SEEDING = threading.RLock()  # held while Keras layers are traced with per-batch seeds


class _LayersAugmentation(Augmentation):
    kind = "keras layers"
    in_graph = True

    def __init__(self, layers: list[keras.Layer]) -> None:
        super().__init__()
        self.layers = layers

    def describe(self) -> str:
        names: list[str] = []
        for layer in self.layers:
            inner = getattr(layer, "layers", None) or [layer]  # a Sequential: name what it holds
            names.extend(type(sub).__name__ for sub in inner)
        return f"Keras layers {', '.join(names)} in tf.data (training=True, seeded per batch)"

    def apply(self, x: tf.Tensor, y: Nest | None, *, seed: tf.Tensor, batch: tf.Tensor) -> tuple[Nest, Nest | None]:
        import tensorflow as tf

        out = x
        with _seeded_per_batch(self._seed_generators(), seed):
            for layer in self.layers:
                try:
                    out = layer(out, training=True)
                except (TypeError, ValueError) as err:
                    raise AugmentationError(message(
                        f"Augmentation layers must accept the batches' x ({x.dtype.name} of shape {x.shape})",
                        f"{type(layer).__name__} raised {type(err).__name__}: {err}",
                        "Check the layer's expected input (images are (batch, rows, cols, channels)).")) from err
        out = tf.convert_to_tensor(out)
        if not out.shape.is_compatible_with(x.shape):
            raise AugmentationError(message(
                "Augmentation layers must keep the shape of x (validation batches are not augmented)",
                f"x of shape {x.shape} became {out.shape}",
                "Put layers that crop or resize (RandomCrop, Resizing) inside the model."))
        out.set_shape(x.shape)
        return (tf.cast(out, x.dtype) if x.dtype.is_floating else out), y

    def _seed_generators(self) -> list[keras.random.SeedGenerator]:
        return _keras.seed_generators(self.layers)


@contextlib.contextmanager
def _seeded_per_batch(generators: list[keras.random.SeedGenerator], seed: tf.Tensor) -> Iterator[None]:
    """While a map function is traced, the layers' ``SeedGenerator``s draw from ``seed``.

    A ``SeedGenerator`` is a variable that each call advances; in a parallel map the
    calls race for it, so the same seed gave a different stream each run. Drawn from
    the per-batch seed instead, a run is reproducible and each pass differs.
    """
    import tensorflow as tf

    counter = itertools.count()

    def next_seed(ordered: bool = True) -> tf.Tensor:
        return tf.random.experimental.stateless_fold_in(seed, next(counter))

    with _SEEDING, _keras.seeds_drawn_from(generators, next_seed):
        yield


def _as_layers(augment: object) -> list[keras.Layer] | None:
    """The layers in ``augment`` (one, a list / tuple, a Sequential), else ``None``."""
    if _is_instance(augment, "keras", "layers.Layer"):
        return [augment]
    if isinstance(augment, (list, tuple)) and augment and all(
            _is_instance(item, "keras", "layers.Layer") for item in augment):
        return list(augment)
    return None
