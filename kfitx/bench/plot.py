"""``kfitx bench``'s presentation helpers: row labels, the plain baseline, the bar charts (``--plot``, matplotlib)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kfitx.errors import KfitxError, message

if TYPE_CHECKING:
    from kfitx.bench import BenchResult, BenchSpec

#: The baseline row: the same model trained by plain ``model.fit(x, y)``, no kfitx in between.
PLAIN = "plain"

def plain_speed(results: Sequence[BenchResult], backend: str = "") -> float | None:
    """samples/s of the plain ``model.fit`` row on ``backend``, if there is one that ran."""
    return next((r.samples_per_s for r in results if r.strategy == PLAIN and not r.error and r.samples_per_s
                 and r.backend == backend), None)


def label(result: BenchResult, results: Sequence[BenchResult]) -> str:
    """The row's name: the strategy, and its backend when the results span several."""
    several = len({r.backend for r in results}) > 1
    return f"{result.strategy} ({result.backend})" if several and result.backend else result.strategy


def require_matplotlib() -> None:
    """Raises a :class:`KfitxError` saying how to install matplotlib, if it is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise KfitxError(message("matplotlib for --plot", "it is not installed",
                                 "pip install 'kfitx[plot]' (or matplotlib)."))


def plot(results: Sequence[BenchResult], path: str | os.PathLike[str], spec: BenchSpec | None = None) -> None:
    """Draws the results as four bar charts (throughput, time per epoch, peak memory, final
    accuracy) into ``path`` (PNG)."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in results if not r.error]
    names = [label(r, results).replace(" (", "\n(") for r in done]
    accuracy = "val_accuracy" if all("val_accuracy" in r.metrics for r in done) else "accuracy"
    ratios = [r.samples_per_s / plain if (plain := plain_speed(results, r.backend)) else None for r in done]
    speed = [r.samples_per_s for r in done]
    speed_labels = [f"{v:,.0f}" + ("" if q is None else f"\n{q:.2f}x") for v, q in zip(speed, ratios)]
    panels: list[tuple[str, list[float], str | list[str]]] = [
        ("samples/s (higher is better)" + (", x plain model.fit" if any(ratios) else ""), speed, speed_labels),
        ("seconds per epoch (lower is better)", [r.seconds_per_epoch for r in done], "{:.3f}"),
        ("peak RSS, MiB (lower is better)", [r.peak_rss_mib for r in done], "{:.0f}"),
        (f"final {accuracy}", [r.metrics.get(accuracy, 0.0) for r in done], "{:.3f}"),
    ]
    width = max(3.6, 0.5 * len(names) + 1.0)  # room for every bar's label
    fig, axes = plt.subplots(1, 4, figsize=(4 * width, 4.6))
    colors = [plt.get_cmap("tab10")(i % 10) for i in range(len(names))]
    for ax, (title, values, fmt) in zip(axes, panels):
        bars = ax.bar(names, values, color=colors)
        ax.set_title(title, fontsize=10)
        labels = fmt if isinstance(fmt, list) else [fmt.format(v) for v in values]
        ax.bar_label(bars, labels=labels, fontsize=8 if len(names) <= 6 else 7, padding=2)
        ax.tick_params(axis="x", labelrotation=30, labelsize=9)
        ax.margins(y=0.15)
    failed = [r.strategy for r in results if r.error]
    title = "kfitx bench" + (f": {spec.describe()}" if spec else "")
    fig.suptitle(title + (f"  (failed: {', '.join(failed)})" if failed else ""), fontsize=11)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
    plt.close(fig)
