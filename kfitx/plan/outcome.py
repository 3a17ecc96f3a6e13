"""What a plugin strategy's ``fit`` gave back, checked against its plan: cheap, after the fit.

Separation of concerns: the conformance kit (:mod:`kfitx.testing`) checks the whole fit contract
on a tiny model, once, when a plugin's author asks; this module checks, on every fit of a plugin
strategy, the part of it that costs nothing to see afterwards:

* the plan's callbacks saw the fit (``on_train_begin`` and ``on_train_end``), seen through a
  :class:`Witness` that ``kfitx.fit`` appends to the plan's callbacks (it acts on no batch, so
  it changes no grouping);
* the ``History`` has one entry per epoch under each training key;
* ``val_*`` keys are there when validation was asked and an epoch trained was one to validate.

A broken rule is a :class:`kfitx.PluginError` naming the strategy and who provides it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING

import keras

from kfitx.errors import PluginError, message

if TYPE_CHECKING:
    from kfitx.plan import FitPlan

__all__ = ["Witness", "check_outcome"]


class Witness(keras.callbacks.Callback):
    """Records whether ``on_train_begin`` and ``on_train_end`` reached the plan's callbacks."""

    def __init__(self) -> None:
        super().__init__()
        self.began = self.ended = 0

    def on_train_begin(self, logs: Mapping[str, object] | None = None) -> None:
        self.began += 1

    def on_train_end(self, logs: Mapping[str, object] | None = None) -> None:
        self.ended += 1


def _validated(epoch: int, freq: int | Collection[int]) -> bool:
    """Whether ``model.fit`` validates after ``epoch`` with this ``validation_freq``."""
    if isinstance(freq, int):
        return (epoch + 1) % freq == 0
    return epoch + 1 in freq


def check_outcome(name: str, who: Callable[[], str], plan: FitPlan, history: object, witness: Witness | None) -> None:
    """Raises :class:`kfitx.PluginError` if the fit broke what can be seen after it.

    Args:
        name: The strategy's name.
        who: Says who provides it (plugin, distribution, version), for a message; called only to raise.
        plan: The fit's plan.
        history: What ``fit`` returned (a ``keras.callbacks.History``).
        witness: The :class:`Witness` among the plan's callbacks, or ``None`` not to check them.
    """
    head = f"Strategy '{name}'"
    todo = (f"This is a bug in the strategy: report it to its author, or train with another strategy. "
            f"Its author can run `kfitx check {name}` to see which rule of the fit contract it breaks.")
    if witness is not None and not (witness.began and witness.ended):
        head += f" ({who()})"
        hooks = [h for h, n in (("on_train_begin", witness.began), ("on_train_end", witness.ended)) if not n]
        raise PluginError(message(
            f"{head} to call the fit's callbacks (plan.callbacks) as model.fit calls them",
            f"{' and '.join(hooks)} never called", "Pass plan.callbacks on to model.fit (plan.fit_kwargs does) or "
            "train in kfitx.fit_loop; until then EarlyStopping, checkpoints and keras-tuner see nothing. " + todo))
    epochs = list(getattr(history, "epoch", []))
    logs = getattr(history, "history", {}) or {}
    uneven = {k: len(v) for k, v in logs.items() if not k.startswith("val_") and len(v) != len(epochs)}
    if uneven:
        head += f" ({who()})"
        raise PluginError(message(
            f"{head} to return a History with one entry per epoch under each key ({len(epochs)} epochs: "
            f"{epochs})", ", ".join(f"{k}: {n} entries" for k, n in sorted(uneven.items())),
            "Call on_epoch_end once per epoch with that epoch's logs. " + todo))
    if plan.validation is not None and any(_validated(e, plan.validation_freq) for e in epochs):
        if not any(k.startswith("val_") for k in logs):
            head += f" ({who()})"
            raise PluginError(message(
                f"{head} to validate on the fit's validation data: val_* keys in the History",
                f"the keys {sorted(logs)}", "Pass plan.validation on to model.fit (plan.fit_kwargs(train, "
                "validation)) or train in kfitx.fit_loop, which validates. " + todo))
