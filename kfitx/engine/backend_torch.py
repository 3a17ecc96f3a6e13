"""The training engine's PyTorch adapter (see :mod:`kfitx.engine.backend_tf` for the interface).

``model.fit`` on torch runs one step per call (Keras refuses
``steps_per_execution > 1`` there), switches the module to training mode each
epoch and back to evaluation mode before validation. This adapter does the
same and hands the model's own train function each numpy batch as tensors on
Keras's device. A user's step is called in Python on each batch by the engine
(this adapter has no ``CompiledStep``); on torch it is a forward pass,
``loss.backward()`` and the optimizer (``examples/custom_loop_torch.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kfitx import _keras
from kfitx.engine.adapter import BackendAdapter, Run

Logs = Mapping[str, Any]


class Adapter(BackendAdapter):
    """torch: one step per call, numpy batches as tensors on Keras's device (see the module docstring)."""

    def as_batch(self, batch: Any) -> Any:
        return as_batch(batch)

    def epoch_begin(self, model: Any) -> None:
        model.train()  # torch.nn.Module's training mode, as model.fit sets it

    def epoch_end(self, model: Any) -> None:
        model.eval()

    def model_function(self, model: Any, steps_per_call: int) -> Run:
        return model_function(model, steps_per_call)


def as_batch(batch: Any) -> Any:
    """A numpy batch as torch tensors on Keras's device (what the train step, a user's step and hooks get)."""
    import keras

    return keras.tree.map_structure(lambda t: None if t is None else keras.ops.convert_to_tensor(t), batch)


def model_function(model: Any, steps_per_call: int) -> Callable[[Any], Logs | None]:
    """The model's own train step, called once per batch of the list it is given."""
    train = _keras.train_function(model)

    def run(data: Any) -> Logs | None:
        logs = None
        for batch in data or ():
            logs = train([as_batch(batch)])
        return logs

    return run

