"""Resuming a trial's execution killed mid-way, from its last backup (used by :mod:`kfitx.tuner`).

keras-tuner, reloading a killed search (``overwrite=False``), runs a trial that
was RUNNING again under the same id and hyperparameters. :class:`Resume` gives
each execution a ``keras.callbacks.BackupAndRestore`` in
``<trial dir>/kfitx-backup/execution-<i>`` (written at most every
:func:`backup_interval_s`) and a log of its finished epochs, so the execution
goes on from its last backup and its History gets back the epochs run before
the kill.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from kfitx import _keras
from kfitx.errors import OptionError, message

if TYPE_CHECKING:
    import keras
    from keras_tuner.src.engine.tuner_utils import SaveBestEpoch, TunerCallback

    from kfitx.data import Source

__all__ = ["Resume", "backup_interval_s", "build_for_backup"]

logger = logging.getLogger("kfitx")


def backup_interval_s() -> float:
    """Seconds between two backups of a trial's training (``KFITX_BACKUP_INTERVAL_S``, default 5; 0: every epoch)."""
    value = os.environ.get("KFITX_BACKUP_INTERVAL_S", "5")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise OptionError(message("KFITX_BACKUP_INTERVAL_S to be a number of seconds >= 0", repr(value),
                                  "Set it to e.g. 5, or 0 to back up after every epoch."))
    return seconds


def build_for_backup(model: keras.Model, source: Source) -> str | None:
    """Builds an unbuilt model as ``model.fit`` builds it before its first step; returns why it cannot, else ``None``.

    Keras's ``BackupAndRestore`` refuses an unbuilt model on TensorFlow (keras-tuner's
    guide builds a ``keras.Sequential`` with no ``Input``), and restoring a backup
    needs the variables. The model is built from the shapes and dtypes of the
    data (arrays: ``x`` and ``y`` with an unknown batch size; a tf.data dataset:
    its ``element_spec``), which is what ``model.fit`` reads from its first batch.
    Streams that can be read only once cannot be looked at first: the execution
    then trains without the backup (the caller logs the reason).
    """
    if getattr(model, "built", True):
        return None
    import keras

    from kfitx.data.base import train_dtype
    from kfitx.runtime.lazy import is_instance

    passthrough = source.passthrough()
    if source.in_memory:
        batch = tuple(keras.tree.map_structure(
            lambda a: keras.KerasTensor((None, *np.shape(a)[1:]), str(train_dtype(a.dtype))), part)
            for part in source.arrays())
    elif is_instance(passthrough, "tensorflow", "data.Dataset"):
        batch = keras.tree.map_structure(
            lambda spec: keras.KerasTensor(tuple(spec.shape), spec.dtype.name), passthrough.element_spec)
    else:
        return (f"the model is not built and its data ({source.describe()}) is read once, so it cannot be "
                "looked at before training; build the model (keras.Input, or call it on a batch) to resume "
                "killed trials")
    _keras.symbolic_build(model, batch)
    return None



class _EpochEntry(TypedDict):
    """One finished epoch in the log: its index and its numeric logs."""

    epoch: int
    logs: dict[str, float]

class Resume:
    """Lets an execution of a trial killed mid-way go on from its last finished epoch.

    ``callbacks()`` are a log of each finished epoch's metrics (written before the
    backup, so it never lags it) and a ``BackupAndRestore``; ``merge(history)``
    puts the epochs run before the kill back in front of the History.
    """

    def __init__(self, tuner_callback: TunerCallback, best_epoch: list[SaveBestEpoch], execution: int) -> None:
        trial = tuner_callback.trial
        root = os.path.join(tuner_callback.tuner.get_trial_dir(trial.trial_id), "kfitx-backup")
        self.backup_dir = os.path.join(root, f"execution-{execution}")
        self.log_path = os.path.join(root, f"execution-{execution}.history.json")
        self.best_epoch = best_epoch
        self.earlier: list[_EpochEntry] = []

    def callbacks(self) -> list[keras.callbacks.Callback]:
        import keras

        resume = self

        class EpochLog(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
                if resume.earlier or epoch == 0 or not os.path.exists(resume.log_path):
                    return
                with open(resume.log_path) as f:
                    resume.earlier = [e for e in json.load(f) if e["epoch"] < epoch]
                for cb in resume.best_epoch:  # its checkpoint on disk is the best of the earlier epochs
                    for entry in resume.earlier:
                        _keras.saw_epoch(cb, entry["logs"])

            def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
                numbers = {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}
                resume.earlier.append({"epoch": epoch, "logs": numbers})
                os.makedirs(os.path.dirname(resume.log_path), exist_ok=True)
                tmp = resume.log_path + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(resume.earlier, f)
                os.replace(tmp, resume.log_path)  # atomic: a kill leaves the old log or the new one

        class Backup(keras.callbacks.BackupAndRestore):
            """Keras's backup, written at an epoch's end once ``backup_interval_s()`` have passed since the last.

            A small model's backup costs about as much as one of its epochs; a
            kill then costs at most that long of training, not one backup per epoch.
            """

            def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
                super().on_train_begin(logs)
                self.saved_at = time.monotonic()

            def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
                if time.monotonic() - self.saved_at >= backup_interval_s():
                    super().on_epoch_end(epoch, logs)
                    self.saved_at = time.monotonic()

        # double_checkpoint: a kill while the weights are written leaves the previous backup to go on from
        backup = Backup(self.backup_dir, save_freq="epoch", double_checkpoint=True)
        return [EpochLog(), backup]

    def merge(self, history: keras.callbacks.History, model: keras.Model) -> None:
        """Prepends the epochs run before a kill; removes the log; resets Keras's resume epoch."""
        _keras.reset_initial_epoch(model)  # Keras leaves it set after a restored fit
        first = history.epoch[0] if history.epoch else None
        before = [e for e in self.earlier if first is None or e["epoch"] < first]
        if before:
            history.epoch[:0] = [e["epoch"] for e in before]
            ran = len(history.epoch) - len(before)
            for key in set(history.history) | {k for e in before for k in e["logs"]}:
                earlier = [e["logs"].get(key) for e in before]
                history.history[key] = earlier + list(history.history.get(key, [None] * ran))
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.log_path)
        with contextlib.suppress(OSError):  # kept while another execution's backup is in it
            os.rmdir(os.path.dirname(self.log_path))


