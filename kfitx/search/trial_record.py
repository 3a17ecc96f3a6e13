"""kfitx's own small record of each keras-tuner trial, beside keras-tuner's ``trial.json``.

keras-tuner's ``trial_<id>/trial.json`` holds the hyperparameters, the metrics,
the score and the status, but no timestamps, no epoch counts and no worker.
kfitx keeps those in ``trial_<id>/kfitx-trial.json``: ``start`` and ``end``
(seconds since the epoch), ``epochs`` run, ``strategy``, ``worker`` (keras-tuner's
tuner id), ``host``, ``pid``, ``peak_rss_mib``, ``samples_per_s``, ``status``
and, when worker processes died running it, ``deaths`` (one cause each).

Writers merge their keys into the record (``update``); each write replaces the
file atomically, so a reader (``kfitx report`` on a running search) sees the old
record or the new one, never half of one. Imports nothing heavy.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kfitx.runtime.files import read_json, write_json

__all__ = ["PEAK_RSS_MIB", "RECORD", "SAMPLES_PER_S", "TrialRow", "finish", "read", "read_json", "record_path",
           "update", "write_json"]

SAMPLES_PER_S = "kfitx_samples_per_s"  # the History keys of kfitx.tuner (kfitx.search.measure)
PEAK_RSS_MIB = "kfitx_peak_rss_mib"

#: The record's file name inside keras-tuner's ``trial_<id>`` folder.
RECORD = "kfitx-trial.json"


def record_path(trial_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(trial_dir), RECORD)


def read(trial_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The record of the trial in ``trial_dir``; ``{}`` when there is none (yet) or it cannot be read."""
    return read_json(record_path(trial_dir))


def update(trial_dir: str | os.PathLike[str], **values: object) -> dict[str, Any]:
    """Merges ``values`` into the record (``deaths`` are appended, not replaced); returns the record."""
    os.makedirs(trial_dir, exist_ok=True)
    record = read(trial_dir)
    for key, value in values.items():
        if key == "deaths":
            record.setdefault("deaths", []).extend(value)
        else:
            record[key] = value
    write_json(record_path(trial_dir), record)
    return record


@dataclass
class TrialRow:
    """One trial as its files describe it."""

    trial_id: str
    status: str
    score: float | None
    values: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)  # best value of each metric
    record: dict[str, Any] = field(default_factory=dict)  # kfitx-trial.json
    message: str | None = None

    @property
    def strategy(self) -> str | None:
        return self.values.get("strategy") or self.record.get("strategy")

    @property
    def seconds(self) -> float | None:
        start, end = self.record.get("start"), self.record.get("end")
        return end - start if isinstance(start, (int, float)) and isinstance(end, (int, float)) else None

    @property
    def samples_per_s(self) -> float | None:
        return self.metrics.get(SAMPLES_PER_S, self.record.get("samples_per_s"))

    @property
    def pruned_epoch(self) -> int | None:
        """The epoch (counted from 1) this trial was stopped after by pruning; ``None`` if it was not."""
        value = self.record.get("pruned_epoch")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def budget_epoch(self) -> int | None:
        """The epoch (counted from 1) the search's time budget stopped this trial after; ``None`` if it did not."""
        value = self.record.get("stopped_epoch")
        return value if self.record.get("stopped_by") == "budget" and isinstance(value, int) else None

    @property
    def peak_mib(self) -> float | None:
        values = [v for v in (self.metrics.get(PEAK_RSS_MIB), self.record.get("peak_rss_mib")) if v]
        return max(values) if values else None


class Pruned(Protocol):
    """What :func:`finish` reads of a trial's pruning callback (:mod:`kfitx.search.pruning`)."""

    @property
    def pruned_epoch(self) -> int | None: ...

    @property
    def decision(self) -> Mapping[str, object]: ...


def finish(trial_dir: str, trial_id: str, strategy: str, history: Mapping[str, Sequence[float]], epochs: int,
           started: float, worker: str | None = None, pruner: Pruned | None = None) -> None:
    """Writes a finished trial's record: strategy, epochs, samples/s, peak memory and pruning (``history``: the
    ``History.history`` of its fit; with several executions, the first one pruned is the trial's)."""
    last = lambda key: float(history[key][-1]) if history.get(key) else None
    earlier = read(trial_dir)
    values: dict[str, object] = {"trial_id": trial_id, "strategy": strategy, "epochs": epochs,
                                 "samples_per_s": last(SAMPLES_PER_S), "end": time.time()}
    peak = last(PEAK_RSS_MIB)
    if peak is not None:
        values["peak_rss_mib"] = max(peak, earlier.get("peak_rss_mib") or 0.0)
    if pruner is not None:
        values.update(pruned_epoch=earlier.get("pruned_epoch") or pruner.pruned_epoch,
                      pruned_by=earlier.get("pruned_by") or pruner.decision or None)
    if "start" not in earlier:  # outside ``kfitx tune`` (whose runner writes these at the trial's start)
        values.update(start=started, worker=worker, host=socket.gethostname(), pid=os.getpid())
    update(trial_dir, **values)
