"""What every kind of augmentation shares: the :class:`Augmentation` base.

An :class:`Augmentation` knows how to augment *one batch* (``apply``), given a
per-batch random seed and the batch's index; :func:`_numpy_call` runs the
Python parts of a kind in ``tf.numpy_function`` and reports what they raise,
as an :class:`AugmentationError` naming the batch, to where the pipeline's
copy of the augmentation reports (:meth:`Augmentation.for_pipeline`).
TensorFlow is imported inside functions only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from kfitx.errors import AugmentationError, KfitxError, message

if TYPE_CHECKING:
    import tensorflow as tf

    #: A batch's x or y in a tf.data map function: a tensor, or a nest (tuple, list, dict) of them.
    Nest: TypeAlias = "tf.Tensor | tuple[Nest, ...] | list[Nest] | dict[str, Nest]"
    #: The spec of x: a ``tf.TensorSpec``, or a nest of them.
    SpecNest: TypeAlias = "tf.TensorSpec | tuple[SpecNest, ...] | list[SpecNest] | dict[str, SpecNest]"


class Augmentation:
    """One augmentation, ready to be mapped over training batches.

    Attributes:
        kind: ``"callable"``, ``"keras layers"`` or ``"ImageDataGenerator"``.
        in_graph: True when :meth:`apply` is TensorFlow ops only (no Python per batch).
    """

    kind: str = "augmentation"
    in_graph: bool = True

    #: Where a pipeline's faults go, and how it names a batch index: set on the copy :meth:`for_pipeline` makes.
    _report: Callable[[KfitxError], object] | None = None
    _where: Callable[[int], str] = staticmethod(lambda index: f"training batch {index} of its epoch")

    def __init__(self) -> None:
        pass

    def for_pipeline(self, report: Callable[[KfitxError], object] | None,
                     where: Callable[[int], str]) -> Augmentation:
        """A copy of this augmentation for one pipeline: its faults go to ``report(fault)``, its batches are named
        ``where(index)``. The augmentation itself is not changed, so that one augmentation can feed several
        pipelines (a strategy's fits, trials, validation splits) at once."""
        bound = copy.copy(self)
        bound._report, bound._where = report, where
        return bound

    def describe(self) -> str:
        """One line for logs."""
        raise NotImplementedError

    def check(self, x_spec: SpecNest) -> None:
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

    def apply(self, x: Nest, y: Nest | None, *, seed: tf.Tensor, batch: tf.Tensor) -> tuple[Nest, Nest | None]:
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

    def _fault(self, error: BaseException, batch: int) -> KfitxError:
        """What ``error``, raised on batch ``batch``, means to the user: reported to the fit's boundary."""
        if isinstance(error, KfitxError):
            fault = error
        else:
            fault = AugmentationError(message(
                "The augmentation must transform every training batch without raising",
                f"{type(error).__name__}({str(error)!r}) at {self._where(batch)}",
                f"Fix the augmentation ({self.describe()}); the traceback above shows where it failed."))
            fault.__cause__ = error
        if self._report is not None:
            self._report(fault)
        return fault


def _numpy_call(aug: Augmentation, body: Callable[..., list[np.ndarray]], batch: tf.Tensor,
                tensors: list[tf.Tensor], like: list[tf.Tensor],
                dtypes: list[tf.DType] | None = None) -> list[tf.Tensor]:
    """Runs ``body(index, *arrays)`` in ``tf.numpy_function``; reports what it raises (see :meth:`Augmentation._fault`).

    The outputs get the static shapes of ``like`` and the dtypes ``dtypes`` (those of
    ``like`` by default), so Keras sees known shapes.
    """
    import tensorflow as tf

    def run(index: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
        n = int(index)
        try:
            return body(n, *arrays)
        except Exception as err:  # reported to the fit's boundary, then raised to stop the pipeline
            fault = aug._fault(err, n)
            if fault is err:
                raise
            raise fault from err

    dtypes = dtypes or [t.dtype for t in like]
    outs = tf.numpy_function(run, [batch, *tensors], Tout=dtypes, stateful=True, name="kfitx_augment")
    for out, ref in zip(outs, like):
        out.set_shape(ref.shape)
    return list(outs)
