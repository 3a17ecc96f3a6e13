"""Type checks that import nothing (nested structures are ``keras.tree``'s, see :mod:`kfitx.data.base`).

TensorFlow and Keras are never imported here: a tf.data or Keras object can only
exist if its library is already imported, so :func:`is_instance` looks the class
up in ``sys.modules``.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["is_instance"]


def is_instance(obj: object, module: str, path: str) -> bool:
    """``isinstance(obj, module.path)`` if ``module`` is already imported."""
    mod = sys.modules.get(module)
    if mod is None:
        return False
    cls: Any = mod  # the module, then each attribute along path
    try:
        for part in path.split("."):
            cls = getattr(cls, part)
    except AttributeError:
        return False
    return isinstance(obj, cls)
