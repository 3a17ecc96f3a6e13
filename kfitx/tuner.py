"""The keras-tuner bridge, as users import it: ``kfitx.tuner.StrategyHyperModel``, ``kfitx.tuner.fit``, ...

The code lives in :mod:`kfitx.search` (this module is its public face).
"""

from __future__ import annotations

from kfitx.search.space import search_space_table
from kfitx.search.tuner import (
    PEAK_RSS_MIB,
    SAMPLES_PER_S,
    MedianPruning,
    StrategyHyperModel,
    Tunable,
    fit,
    is_chief,
    launch,
)

__all__ = ["PEAK_RSS_MIB", "SAMPLES_PER_S", "MedianPruning", "StrategyHyperModel", "Tunable", "fit", "is_chief",
           "launch", "search_space_table"]
