"""The kit's instruments: a callback spy, weight comparisons, and its tiny model and data.

Plugin authors may use them in their own tests; kfitx's own strategy tests do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import cast

import keras
import numpy as np

__all__ = ["DEFAULT_TOLERANCE", "HOOKS", "Spy", "max_weight_difference", "tiny_data", "tiny_model",
           "weights_close"]

#: Largest absolute weight difference from ``memory`` an exact strategy may show (float round-off).
DEFAULT_TOLERANCE = 1e-6

#: The callback hooks :class:`Spy` records by default.
HOOKS = (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
    "on_test_batch_begin", "on_test_batch_end",
)

_BATCH_HOOKS = {h for h in HOOKS if "batch" in h}


#: One recorded callback call: the hook's name, its int arguments (batch / epoch), then the sorted keys of its logs.
Call = tuple[object, ...]

class Spy(keras.callbacks.Callback):
    """A Keras callback that records each hook it overrides: ``(hook, *ints, sorted log keys)``.

    Only the hooks in ``hooks`` are overridden, so a spy without batch hooks
    does not act per batch and lets a strategy group steps.
    """

    def __init__(self, hooks: Iterable[str] = HOOKS) -> None:
        super().__init__()
        self.calls: list[Call] = []
        for hook in hooks:
            setattr(self, hook, self._recorder(hook))

    def _recorder(self, hook: str) -> Callable[..., None]:
        def record(*args: object, **kwargs: object) -> None:
            ints = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
            logs = kwargs.get("logs")
            if logs is None:
                logs = next((a for a in args if isinstance(a, Mapping)), None)
            self.calls.append((hook, *ints, tuple(sorted(cast("Iterable[str]", logs or {})))))

        return record


def max_weight_difference(a: keras.Model, b: keras.Model) -> float:
    """The largest absolute difference between two models' weights (``inf`` if shapes differ)."""
    wa, wb = a.get_weights(), b.get_weights()
    if len(wa) != len(wb) or any(p.shape != q.shape for p, q in zip(wa, wb)):
        return math.inf
    return max((float(np.max(np.abs(p - q))) for p, q in zip(wa, wb) if p.size), default=0.0)


def weights_close(a: keras.Model, b: keras.Model, atol: float = DEFAULT_TOLERANCE) -> bool:
    """Whether two models' weights agree to ``atol``."""
    return max_weight_difference(a, b) <= atol


def tiny_data(samples: int = 200, features: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The kit's data: float64 features (as users often have them) and 3 integer classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features))
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")
    return x, y


def tiny_model(seed: int = 0, features: int = 8, classes: int = 3) -> keras.Model:
    """The kit's model: a compiled 2-layer classifier; the same seed gives the same weights."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((features,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(classes)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model
