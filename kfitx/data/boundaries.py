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

A fit that fails also leaves nothing that can block the interpreter's exit. The
error's traceback keeps Keras's frames, whose locals keep the fit's ``tf.data``
iterators; an iterator over a stream that calls Python (a generator's or
PyDataset's worker stream, an augmentation) and is still alive when the
interpreter shuts down deadlocks it: TensorFlow finishes such an iterator by
calling into Python from its own threads, which can no longer take the GIL. Its
frames, in reference cycles, live until the collector runs at the interpreter's
teardown, or as long as the caller keeps the error (a notebook does). So the
boundary clears Keras's and TensorFlow's frames along the error's tracebacks
(:func:`release_frames`) and collects what that frees, while the interpreter
still runs; the traceback keeps every line, and the user's own frames keep
their locals.

``kfitx.fit`` opens one around every strategy's ``fit``; strategies and plugins
never handle pipeline errors themselves. Code that reads sources outside
``kfitx.fit`` opens its own::

    with kfitx.data.boundary():
        for batch in source.as_dataset(reading):
            ...
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Literal

from kfitx.errors import KfitxError

__all__ = ["Boundary", "boundary", "current", "release_frames"]

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
            if error is not None or fault is not None:
                release_frames(error, fault)
            if fault is not None and fault is not error and not isinstance(error, (KfitxError, KeyboardInterrupt)):
                # What the pipeline reported is the cause; TensorFlow's copy of it is context.
                try:
                    raise fault from (fault.__cause__ or error)
                finally:  # this frame is in the fault's traceback: holding it here would be a cycle
                    fault = error = tb = None  # noqa: F841
        return False


#: Modules whose frames hold a fit's ``tf.data`` iterators (Keras's fit loop, TensorFlow's own).
_PIPELINE_MODULES = ("keras.", "tensorflow.", "tf_keras.")


def release_frames(*errors: BaseException | None) -> None:
    """Clears Keras's and TensorFlow's finished frames along ``errors``' tracebacks (with their causes and
    contexts), then collects what that frees: a failed fit's iterators end now, not at the interpreter's
    teardown, where an iterator over a stream that calls Python deadlocks (see the module docstring).

    The frames called below the failing call are reached through each traceback entry's callers
    (``f_back``): Keras filters its own frames out of the traceback, not out of that chain. A frame still
    running (the caller's, up the stack) is left as it is; lines and the user's locals are kept.
    """
    seen: set[int] = set()
    pending = [e for e in errors if e is not None]
    cleared = False
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        pending.extend(e for e in (error.__cause__, error.__context__) if e is not None)
        tb = error.__traceback__
        while tb is not None:
            cleared |= _clear_callers(tb.tb_frame, seen)
            tb = tb.tb_next
    if cleared:
        gc.collect()  # the cycles among Keras's objects that held an iterator, while threads can still run Python


def _clear_callers(frame: FrameType | None, seen: set[int]) -> bool:
    cleared = False
    while frame is not None and id(frame) not in seen:
        seen.add(id(frame))
        if frame.f_globals.get("__name__", "").startswith(_PIPELINE_MODULES):
            try:
                frame.clear()
            except RuntimeError:  # still running: it and its callers are on the stack
                return cleared
            cleared = True
        frame = frame.f_back
    return cleared


def boundary() -> Boundary:
    """A new :class:`Boundary`: ``with kfitx.data.boundary(): ...``."""
    return Boundary()
