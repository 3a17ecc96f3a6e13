"""Shared fixtures: a fresh plugin registry, seeding, tiny models and data."""

from __future__ import annotations

import os

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
    """Factory for a tiny compiled classifier; the same seed gives the same initial weights."""
    import keras

    def make(features: int = 8, classes: int = 3, seed: int = 0, **compile_args):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential(
            [keras.Input((features,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(classes)]
        )
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            **compile_args,
        )
        return model

    return make


@pytest.fixture
def xy():
    """200 samples of 8 features, 3 classes, float64 x (as users often have it)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")
    return x, y
