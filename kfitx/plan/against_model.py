"""Checks of the data against what the model is: its inputs' names and count, its compiled loss, and
whether it can be validated at all (a model with no loss cannot be, except on JAX).

Each refuses only what ``model.fit`` would certainly refuse too (or, on JAX, train on
silently as garbage: then a warning), from what the plan already holds (the arrays of
an in-memory source, a tf.data dataset's ``element_spec``), before any training.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from kfitx.errors import DataError, ModelError, message
from kfitx.plan.checks import should_validate
from kfitx.runtime import Runtime

__all__ = ["check_against_model", "check_validation_loss", "no_loss_to_validate"]

logger = logging.getLogger("kfitx")

_SPARSE = ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy")


def check_against_model(model: Any, source: Any, role: str, runtime: Runtime) -> None:
    """Raises :class:`DataError` for data ``model.fit`` cannot train ``model`` on (see the module docstring).

    Args:
        model: The compiled model.
        source: The training or validation source.
        role: ``"x"`` or ``"validation_data x"``, for messages.
        runtime: The fit's runtime (labels out of range: an error where Keras fails, else a warning).
    """
    if source is None:
        return
    if source.in_memory:
        _check_input_names(model, source.x, role)
        if source.y is not None:
            _check_sparse_labels(model, source.y, role.replace("x", "y"), runtime)
    else:
        _check_batched(model, source, role)


def _input_names(model: Any) -> list[str]:
    """The built model's input names (a functional model's ``keras.Input`` names), or ``[]`` when unknown."""
    try:
        inputs = model.inputs if model.built else None
        return [getattr(t, "name", None) or "" for t in inputs or ()]
    except Exception:  # a subclassed model without symbolic inputs: nothing is known, nothing refused
        return []


def _check_input_names(model: Any, x: Any, role: str) -> None:
    names = _input_names(model)
    if len(names) < 2:
        return
    if isinstance(x, np.ndarray):
        raise DataError(message(
            f"`{role}` with one array per model input: the model takes {len(names)} ({', '.join(names)})",
            f"one array of shape {x.shape}",
            "Pass a list in the inputs' order or a dict by name, e.g. {" + ", ".join(f"'{n}': ..." for n in names)
            + "}."))
    if isinstance(x, dict):
        missing = [n for n in names if n not in x]
        if missing:
            raise DataError(message(
                f"`{role}` as a dict with a key for each model input: {', '.join(names)}",
                f"keys {sorted(x)}, no {', '.join(repr(n) for n in missing)}",
                "Name the dict's keys as the model's inputs (keras.Input(name=...))."))


def _sparse_classes(model: Any) -> tuple[int, Any] | None:
    """``(number of classes, ignore_class)`` for a single-output model compiled with a sparse categorical loss."""
    loss = getattr(model, "loss", None)
    name = loss if isinstance(loss, str) else getattr(loss, "__name__", None) or type(loss).__name__
    if name not in _SPARSE:
        return None
    outputs = getattr(model, "outputs", None) if getattr(model, "built", False) else None
    try:
        if not outputs or len(outputs) != 1:
            return None
        classes = outputs[0].shape[-1]
    except (AttributeError, ValueError, IndexError):
        return None
    if not isinstance(classes, int) or classes < 2:
        return None
    return classes, getattr(loss, "ignore_class", None)


def _check_sparse_labels(model: Any, y: Any, role: str, runtime: Runtime) -> None:
    found = _sparse_classes(model)
    if found is None or not isinstance(y, np.ndarray) or y.size == 0 or y.dtype.kind not in "biuf":
        return
    classes, ignore = found
    out_rank = len(model.outputs[0].shape)
    if y.ndim == out_rank and y.shape[-1] == classes:
        raise DataError(message(
            f"`{role}` as integer class indices for the sparse categorical loss (shape (n,) or (n, 1))",
            f"{role} of shape {y.shape}: one-hot rows of {classes} classes",
            "Pass y.argmax(-1), or compile with loss='categorical_crossentropy'."))
    labels = y if ignore is None else y[y != ignore]
    if labels.size == 0:
        return
    low, high = labels.min(), labels.max()
    if low >= 0 and high < classes:
        return
    text = message(f"`{role}` class indices in [0, {classes}) for the sparse categorical loss: the model's "
                   f"output has {classes} classes", f"labels from {low} to {high}",
                   "Map the labels to 0..n-1 (e.g. np.unique(y, return_inverse=True)), or give the output "
                   "layer as many units as there are classes.")
    if not runtime.checks_label_range:  # Keras trains on them without a word (JAX), as plain model.fit does
        logger.warning("kfitx: %s", text)
        return
    raise DataError(text)


def _check_batched(model: Any, source: Any, role: str) -> None:
    """A tf.data dataset of single samples (no ``.batch``): its x has the rank of one sample of the model's input."""
    from kfitx.runtime.lazy import is_instance

    dataset = source.passthrough()
    names = _input_names(model)
    if len(names) != 1 or not is_instance(dataset, "tensorflow", "data.Dataset"):
        return
    spec = dataset.element_spec
    x_spec = spec[0] if isinstance(spec, tuple) else spec
    shape = getattr(x_spec, "shape", None)
    expected = tuple(model.inputs[0].shape)
    if shape is None or shape.rank is None or shape.rank != len(expected) - 1:
        return
    if all(e is None or r is None or e == r for e, r in zip(expected[1:], tuple(shape))):
        raise DataError(message(
            f"`{role}` as a tf.data dataset of batches: the model's input takes {expected}",
            f"elements of shape {tuple(shape)} (single samples)", "Batch it: dataset.batch(32)."))


def no_loss_to_validate() -> ModelError:
    """The error for validation on a model with no loss (the plan's, before training; the loop's, where Keras
    raised it)."""
    return ModelError(message(
        "A model compiled with a loss to validate on `validation_data` (Keras's evaluate computes "
        "the loss; a training step of your own does not need one)", "model.compile(loss=None)",
        "Compile with the loss to report (loss=...), or drop validation_data."))


def check_validation_loss(model: Any, runtime: Runtime, epochs: int, initial_epoch: int, validation_freq: Any) -> None:
    """Raises :func:`no_loss_to_validate` where validation certainly fails: Keras's test step computes the loss,
    and it has none to compute.

    That is: some epoch validates (``validation_freq``), the backend refuses a step with no loss
    (:attr:`Runtime.needs_a_loss`: not JAX, where Keras reports 0), the model is compiled without a loss,
    and it certainly has no other (:func:`kfitx._keras.adds_no_loss`: no weight or activity regularizer, no
    layer or model class of the user's that may call ``add_loss`` or override ``test_step`` /
    ``compute_loss``). Whatever the strategy: plain ``model.fit`` fails there too, after its first epoch's
    training (or its first step, with Keras's own train step).
    """
    from kfitx import _keras

    if getattr(model, "loss", None) is not None or not runtime.needs_a_loss:
        return
    if not any(should_validate(epoch, validation_freq) for epoch in range(initial_epoch, epochs)):
        return
    if _keras.adds_no_loss(model):
        raise no_loss_to_validate()
