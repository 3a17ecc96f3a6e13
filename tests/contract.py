"""Test helpers shared by the test files: the conformance kit's callback spy and weight comparison, a tiny model
factory, a callback logging batches, a check for threads and processes left behind, and a subprocess run with a
deadline. ``conftest.py`` serves the model factory (``make_model``) and the leftover check (``no_leftovers``) as
fixtures; files that build models or check outside a fixture (module-level tables, hypothesis examples) import
them from here."""

from __future__ import annotations

import threading
import time
from typing import Any

import keras

from kfitx.testing import HOOKS, Spy, weights_close

__all__ = ["HOOKS", "BatchLog", "Leftovers", "Spy", "build_model", "run_bounded", "weights_close"]

_DEFAULT: Any = object()


def build_model(features: int = 8, classes: int = 3, seed: int = 0, *, hidden: int | None = 16,
                softmax: bool = False, optimizer: Any = _DEFAULT, loss: Any = _DEFAULT,
                metrics: Any = ("accuracy",), **compile_args: Any) -> Any:
    """A tiny compiled classifier; the same seed gives the same initial weights.

    By default the conformance kit's model: ``Dense(hidden, relu)``, then ``Dense(classes)`` logits, ``SGD(0.1)``,
    sparse categorical crossentropy from logits, accuracy. ``hidden=None``: no hidden layer. ``softmax=True``:
    softmax outputs and ``"sparse_categorical_crossentropy"``. ``optimizer``, ``loss`` (``None`` too) and
    ``metrics`` (``None``: none) replace the defaults; ``compile_args`` go to ``compile``.
    """
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((features,))]
    if hidden is not None:
        layers.append(keras.layers.Dense(hidden, activation="relu"))
    layers.append(keras.layers.Dense(classes, activation="softmax" if softmax else None))
    model = keras.Sequential(layers)
    if loss is _DEFAULT:
        loss = ("sparse_categorical_crossentropy" if softmax
                else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.compile(optimizer=keras.optimizers.SGD(0.1) if optimizer is _DEFAULT else optimizer, loss=loss,
                  metrics=None if metrics is None else list(metrics), **compile_args)
    return model


class BatchLog(keras.callbacks.Callback):
    """A callback acting per batch (so kfitx does not group steps) that logs what the batch hooks saw.

    ``begins``: the indices ``on_train_batch_begin`` got; ``ends``: ``(index, logs)`` per ``on_train_batch_end``;
    ``per_epoch``: the indices ``on_train_batch_end`` got, one list per epoch; ``counts``: batches per epoch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.begins: list[int] = []
        self.ends: list[tuple[int, dict[str, Any]]] = []
        self.per_epoch: list[list[int]] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.per_epoch.append([])

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.begins.append(batch)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.ends.append((batch, dict(logs or {})))
        if self.per_epoch:
            self.per_epoch[-1].append(batch)

    @property
    def counts(self) -> list[int]:
        return [len(epoch) for epoch in self.per_epoch]


class Leftovers:
    """What was started after this snapshot and still runs: kfitx's threads (any still alive: kfitx leaves none
    between fits), other non-daemon threads started since, and child processes started since (zombies too: a
    worker must be reaped, not only dead)."""

    def __init__(self) -> None:
        import psutil

        self.threads = set(threading.enumerate())
        self.children = {p.pid for p in psutil.Process().children(recursive=True)}

    def now(self) -> list[str]:
        import psutil

        threads = [t for t in threading.enumerate() if t.is_alive() and (
            t.name.startswith("kfitx") or (t not in self.threads and not t.daemon))]
        children = [p for p in psutil.Process().children(recursive=True) if p.pid not in self.children]
        return [f"thread {t.name}" for t in threads] + [f"process {p.pid}" for p in children]

    def remaining(self, wait: float = 5.0) -> list[str]:
        """What is still running after at most ``wait`` seconds (a worker told to stop may take a moment)."""
        deadline = time.monotonic() + wait
        left = self.now()
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.now()
        return left


def run_bounded(command, env, deadline_s, cwd=None):
    """``(returncode, output)`` of ``command`` run to its end, killed after ``deadline_s`` seconds."""
    import subprocess

    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = proc.communicate(timeout=deadline_s)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, output
