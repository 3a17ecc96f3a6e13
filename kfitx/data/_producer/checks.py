"""Per-batch checks: each batch normalised, then held to the first batch's structure, shapes and dtypes.

:func:`_normalise` turns a yielded batch into tuples of numpy arrays (floats as
``keras.config.floatx()``, as Keras casts them, the same rule as the array pipeline);
:class:`_Signature` records the first batch and makes every later one agree with it,
or raises a :class:`DataError` naming the batch and what differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kfitx.data.reading import flatten as _flatten
from kfitx.data.reading import map_structure, train_dtype
from kfitx.errors import DataError, message


class _Signature:
    """The first batch's structure, trailing shapes and dtypes; later batches must agree."""

    def __init__(self, batch: Any, kind: str) -> None:
        self.kind = kind
        self.structure = _structure(batch)
        leaves = _flatten(batch)
        self.shapes = [leaf.shape[1:] for leaf in leaves]
        self.dtypes = [leaf.dtype for leaf in leaves]

    def where(self, number: int, index: int) -> str:
        return f"batch {index} of pass {number + 1} of the {self.kind}"

    def conform(self, batch: Any, number: int, index: int) -> Any:
        """``batch`` cast to the first batch's dtypes, or a DataError saying what differs."""
        where = self.where(number, index)
        if _structure(batch) != self.structure:
            raise DataError(message(
                f"Every batch must have the structure of the first one, {_show(self.structure)}",
                f"{_show(_structure(batch))} at {where}",
                "Yield the same (x, y[, sample_weight]) layout from every batch."))
        leaves = _flatten(batch)
        sizes = {len(leaf) for leaf in leaves}
        if len(sizes) > 1:
            raise DataError(message("x, y and sample_weight of one batch must have the same number of samples",
                                    f"sizes {sorted(sizes)} at {where}"))
        for i, (leaf, shape, dtype) in enumerate(zip(leaves, self.shapes, self.dtypes)):
            name = _leaf_name(self.structure, i)
            if leaf.shape[1:] != shape:
                raise DataError(message(
                    f"{name} must have shape (batch, {', '.join(map(str, shape))}) in every batch, as in the first",
                    f"shape {leaf.shape} at {where}",
                    "Make the generator yield arrays of one shape (only the batch size may vary)."))
            if leaf.dtype != dtype:
                if not np.can_cast(leaf.dtype, dtype, "same_kind"):
                    raise DataError(message(f"{name} must have dtype {dtype} in every batch, as in the first",
                                            f"dtype {leaf.dtype} at {where}",
                                            "Cast the arrays to one dtype in the generator."))
        dtypes = iter(self.dtypes)
        return _map_leaves(lambda a: a if a.dtype == (d := next(dtypes)) else a.astype(d), batch)


def _structure(batch: Any) -> Any:
    if isinstance(batch, dict):
        return ("dict", tuple(sorted(batch)), tuple(_structure(batch[k]) for k in sorted(batch)))
    if isinstance(batch, (list, tuple)):
        return ("seq", tuple(_structure(b) for b in batch))
    return "array"


def _show(structure: Any) -> str:
    if structure == "array":
        return "array"
    if structure[0] == "dict":
        return "{" + ", ".join(f"{k!r}: {_show(s)}" for k, s in zip(structure[1], structure[2])) + "}"
    return "(" + ", ".join(_show(s) for s in structure[1]) + ")"


def _leaf_name(structure: Any, i: int) -> str:
    if structure != "array" and structure[0] == "seq" and len(structure[1]) in (2, 3):
        roles = ["x", "y", "sample_weight"]
        counts = [len(_flatten_structure(s)) for s in structure[1]]
        for role, count in zip(roles, counts):
            if i < count:
                return role if count == 1 else f"{role}[{i}]"
            i -= count
    return "x" if i == 0 and structure == "array" else f"array {i} of the batch"


def _flatten_structure(structure: Any) -> list[Any]:
    if structure == "array":
        return ["array"]
    children = structure[2] if structure[0] == "dict" else structure[1]
    return [leaf for child in children for leaf in _flatten_structure(child)]


def _map_leaves(fn: Callable[[Any], Any], batch: Any) -> Any:
    """``fn`` on every leaf; lists become tuples (tf.data would stack a list into one tensor)."""
    import keras

    return keras.tree.lists_to_tuples(map_structure(fn, batch))


def _normalise(batch: Any, where: Callable[[], str], kind: str) -> Any:
    """Lists become tuples, leaves numpy arrays; floats become ``floatx`` as Keras casts them."""
    if isinstance(batch, list):
        batch = tuple(batch)
    if isinstance(batch, tuple) and not 1 <= len(batch) <= 3:
        raise DataError(message(f"A {kind} must yield x, (x, y) or (x, y, sample_weight)",
                                f"a tuple of {len(batch)} items at {where()}",
                                "Pass several inputs as a list or dict inside x: ([x1, x2], y)."))

    def leaf(value: Any) -> np.ndarray:
        array = np.asarray(value)
        if array.dtype.kind not in "biuf" or array.ndim == 0:
            raise DataError(message(
                f"A {kind} must yield numeric arrays with a leading batch axis",
                f"{type(value).__name__} of dtype {array.dtype} and shape {array.shape} at {where()}",
                "Yield numpy arrays (or tensors) of numbers."))
        target = train_dtype(array.dtype)
        return array if array.dtype == target else array.astype(target)

    return _map_leaves(leaf, batch)
