"""Test helpers shared by the strategy tests: a callback spy and a weight comparison."""

import keras
import numpy as np

HOOKS = [
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
    "on_test_batch_begin", "on_test_batch_end",
]


class Spy(keras.callbacks.Callback):
    """Records every hook with its step / epoch and the sorted log keys."""

    def __init__(self, hooks=HOOKS):
        super().__init__()
        self.calls = []
        for hook in hooks:
            setattr(self, hook, self._recorder(hook))

    def _recorder(self, hook):
        def record(*args, logs=None, **kwargs):
            logs = kwargs.get("logs", logs) if not args[1:] else args[1]
            step = [a for a in args if isinstance(a, int)]
            self.calls.append((hook, *step, tuple(sorted(logs or {}))))
        return record


def weights_close(a, b, atol=1e-6):
    return all(np.allclose(p, q, atol=atol) for p, q in zip(a.get_weights(), b.get_weights()))
