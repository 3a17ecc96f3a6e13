"""The answers of ``auto``'s probes, so that a fit probes only what has not been probed before.

An answer is kept per model architecture (its layers' configurations without their names, the
shapes of its weights, the optimizer's class), data signature (shapes and dtypes of the arrays,
never their values), batch size, steps per call, backend and the strategies compared: in this
process, and, inside a keras-tuner trial, in ``kfitx-probe.json`` in the search's directory, which
every trial of the search (every worker of ``kfitx tune`` too) reads before probing.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Sequence
from typing import Any

from kfitx import _keras
from kfitx.data.base import flatten
from kfitx.plan import FitPlan
from kfitx.runtime.files import read_json, write_json

__all__ = ["FILE", "forget", "key", "recall", "remember"]

#: The file in a search's directory holding its probes' answers.
FILE = "kfitx-probe.json"

_answers: dict[str, dict[str, Any]] = {}


def forget() -> None:
    """Drops the answers kept in this process (the search directory's file stays)."""
    _answers.clear()


def _without_names(config: Any) -> Any:
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    if isinstance(config, (list, tuple)):
        return [_without_names(v) for v in config]
    return config


def _architecture(model: Any) -> dict[str, Any]:
    """What the model computes, without what differs between two builds of it (layer names, weight values)."""
    layers = []
    for layer in getattr(model, "layers", []):
        try:
            config: Any = _without_names(layer.get_config())
        except (NotImplementedError, TypeError, ValueError):  # a layer of the user's without get_config
            config = None
        layers.append([type(layer).__name__, config])
    optimizer = getattr(model, "optimizer", None)
    return {"model": type(model).__name__, "layers": layers,
            "weights": [[list(w.shape), str(w.dtype)] for w in model.weights],
            "optimizer": type(optimizer).__name__, "jit_compile": str(getattr(model, "jit_compile", None)),
            "run_eagerly": bool(getattr(model, "run_eagerly", False))}


def _version() -> str:
    try:
        return importlib.metadata.version("kfitx")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


def key(model: Any, plan: FitPlan, candidates: Sequence[str]) -> str:
    """The answer's key: a digest of the architecture, the data's signature, the batch size, the steps per
    call, the backend and the (sorted) candidates."""
    import keras

    data = [[list(a.shape), str(a.dtype)] for part in plan.train.arrays() for a in flatten(part)]
    described = {"architecture": _architecture(model), "data": data, "memory_mapped": plan.train.memory_mapped,
                 "batch_size": plan.batch_size, "steps_per_execution": plan.steps_per_execution,
                 "backend": plan.runtime.backend, "candidates": sorted(candidates),
                 "keras": keras.__version__, "kfitx": _version()}
    text = json.dumps(described, sort_keys=True, default=lambda value: type(value).__name__)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _path(callbacks: Any) -> str | None:
    directory = _keras.search_directory(callbacks)
    return None if directory is None else os.path.join(directory, FILE)


def recall(digest: str, callbacks: Any = None) -> dict[str, Any] | None:
    """The answer kept for ``digest``: this process's, else the search directory's (inside a trial)."""
    if digest in _answers:
        return _answers[digest]
    path = _path(callbacks)
    if path is None:
        return None
    answer = read_json(path).get(digest)
    if not isinstance(answer, dict) or not isinstance(answer.get("strategy"), str):
        return None
    _answers[digest] = answer
    return answer


def remember(digest: str, answer: dict[str, Any], callbacks: Any = None) -> None:
    """Keeps ``answer`` in this process and, inside a trial, in the search directory (written atomically:
    a reader sees the file before or after, never half of it; two trials writing at once may lose one
    answer, which a later trial then probes again)."""
    _answers[digest] = answer
    path = _path(callbacks)
    if path is None:
        return
    data = read_json(path)
    data[digest] = answer
    with contextlib.suppress(OSError):  # a read-only search directory: the answer stays in this process
        write_json(path, data)
