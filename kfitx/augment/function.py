"""Augmentation by a Python function on numpy batches.

The function runs in ``tf.numpy_function`` inside tf.data's threads, gets a
seeded ``numpy.random.Generator`` if it takes a keyword ``rng``, and must give
back arrays of the shapes and (castable) dtypes it was given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from kfitx.augment.base import Augmentation, _numpy_call
from kfitx.errors import AugmentationError, message

if TYPE_CHECKING:
    import tensorflow as tf

    from kfitx.augment.base import Nest, SpecNest


def _writeable(array: np.ndarray) -> np.ndarray:
    return array if array.flags.writeable else array.copy()


# --- 1. A Python function on numpy batches --------------------------------------------------

class _CallableAugmentation(Augmentation):
    kind = "callable"
    in_graph = False

    def __init__(self, fn: Callable[..., object]) -> None:
        super().__init__()
        self.fn = fn
        try:
            self._wants_rng = "rng" in inspect.signature(fn).parameters
        except (TypeError, ValueError):  # builtins without a signature
            self._wants_rng = False

    def describe(self) -> str:
        name = getattr(self.fn, "__qualname__", None) or type(self.fn).__name__
        rng = ", seeded rng per batch" if self._wants_rng else ""
        return f"callable {name} on numpy batches (Python, in tf.data threads{rng})"

    def check(self, x_spec: SpecNest) -> None:
        """Any nest of tensors is fine: the function gets it as numpy arrays."""

    def apply(self, x: Nest, y: Nest | None, *, seed: tf.Tensor, batch: tf.Tensor) -> tuple[Nest, Nest | None]:
        import tensorflow as tf

        flat_x, flat_y = tf.nest.flatten(x), ([] if y is None else tf.nest.flatten(y))
        nx = len(flat_x)

        def body(n: int, seed_words: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
            arrays = tuple(_writeable(a) for a in arrays)
            xs = tf.nest.pack_sequence_as(x, list(arrays[:nx]))
            kwargs = {"rng": np.random.default_rng(seed_words.view(np.uint64))} if self._wants_rng else {}
            if y is None:
                got_x, got_y = self.fn(xs, **kwargs), None
            else:
                result = self.fn(xs, tf.nest.pack_sequence_as(y, list(arrays[nx:])), **kwargs)
                if not isinstance(result, (tuple, list)) or len(result) != 2:
                    raise self._bad(n, "a pair (x, y)", _kind_of(result),
                                    "Return both, e.g. `return x, y`, even if y is unchanged.")
                got_x, got_y = result
            out = self._checked(n, "x", x, got_x, arrays[:nx])
            if y is not None:
                out += self._checked(n, "y", y, got_y, arrays[nx:])
            return out

        outs = _numpy_call(self, body, batch, [seed, *flat_x, *flat_y], flat_x + flat_y)
        new_x = tf.nest.pack_sequence_as(x, outs[:nx])
        return new_x, (None if y is None else tf.nest.pack_sequence_as(y, outs[nx:]))

    def _bad(self, n: int, expected: str, received: str, todo: str) -> AugmentationError:
        return AugmentationError(message(f"The augmentation must return {expected} for batch {n}",
                                         f"{received} for batch {n}", todo))

    def _checked(self, n: int, role: str, structure: Nest, got: object,
                 given: tuple[np.ndarray, ...]) -> list[np.ndarray]:
        import tensorflow as tf

        try:
            tf.nest.assert_same_structure(structure, got, check_types=False)
        except (TypeError, ValueError):
            raise self._bad(n, f"{role} with the structure it was given ({len(given)} array(s))",
                            f"{role} as {_kind_of(got)}", "Return arrays nested as the batch was.") from None
        out = []
        for i, (leaf, ref) in enumerate(zip(tf.nest.flatten(got), given)):
            name = role if len(given) == 1 else f"{role}[{i}]"
            array = np.asarray(leaf)
            if array.shape != ref.shape:
                raise self._bad(n, f"{name} of shape {ref.shape} (as given; batch size {len(ref)})",
                                f"augmentation returned {name} of shape {array.shape}",
                                "Keep every sample and its shape; crop or resize inside the model instead.")
            if not np.can_cast(array.dtype, ref.dtype, "same_kind"):
                raise self._bad(n, f"{name} of dtype {ref.dtype} or one castable to it",
                                f"augmentation returned {name} of dtype {array.dtype}",
                                f"Cast it back (e.g. .astype('{ref.dtype}')), or convert the data to "
                                "floats before augmenting.")
            out.append(array.astype(ref.dtype, copy=False))
        return out


def _kind_of(value: object) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__}" + ("" if shape is None else f" of shape {tuple(shape)}")
