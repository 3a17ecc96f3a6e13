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
from typing import Any

from kfitx.runtime.files import read_json, write_json

__all__ = ["RECORD", "read", "read_json", "record_path", "update", "write_json"]

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
