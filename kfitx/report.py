"""``kfitx report``'s reading of a search directory, as users import it: ``kfitx.report.load``, ...

The code lives in :mod:`kfitx.search.report` (this module is its public face).
"""

from __future__ import annotations

from kfitx.search.report import (
    Search,
    TrialRow,
    best_hyperparameters,
    describe_best,
    failures,
    find_project,
    format_value,
    leaderboard,
    load,
    plot,
    read_trial,
    summary,
)

__all__ = ["Search", "TrialRow", "best_hyperparameters", "describe_best", "failures", "find_project",
           "format_value", "leaderboard", "load", "plot", "read_trial", "summary"]
