"""The worker side of a producer: the loop running passes, and the pipe a worker process sends over.

A worker -- a thread, or a forked process -- runs passes one after another
(:func:`_work`) and puts ``(kind, pass, index, payload)`` items on a bounded
queue: a ``queue.Queue`` for a thread, a :class:`_PipeQueue` for a process,
whose exceptions travel as text (:class:`_RemoteError`). Every wait polls the
stop flag every :data:`_POLL` seconds, so a worker stops in bounded time.
"""

from __future__ import annotations

import itertools
import queue
import signal
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from kfitx.errors import KfitxError

_POLL = 0.05  # seconds between checks of the stop flag and the worker's health


class _RemoteError:
    """An exception from a worker process, as text (user exceptions need not pickle)."""

    def __init__(self, err: BaseException) -> None:
        self.type = type(err).__name__
        self.text = str(err)
        self.kfitx = isinstance(err, KfitxError)
        self.traceback = "".join(traceback.format_exception(err))

    def __repr__(self) -> str:
        return f"{self.type}({self.text!r})"


def _describe(err: BaseException | _RemoteError) -> str:
    return repr(err) if isinstance(err, _RemoteError) else f"{type(err).__name__}({str(err)!r})"


def _put(q: Any, item: Any, stop: Any) -> bool:
    """Puts ``item``, waiting while the queue is full; False if asked to stop meanwhile."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def _work(open_pass: Callable[[], Iterator[Any]], repeat: bool, q: Any, stop: Any, limit: int,
          remote: bool) -> None:
    """The worker: passes one after another until stopped, an error, or an empty pass."""
    wrap = _RemoteError if remote else (lambda e: e)
    for number in itertools.count():
        count = 0
        try:
            iterator = open_pass()
            try:
                for batch in iterator:
                    if not _put(q, ("batch", number, count, batch), stop):
                        return
                    count += 1
                    if not repeat and count > limit:
                        _put(q, ("endless", number, count, None), stop)
                        return
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as err:  # reported to the consumer, who raises it
            _put(q, ("error", number, count, wrap(err)), stop)
            return
        if not _put(q, ("end", number, count, None), stop) or count == 0:
            return


class _PipeQueue:
    """A bounded queue from one worker process to its parent, over a pipe only they hold.

    ``multiprocessing.Queue`` shares its pipe's write end with the parent, so a
    reader never sees end-of-file when the worker dies, and a message cut short
    by a killed worker blocks ``get`` forever. Here the parent closes its write
    end after the fork: a dead worker is end-of-file, and every read is bounded.
    A semaphore of ``maxsize`` slots keeps the worker at most that many batches ahead.
    """

    def __init__(self, context: Any, maxsize: int) -> None:
        self._reader, self._writer = context.Pipe(duplex=False)
        self._slots = context.BoundedSemaphore(maxsize)

    def after_fork(self, in_worker: bool) -> None:
        (self._reader if in_worker else self._writer).close()

    def put(self, item: Any, timeout: float) -> None:  # in the worker
        if not self._slots.acquire(timeout=timeout):
            raise queue.Full
        self._writer.send(item)

    def get(self, timeout: float) -> Any:  # in the parent
        if not self._reader.poll(timeout):
            raise queue.Empty
        try:
            item = self._reader.recv()
        except (EOFError, OSError):
            raise _WorkerGone from None
        self._slots.release()
        return item

    def close(self) -> None:
        self._reader.close()


class _WorkerGone(Exception):
    """The worker process's end of the pipe closed: it exited or died."""


def _process_main(open_pass: Callable[[], Iterator[Any]], repeat: bool, q: _PipeQueue, stop: Any,
                  limit: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    q.after_fork(in_worker=True)
    _work(open_pass, repeat, q, stop, limit, remote=True)
