"""The training engine's PyTorch adapter (see :mod:`kfitx._engine_tf` for the interface).

``model.fit`` on torch runs one step per call (Keras refuses
``steps_per_execution > 1`` there), switches the module to training mode each
epoch and back to evaluation mode before validation. This adapter does the
same and hands the model's own train function each numpy batch as tensors on
Keras's device. A user's step is called in Python on each batch (on torch:
forward, ``loss.backward()`` and the optimizer, ``examples/loop_step_torch.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kfitx import _keras

Logs = Mapping[str, Any]

#: The feed gives groups of numpy batches (``Reading.numpy``).
NUMPY = True


def _tensors(batch: Any) -> Any:
    import keras

    return keras.tree.map_structure(lambda t: None if t is None else keras.ops.convert_to_tensor(t), batch)


def as_batch(batch: Any) -> Any:
    """A batch as a user's step or a batch hook gets it: torch tensors."""
    return _tensors(batch)


def epoch_begin(model: Any) -> None:
    model.train()  # torch.nn.Module's training mode, as model.fit sets it


def epoch_end(model: Any) -> None:
    model.eval()


def train_end(model: Any) -> None:
    return None


def model_function(model: Any, steps_per_call: int) -> Callable[[Any], Logs | None]:
    """The model's own train step, called once per batch of the list it is given."""
    train = _keras.train_function(model)

    def run(data: Any) -> Logs | None:
        logs = None
        for batch in data or ():
            logs = train([_tensors(batch)])
        return logs

    return run


class CompiledStep:
    """``fn(model, batch) -> logs`` called on each batch of the list it is given (torch runs eagerly)."""

    def __init__(self, model: Any, fn: Callable[[Any, Any], Logs], *, autograph: bool = True) -> None:
        self.model, self.fn = model, fn

    def __call__(self, data: Any) -> Logs | None:
        logs = None
        for batch in data or ():
            logs = self.fn(self.model, _tensors(batch))
        return logs
