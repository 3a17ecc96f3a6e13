"""What ``kfitx tune`` is asked for (:class:`TuneOptions`) and how a search went (:class:`TuneResult`).

Shared by the supervisor of processes on this host (:mod:`kfitx.search.launch.supervisor`) and the one of
actors on a Ray cluster (:mod:`kfitx.search.launch.ray_supervisor`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["DEFAULT_RECYCLE_AFTER", "TuneOptions", "TuneResult"]

#: Trials a worker process runs before a fresh one replaces it (see benchmarks/README.md, tune memory).
DEFAULT_RECYCLE_AFTER = 10


@dataclass
class TuneOptions:
    """What ``kfitx tune`` was asked for (the command's options; see ``kfitx tune --help``)."""

    script: str
    args: Sequence[str] = ()
    workers: int | None = None
    trials_per_worker: int = DEFAULT_RECYCLE_AFTER
    port: int | None = None
    bind: str = "127.0.0.1"
    chief: str | None = None
    name: str | None = None
    gpus_per_worker: float | None = None  # None: 1 where there are GPUs (on this host, or in the Ray cluster)
    max_deaths: int = 3
    start_timeout: float = 600.0
    time_budget: float | None = None  # seconds; no trial starts once the search has spent them
    ray: str | None = None  # a Ray cluster's address (what ray.init takes, or "local"): workers are Ray actors
    cpus_per_worker: float | None = None  # Ray CPUs each worker actor holds (default 1)
    python: str = sys.executable
    env: Mapping[str, str] | None = None
    capture_chief: bool = False  # the chief's own output to a file, passed to `out` at the end (notebooks)
    out: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


@dataclass
class TuneResult:
    """How a search went: its folder, the exit status of the chief, the worker processes started."""

    project_dir: str | None
    chief_status: int | None
    seconds: float
    started: dict[str, list[int]]  # tuner id -> pids, in order
    recycled: int
    deaths: dict[str, int]  # trial id -> worker deaths while running it
