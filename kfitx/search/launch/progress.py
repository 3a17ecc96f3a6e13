"""One line per finished trial while a ``kfitx tune`` search runs.

:class:`Progress` re-reads only the trial files that changed since the last
``poll()`` (by modification time), so polling a long search stays cheap.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Collection

from kfitx.search import budget
from kfitx.search.report import FINISHED, TrialRow, read_trial

__all__ = ["Progress", "format_eta"]


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Lines for trials that finished since the last :meth:`poll`.

    Args:
        project_dir: The search directory (keras-tuner's ``directory/project_name``).
        objective: Name of the score (``val_accuracy``), or ``None``.
        direction: ``"max"`` or ``"min"``: which score is best.
        total: ``max_trials``, or ``None``.
        workers: Only trials run by these tuner ids (a joining host), or ``None`` for all.
        start: When the search began (``time.time()``), for the ETA.
    """

    def __init__(self, project_dir: str, objective: str | None, direction: str | None, total: int | None,
                 workers: Collection[str] | None = None, start: float | None = None) -> None:
        self.project_dir, self.objective, self.total, self.workers = project_dir, objective, total, workers
        self.sign = -1.0 if direction == "min" else 1.0
        self.start = time.time() if start is None else start
        self.seen: dict[str, float] = {}  # trial dir -> mtime of trial.json when read
        self.reported: set[str] = set()
        self.done_before: int | None = None  # finished before this run began (a resumed search)
        self.best: float | None = None
        self.finished = 0
        self.first_start: float | None = None

    def poll(self) -> list[str]:
        lines, first = [], self.done_before is None
        for trial_dir in sorted(glob.glob(os.path.join(self.project_dir, "trial_*"))):
            try:
                mtime = os.stat(os.path.join(trial_dir, "trial.json")).st_mtime
            except OSError:
                continue
            if trial_dir in self.reported or self.seen.get(trial_dir) == mtime:
                continue
            self.seen[trial_dir] = mtime
            row = read_trial(trial_dir)
            if row is None or row.status not in FINISHED or row.status == "INVALID":
                continue  # INVALID is retried by keras-tuner: not finished yet
            self.reported.add(trial_dir)
            self.finished += 1
            if row.score is not None and row.status == "COMPLETED" and (
                    self.best is None or self.sign * row.score > self.sign * self.best):
                self.best = row.score
            if first or (self.workers is not None and row.record.get("worker") not in self.workers):
                continue
            lines.append(self.line(row))
        if first:
            self.done_before = self.finished
        return lines

    def line(self, row: TrialRow) -> str:
        name = self.objective or "score"
        score = f"{name} {row.score:.4f}" if row.score is not None else f"{row.status.lower()}"
        seconds = "-" if row.seconds is None else f"{row.seconds:.1f} s"
        best = "-" if self.best is None else f"{self.best:.4f}"
        ran = self.finished - (self.done_before or 0)
        eta = None
        start = row.record.get("start")
        if isinstance(start, (int, float)):
            self.first_start = min(self.first_start or start, start)
        if self.total and ran:  # the pace since the first trial of this run began (start-up excluded)
            eta = (time.time() - (self.first_start or self.start)) / ran * max(0, self.total - self.finished)
        deadline = budget.read(self.project_dir).get("deadline")
        if isinstance(deadline, (int, float)):  # a time budget ends the search first if it is sooner
            left = max(0.0, deadline - time.time())
            eta = left if eta is None else min(eta, left)
        total = self.total if self.total else "?"
        worker = row.record.get("worker", "-")
        return (f"trial {row.trial_id} [{worker}] strategy {row.strategy or '-'}: {score} in {seconds}; "
                f"best {best}; {self.finished}/{total} done; ETA {format_eta(eta)}")
