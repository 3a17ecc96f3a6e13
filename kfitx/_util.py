"""Small helpers shared by kfitx's modules: nested structures, and type checks that import nothing.

TensorFlow and Keras are never imported here: a tf.data or Keras object can only
exist if its library is already imported, so :func:`is_instance` looks the class
up in ``sys.modules``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["flatten", "is_instance", "map_leaves"]


def flatten(structure: Any) -> list[Any]:
    """Leaves of a nested list / tuple / dict structure (dicts in key order)."""
    if isinstance(structure, dict):
        return [leaf for k in sorted(structure) for leaf in flatten(structure[k])]
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in flatten(item)]
    return [structure]


def map_leaves(fn: Callable[[Any], Any], structure: Any) -> Any:
    """Applies ``fn`` to each leaf, keeping the structure."""
    if isinstance(structure, dict):
        return {k: map_leaves(fn, v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return type(structure)(map_leaves(fn, v) for v in structure)
    return fn(structure)


def is_instance(obj: Any, module: str, path: str) -> bool:
    """``isinstance(obj, module.path)`` if ``module`` is already imported."""
    mod = sys.modules.get(module)
    if mod is None:
        return False
    cls: Any = mod
    try:
        for part in path.split("."):
            cls = getattr(cls, part)
    except AttributeError:
        return False
    return isinstance(obj, cls)
