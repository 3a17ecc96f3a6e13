"""Small JSON files that several processes read and write (search directories, ``kfitx tune``'s status files).

Each write replaces the file atomically, so a reader sees the old file or the new one, never half
of one; a reader gets ``{}`` for a file that is missing, unreadable or not a dict. Imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["read_json", "write_json"]


def write_json(path: str, data: Mapping[str, object]) -> None:
    """Writes ``data`` to ``path`` atomically: a reader sees the old file or the new one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def read_json(path: str) -> dict[str, Any]:
    """The dict in ``path``; ``{}`` when it is missing, unreadable or not a dict."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
