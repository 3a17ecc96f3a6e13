"""The training engine's PyTorch adapter (see :mod:`kfitx.engine.backend_tf` for the interface).

``model.fit`` on torch runs one step per call before Keras 3.16 (it refuses
``steps_per_execution > 1`` there) and a group per call from 3.16, switches the
module to training mode each epoch and back to evaluation mode before validation.
This adapter does the same and hands the model's own train function each group of
numpy batches as tensors on Keras's device (``_keras.torch_train_function``).
A user's step is called in Python on each batch by the engine (this adapter has
no ``CompiledStep``); on torch it is a forward pass, ``loss.backward()`` and the
optimizer (``examples/custom_loop_torch.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kfitx import _keras
from kfitx.engine.adapter import BackendAdapter, Batch, Data, Logs, Run

if TYPE_CHECKING:
    import keras


class Adapter(BackendAdapter):
    """torch: Keras's train function on numpy batches as tensors on Keras's device (see the module docstring)."""

    def as_batch(self, batch: Batch) -> Batch:
        return as_batch(batch)

    def epoch_begin(self, model: keras.Model) -> None:
        model.train()  # torch.nn.Module's training mode, as model.fit sets it

    def epoch_end(self, model: keras.Model) -> None:
        model.eval()

    def model_function(self, model: keras.Model, steps_per_call: int) -> Run:
        return model_function(model, steps_per_call)


def as_batch(batch: Batch) -> Batch:
    """A numpy batch as torch tensors on Keras's device (what the train step, a user's step and hooks get)."""
    import keras

    return keras.tree.map_structure(lambda t: None if t is None else keras.ops.convert_to_tensor(t), batch)


def model_function(model: keras.Model, steps_per_call: int) -> Run:
    """The model's own train step on each batch of the list it is given (one call where Keras groups steps)."""
    train = _keras.torch_train_function(model)

    def run(data: Data) -> Logs | None:
        if not data:
            return None
        logs: Logs | None = train([as_batch(batch) for batch in data])
        return logs

    return run

