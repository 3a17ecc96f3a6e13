"""Shared fixtures: a fresh plugin registry, seeding, tiny models and data, a check for threads and processes
left behind. The helpers behind them, and ``BatchLog`` (a callback logging batches), are in ``contract.py``."""

from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

import kfitx.registry


@pytest.fixture
def registry(monkeypatch):
    """A fresh process-wide registry with built-ins only (no entry points), restored after."""
    monkeypatch.delenv("KFITX_BLOCK_PLUGINS", raising=False)
    fresh = kfitx.registry.Registry(autoload=False)
    old = kfitx.registry.reset_registry(fresh)
    yield fresh
    kfitx.registry.reset_registry(old)


@pytest.fixture
def seed():
    """Seeds Python, numpy and the Keras backend; returns the seed."""
    import keras

    keras.utils.set_random_seed(1234)
    return 1234


@pytest.fixture
def make_model():
    """Factory for a tiny compiled classifier (``contract.build_model``): by default the conformance kit's model,
    ``make_model(features=8, classes=3, seed=0, hidden=16, softmax=False, optimizer=, loss=, metrics=, **compile)``;
    the same seed gives the same initial weights."""
    from contract import build_model

    return build_model


@pytest.fixture
def no_leftovers():
    """Fails the test if a thread or child process it started still runs after it (``contract.Leftovers``:
    kfitx's threads, new non-daemon threads, new child processes), after a bounded wait of 5 s."""
    from contract import Leftovers

    snapshot = Leftovers()
    yield snapshot
    left = snapshot.remaining(wait=5.0)
    assert not left, f"left behind: {left}"


@pytest.fixture
def xy():
    """200 samples of 8 features, 3 classes, float64 x (as users often have it)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")
    return x, y


def _burning(code: str):
    burner = subprocess.Popen([sys.executable, "-c", code])
    try:
        yield burner
    finally:
        burner.kill()
        burner.wait(10)


@pytest.fixture
def busy_machine():
    """A CPU-bound process for the test's whole length (a hang or a late answer shows on a busy machine)."""
    yield from _burning("while True: pass")


@pytest.fixture
def busy_core():
    """A CPU-bound process pinned to one core for the test's whole length."""
    yield from _burning("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\nwhile True: pass")
