"""Generator factories: :class:`GeneratorSource`, Keras 2's ``fit_generator`` input.

A generator object can be read only once, so a source holds a *factory* that
returns a fresh iterator each time it is called: every epoch, trial and
evaluation starts anew. Its batches are read by a background worker when they
feed a tf.data stream (:mod:`kfitx.data._producer`), or in this thread, one
epoch at a time, for a strategy's own loop (:class:`kfitx.data.feed.PythonFeed`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
        factory: A zero-argument callable (a generator function, a lambda
            around one, a class) returning an iterator of batches.
        steps_per_epoch: Batches per epoch; ``None`` for "until the iterator ends".
    """

    kind: ClassVar[str] = "generator"
    factory: Callable[[], Iterator[Any]]
    steps_per_epoch: int | None = None

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

    def steps(self, batch_size: int) -> int | None:
        return self.steps_per_epoch

    def default_steps(self, steps: int | None, role: str) -> int | None:
        return self.steps_per_epoch if steps is None else steps

    def __iter__(self) -> Iterator[Any]:
        iterator = self.factory()
        try:
            return iter(iterator)
        except TypeError:
            raise DataError(
                message("The generator factory must return an iterator",
                        type(iterator).__name__)
            ) from None

    def worker_settings(self) -> dict[str, Any]:
        return {}

    def open_pass(self, reading: Reading) -> Callable[[], Iterator[Any]]:
        return self.__iter__

    def as_dataset(self, reading: Reading) -> Any:
        from kfitx.data._producer import stream

        return stream(self, reading, repeat=reading.repeat)

    def feed(self, reading: Reading, *, group: int = 1, pull: bool = False) -> Any:
        from kfitx.data.feed import PythonFeed

        def open_epoch() -> tuple[Iterator[Any], Callable[[], None]]:
            iterator = iter(self)
            return iterator, getattr(iterator, "close", lambda: None)

        steps = reading.steps or self.steps_per_epoch
        if steps != reading.steps:
            import dataclasses

            reading = dataclasses.replace(reading, steps=steps)
        return PythonFeed(open_epoch, reading, None, group, self.kind, refill=True)
