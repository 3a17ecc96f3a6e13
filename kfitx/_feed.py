"""Moved to :mod:`kfitx.data.feed` (temporary re-exports while the loop strategy moves to the engine)."""

from __future__ import annotations

from typing import Any

from kfitx.data import Reading
from kfitx.data.feed import DatasetFeed, PythonFeed, class_weights

__all__ = ["DatasetFeed", "PythonFeed", "class_weights", "make_feed"]


def make_feed(source: Any, *, batch_size: int, shuffle: Any, seed: Any, steps_per_epoch: Any, class_weight: Any,
              group: int, pull: bool, endless_after: int) -> Any:
    """``source.feed(Reading(...), group=group, pull=pull)``."""
    reading = Reading(batch_size=batch_size, shuffle=shuffle, seed=seed, steps=steps_per_epoch,
                      class_weight=class_weight, endless_after=endless_after)
    return source.feed(reading, group=group, pull=pull)
