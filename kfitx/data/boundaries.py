"""The error and lifetime boundary of one fit: :func:`boundary`.

Batches are made in places the fit's own call stack does not reach: tf.data's
threads running an augmentation, a worker thread or process reading a
generator. When one of them fails, TensorFlow re-raises only a text copy of the
error, deep inside ``model.fit``. So the part that failed *reports* its
:class:`KfitxError` -- naming the batch, saying what to do -- to the boundary it
was built under, at the moment it fails, and the boundary raises that error
when the fit ends (as httpx's ``map_httpcore_exceptions()`` maps its backend's
errors in one place). The boundary also owns what the pipeline started: every
worker is stopped, in bounded time, when it exits, however the fit ended.

``kfitx.fit`` opens one around every strategy's ``fit``; strategies and plugins
never handle pipeline errors themselves. Code that reads sources outside
``kfitx.fit`` opens its own::

    with kfitx.data.boundary():
        for batch in source.as_dataset(reading):
            ...
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

from kfitx.errors import KfitxError

__all__ = ["Boundary", "boundary", "current"]

_local = threading.local()


def _stack() -> list[Boundary]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def current() -> Boundary | None:
    """The innermost open boundary of this thread, or ``None``."""
    stack = _stack()
    return stack[-1] if stack else None


class Boundary:
    """See the module docstring. Made by :func:`boundary`; a context manager.

    Attributes:
        fault: The first error reported, or ``None``.
    """

    def __init__(self) -> None:
        self.fault: KfitxError | None = None
        self._closers: list[Callable[[], Any]] = []
        self._lock = threading.Lock()

    def report(self, error: KfitxError) -> None:
        """Records a pipeline fault; callable from any thread. The first one wins."""
        with self._lock:
            if self.fault is None:
                self.fault = error

    def closing(self, close: Callable[[], Any]) -> None:
        """Runs ``close`` when the boundary exits (last registered, first run)."""
        self._closers.append(close)

    def __enter__(self) -> Boundary:
        _stack().append(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        stack = _stack()
        if self in stack:
            stack.remove(self)
        fault = self.fault  # before closing: a worker told to stop may report that it was closed
        try:
            while self._closers:
                self._closers.pop()()
        finally:
            if fault is not None and fault is not error and not isinstance(error, (KfitxError, KeyboardInterrupt)):
                # What the pipeline reported is the cause; TensorFlow's copy of it is context.
                raise fault from (fault.__cause__ or error)
        return False


def boundary() -> Boundary:
    """A new :class:`Boundary`: ``with kfitx.data.boundary(): ...``."""
    return Boundary()
