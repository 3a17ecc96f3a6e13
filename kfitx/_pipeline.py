"""Moved to :mod:`kfitx.data` (temporary re-exports while the loop strategy moves to the engine)."""

from __future__ import annotations

from typing import Any

from kfitx.data.arrays import _aligned_empty, array_dataset, as_tensor

__all__ = ["_aligned_empty", "array_dataset", "as_tensor", "validation_dataset"]


def validation_dataset(plan: Any) -> Any:
    """``plan.validation_dataset()``."""
    return plan.validation_dataset()
