"""Generator factories: :class:`GeneratorSource`, Keras 2's ``fit_generator`` input.

A generator object can be read only once, so a source holds a *factory* that
returns a fresh iterator each time it is called: every epoch, trial and
evaluation starts anew. A source of :attr:`InputForm.PYTHON_BATCHES`: its
batches are read by a background worker when they feed a tf.data stream
(:mod:`kfitx.data._producer`), or in this thread, one epoch at a time, for a
strategy's own loop (:class:`kfitx.data.feed.PythonFeed`) -- both the base's
(:class:`kfitx.data.Source`), as for a plugin's source.

A factory may opt in to what the fit knows: one whose signature names the keyword
parameters ``epoch``, ``seed`` and / or ``shuffle`` is called with them for each pass
(the pass's number counted from ``initial_epoch``, the fit's ``seed`` and ``shuffle``),
so that it can order each epoch reproducibly; one that names none is called with none.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kfitx.data.base import Reading, Source
from kfitx.errors import DataError, message

__all__ = ["GeneratorSource"]


@dataclass(frozen=True, eq=False)
class GeneratorSource(Source):
    """Batches from a factory that returns a fresh iterator each time it is called.

    Each batch is ``x``, ``(x, y)`` or ``(x, y, sample_weight)``, as Keras 2's
    ``fit_generator`` expected. A finite iterator defines one epoch; an infinite
    one needs ``steps_per_epoch``.

    Args:
        factory: A callable (a generator function, a lambda around one, a class)
            returning an iterator of batches: called with no arguments, or with those
            of ``epoch``, ``seed`` and ``shuffle`` its signature names (see the module docstring).
        steps_per_epoch: Batches per epoch; ``None`` for "until the iterator ends".
    """

    kind: ClassVar[str] = "generator"
    #: The keyword parameters a factory may name to be given them (see the module docstring).
    OPT_IN: ClassVar[tuple[str, ...]] = ("epoch", "seed", "shuffle")
    factory: Callable[..., Iterator[Any]]
    steps_per_epoch: int | None = None
    receives: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if inspect.isgenerator(self.factory) or isinstance(self.factory, Iterator):
            raise DataError(
                message(
                    "kfitx.data.generator needs a factory that returns a fresh iterator "
                    "(a generator *function*), so that every epoch and every trial starts anew",
                    f"an already-started {type(self.factory).__name__} object",
                    "Pass the function instead of calling it, e.g. "
                    "kfitx.data.generator(lambda: my_gen(x, y)).",
                )
            )
        if not callable(self.factory):
            raise DataError(
                message("`factory` must be callable and return an iterator",
                        type(self.factory).__name__)
            )
        if self.steps_per_epoch is not None and (
            not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1
        ):
            raise DataError(
                message("`steps_per_epoch` must be a positive int or None",
                        repr(self.steps_per_epoch))
            )
        object.__setattr__(self, "receives", _named_keywords(self.factory, self.OPT_IN))

    def default_steps(self, steps: int | None, role: str) -> int | None:
        return self.steps_per_epoch if steps is None else steps

    def get_numpy_iterator(self, reading: Reading, epoch: int) -> Iterator[Any]:
        """The factory's iterator for one pass (given ``epoch``, ``seed``, ``shuffle`` where it names them)."""
        given = {"epoch": epoch, "seed": reading.seed, "shuffle": reading.shuffle}
        iterator = self.factory(**{name: given[name] for name in self.receives})
        try:
            return iter(iterator)
        except TypeError:
            raise DataError(
                message("The generator factory must return an iterator",
                        type(iterator).__name__)
            ) from None

    def __iter__(self) -> Iterator[Any]:
        """One pass, as the first of a fit that does not shuffle and has no seed reads it."""
        return self.get_numpy_iterator(Reading(), 0)


def _named_keywords(factory: Callable[..., Any], names: tuple[str, ...]) -> tuple[str, ...]:
    """Which of ``names`` ``factory`` takes as keyword parameters (decided once, when the source is made)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: called as it is
        return ()
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(name for name in names if name in parameters and parameters[name].kind in keyword)
