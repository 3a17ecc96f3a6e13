"""What every kind of augmentation shares: the :class:`Augmentation` base.

An :class:`Augmentation` knows how to augment *one batch* (``apply``), given a
per-batch random seed and the batch's index; :func:`_numpy_call` runs the
Python parts of a kind in ``tf.numpy_function`` and records what they raise.
TensorFlow is imported inside functions only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from kfitx.errors import AugmentationError, message


class Augmentation:
    """One augmentation, ready to be mapped over training batches.

    Attributes:
        kind: ``"callable"``, ``"keras layers"`` or ``"ImageDataGenerator"``.
        in_graph: True when :meth:`apply` is TensorFlow ops only (no Python per batch).
        error: The first exception raised while the pipeline ran (Python parts
            only), or ``None``. :func:`map_dataset` clears it.
        error_batch: Index (from the dataset's ``enumerate``) of the failed batch.
    """

    kind: str = "augmentation"
    in_graph: bool = True

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.error_batch: int | None = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        """One line for logs."""
        raise NotImplementedError

    def check(self, x_spec: Any) -> None:
        """Refuses, at build time, an x this augmentation cannot take.

        Args:
            x_spec: The ``TensorSpec`` of x (or a nest of them, for nested inputs).

        Raises:
            AugmentationError: here, unless x is a single tensor.
        """
        import tensorflow as tf

        if not isinstance(x_spec, tf.TensorSpec):
            raise AugmentationError(message(
                f"{self.kind} augmentation needs x to be a single tensor",
                f"x of structure {x_spec}",
                "Pass a Python function fn(x, y) -> (x, y) to augment nested inputs, or apply "
                "the augmentation inside the model."))

    def apply(self, x: Any, y: Any, *, seed: Any, batch: Any) -> tuple[Any, Any]:
        """Augments one batch in a tf.data map function.

        Args:
            x: The batch's inputs (tensors).
            y: Its targets, or ``None``.
            seed: An int64 tensor of shape ``[2]``, this batch's stateless seed.
            batch: An int64 scalar tensor, the batch's index.

        Returns:
            ``(x, y)`` augmented.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<kfitx Augmentation: {self.describe()}>"

    def _record(self, error: BaseException, batch: int) -> None:
        with self._lock:  # several tf.data threads may fail at once: the first wins
            if self.error is None:
                self.error, self.error_batch = error, batch


def _numpy_call(aug: Augmentation, body: Callable[..., list[np.ndarray]], batch: Any,
                tensors: list[Any], like: list[Any], dtypes: list[Any] | None = None) -> list[Any]:
    """Runs ``body(index, *arrays)`` in ``tf.numpy_function``; records what it raises.

    The outputs get the static shapes of ``like`` and the dtypes ``dtypes`` (those of
    ``like`` by default), so Keras sees known shapes.
    """
    import tensorflow as tf

    def run(index: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
        n = int(index)
        try:
            return body(n, *arrays)
        except Exception as err:  # recorded for the strategy's report, then re-raised to stop the pipeline
            aug._record(err, n)
            raise

    dtypes = dtypes or [t.dtype for t in like]
    outs = tf.numpy_function(run, [batch, *tensors], Tout=dtypes, stateful=True, name="kfitx_augment")
    for out, ref in zip(outs, like):
        out.set_shape(ref.shape)
    return list(outs)
