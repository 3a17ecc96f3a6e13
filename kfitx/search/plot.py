"""``kfitx report --plot``: a search directory's trials as a picture (needs matplotlib: ``kfitx[plot]``).

Three panels: score against wall time (when each trial ended, coloured by strategy), score
against training seconds with the Pareto front (:mod:`kfitx.search.front`), and samples/s per
strategy. Works on a :class:`kfitx.search.report.Search`; matplotlib is imported only when drawing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

from kfitx.errors import OptionError, message
from kfitx.search import front
from kfitx.search.trial_record import TrialRow


class Plotted(Protocol):
    """What :func:`plot` reads of a search (:class:`kfitx.search.report.Search`)."""

    @property
    def trials(self) -> Sequence[TrialRow]: ...

    @property
    def objective(self) -> str | None: ...

    @property
    def direction(self) -> str: ...

    @property
    def project_dir(self) -> str: ...

__all__ = ["plot", "require_matplotlib"]


def require_matplotlib() -> None:
    """Raises :class:`kfitx.OptionError` now, before any work, when ``--plot`` cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise OptionError(message("matplotlib for --plot", "it is not installed",
                                  "pip install 'kfitx[plot]'")) from err


def _number(trial_id: str) -> int:
    return int(trial_id) if trial_id.isdigit() else 0


def plot(search: Plotted, path: str) -> None:
    """Writes ``path`` (PNG): score against wall time, score against training seconds with the Pareto
    front, and samples/s per strategy.

    Raises:
        OptionError: when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise OptionError(message("matplotlib for --plot", "it is not installed",
                                  "pip install 'kfitx[plot]'")) from err
    rows = [t for t in search.trials if t.score is not None]
    starts = [t.record["start"] for t in search.trials if isinstance(t.record.get("start"), (int, float))]
    origin = min(starts) if starts else 0.0
    strategies = sorted({t.strategy or "-" for t in search.trials})
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4.2))
    for name in strategies:
        mine = [t for t in rows if (t.strategy or "-") == name]
        xs = [(t.record["end"] - origin) if isinstance(t.record.get("end"), (int, float)) else _number(t.trial_id)
              for t in mine]
        left.scatter(xs, [t.score for t in mine], label=name)
    left.set_xlabel("wall time at the trial's end (s)" if starts else "trial")
    left.set_ylabel(search.objective or "score")
    left.set_title("score against wall time")
    left.legend(title="strategy")
    front.draw(middle, search.trials, search.direction, search.objective or "score")
    speeds = [(name, [t.samples_per_s for t in search.trials if (t.strategy or "-") == name and t.samples_per_s])
              for name in strategies]
    speeds = [(name, values) for name, values in speeds if values]
    if speeds:
        right.boxplot([values for _, values in speeds])
        right.set_xticks(range(1, len(speeds) + 1), [name for name, _ in speeds])
    right.set_ylabel("training samples/s")
    right.set_title("throughput per strategy" if speeds else "throughput per strategy (none recorded)")
    fig.suptitle(os.path.basename(os.path.abspath(search.project_dir)))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
