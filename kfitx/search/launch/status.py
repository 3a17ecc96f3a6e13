"""The files through which ``kfitx tune``'s processes talk, and where its logs go.

* ``<control>/<tuner id>.json`` -- what a chief or worker process is doing now
  (``pid``, ``state``, ``trial`` in flight, trials ``done``, ``project_dir``, ``log``,
  ``message``); written by the runner, read by the supervisor. ``<control>`` is a
  temporary folder of the supervisor's own, removed when it ends.
* ``<search directory>/kfitx-tune.json`` -- the search's marker: ``state``
  (``running`` until the chief's search returns, then ``finished``), ``max_trials``
  and the objective. A rerun of an interrupted search finds ``running`` and continues it.
* ``<search directory>/kfitx-logs/<tuner id>.log`` -- each process's output during the search.

Every write replaces its file atomically; readers get ``{}`` for a missing or unreadable file.
"""

from __future__ import annotations

import os
from typing import Any

from kfitx.search.trial_record import read_json, write_json

__all__ = ["LOGS", "MARKER", "log_path", "marker_path", "read", "read_json", "write", "write_json"]

MARKER = "kfitx-tune.json"
LOGS = "kfitx-logs"


def write(control: str, name: str, **values: object) -> dict[str, Any]:
    """Merges ``values`` into ``<control>/<name>.json``; returns the status."""
    path = os.path.join(control, f"{name}.json")
    data = {**read_json(path), **values}
    write_json(path, data)
    return data


def read(control: str, name: str) -> dict[str, Any]:
    return read_json(os.path.join(control, f"{name}.json"))


def marker_path(project_dir: str) -> str:
    return os.path.join(project_dir, MARKER)


def log_path(project_dir: str, tuner_id: str) -> str:
    return os.path.join(project_dir, LOGS, f"{tuner_id}.log")
