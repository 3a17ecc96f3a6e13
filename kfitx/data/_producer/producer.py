"""The consumer side of a producer: :class:`Producer` starts the worker, serves checked batches, stops it.

:class:`Producer` runs passes one after another in a worker -- a thread, or a
forked process (:mod:`kfitx.data._producer.workers`) -- and hands batches over a
bounded queue (its size is how far the worker runs ahead, and so what it holds
in memory). :meth:`Producer.batches` is what ``tf.data.Dataset.from_generator``
reads: one pass per call, or with ``repeat`` a stream that never ends (a finite
generator is then re-created from its factory each time it ends, so it never
runs out).

Every batch is checked against the first one (structure, trailing shapes, dtype)
on the consumer side (:mod:`kfitx.data._producer.checks`), so a wrong batch is a
:class:`DataError` naming the batch, not a TensorFlow error deep in a graph. A
generator that raises, a pass with no batches, a worker process that dies, or no
batch within ``timeout`` seconds end the stream with a :class:`KfitxError`, which
is also reported to the boundary the producer was made under
(:mod:`kfitx.data.boundaries`), so that the fit raises it rather than
TensorFlow's copy. :meth:`Producer.close` stops the worker in
bounded time: the thread is joined, the process terminated and, if need be, killed.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kfitx.data import boundaries as _boundary
from kfitx.data._producer.checks import _normalise, _Signature
from kfitx.data._producer.workers import (
    _POLL,
    _describe,
    _PipeQueue,
    _process_main,
    _RemoteError,
    _work,
    _WorkerGone,
)
from kfitx.data.epoch_iterator import PassCount, stream_raised
from kfitx.data.reading import require_targets
from kfitx.data.weights import weighted
from kfitx.errors import DataError, KfitxError, WorkerError, message

__all__ = ["Producer", "stream"]


class Producer:
    """Runs passes of a source in a background worker; see the module docstring.

    Args:
        open_pass: Returns a fresh iterator over one pass (see :func:`pass_opener`).
        kind: What the data is, for messages ("generator", "PyDataset").
        repeat: Serve one endless stream (passes back to back) instead of one
            pass per :meth:`batches` call.
        processes: Run the worker in a forked process instead of a thread.
        queue_size: Batches the worker may run ahead.
        timeout: Most seconds to wait for one batch.
        endless_after: Without ``repeat``, a pass longer than this is taken for an
            endless generator (a :class:`DataError` asking for ``steps_per_epoch``).
    """

    def __init__(self, open_pass: Callable[[], Iterator[Any]], *, kind: str, repeat: bool,
                 processes: bool = False, queue_size: int = 10, timeout: float = 60.0,
                 endless_after: int = 100_000, reading: Any = None) -> None:
        self.kind = kind
        self.endless_after = endless_after
        self.reading = reading  # for the targets rule, checked on the first batch
        self.repeat = repeat
        self.processes = processes
        self.timeout = timeout
        self.error: KfitxError | None = None  # re-raised by every later read
        self._boundary = _boundary.current()
        self._serving = 0  # the pass the next batches() call serves
        self._peeked: tuple[Any, Iterator[Any]] | None = None
        self._peek_served = False
        self._closed = False
        if processes:
            context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                                  else None)
            self._queue: Any = _PipeQueue(context, queue_size)
            self._stop: Any = context.Event()
            self._worker: Any = context.Process(
                target=_process_main, args=(open_pass, repeat, self._queue, self._stop, endless_after),
                name=f"kfitx-{kind}-worker", daemon=True)
        else:
            self._queue = queue.Queue(maxsize=queue_size)
            self._stop = threading.Event()
            self._worker = threading.Thread(
                target=_work, args=(open_pass, repeat, self._queue, self._stop, endless_after, False),
                name=f"kfitx-{kind}-worker", daemon=True)
        self._worker.start()
        if processes:
            self._queue.after_fork(in_worker=False)
        self._last = (0, 0)  # (pass, index) of the last batch received, for messages
        self.signature: _Signature | None = None

    # -- consumer side ----------------------------------------------------------

    def _fail(self, err: KfitxError, cause: Any = None) -> KfitxError:
        if isinstance(cause, BaseException):
            err.__cause__ = cause
        if self.error is None:
            self.error = err
            if self._boundary is not None and not self._closed:
                self._boundary.report(err)
        return self.error

    def _get(self) -> Any:
        """The next item from the worker; a WorkerError if it died or took longer than ``timeout``."""
        if self.error is not None:
            raise self.error
        deadline = time.monotonic() + self.timeout
        while True:
            if self._closed:
                raise self._fail(WorkerError(f"The {self.kind} producer was closed."))
            try:
                return self._queue.get(timeout=_POLL)
            except queue.Empty:
                alive = self._worker.is_alive()
            except _WorkerGone:
                alive = False
                self._worker.join(1.0)
            number, index = self._last
            if not alive:
                if isinstance(self._worker, threading.Thread):  # it always reports before it ends
                    continue
                code = self._worker.exitcode
                how = f"exit code {code}" if code is None or code >= 0 else f"signal {signal.Signals(-code).name}"
                raise self._fail(WorkerError(message(
                    f"The {self.kind} worker must keep producing batches until the fit ends",
                    f"the worker process {self._worker.pid} died ({how}); the last batch it delivered was "
                    f"batch {index} of pass {number + 1}",
                    "Check the generator for crashes (out of memory, a native extension); "
                    "use_multiprocessing=False runs it in a thread, where its exception is shown.")))
            if time.monotonic() > deadline:
                raise self._fail(WorkerError(message(
                    f"The {self.kind} must produce each batch within timeout={self.timeout:g} s",
                    f"no batch for {self.timeout:g} s after batch {index} of pass {number + 1}",
                    "Look for a generator stuck waiting on something, or raise the `timeout` option "
                    "if batches are legitimately slow.")))

    def peek(self) -> Any:
        """The first batch (checked), which the first :meth:`batches` call still yields; sets :attr:`signature`."""
        if self._peeked is None:
            stream = self._pass()
            self._peeked = (next(stream), stream)
        return self._peeked[0]

    def batches(self) -> Iterator[Any]:
        """One pass of checked batches (every pass, back to back, with ``repeat``)."""
        if self._peeked is not None and not self._peek_served:
            self._peek_served = True
            first, stream = self._peeked
            yield first
            yield from stream
        else:
            yield from self._pass()

    def _pass(self) -> Iterator[Any]:
        serving = self._serving
        self._serving += 1
        count, counted = PassCount(self.kind, ""), -1
        while True:
            kind, number, index, payload = self._get()
            if not self.repeat and number < serving:
                continue  # the rest of a pass a consumer stopped reading early
            self._last = (number, index)
            where = f"batch {index} of pass {number + 1} of the {self.kind}"
            if number != counted:  # each pass counted by the pass rules, as a strategy's own loop counts it
                count, counted = PassCount(self.kind, f"pass {number + 1}",
                                           endless_after=None if self.repeat else self.endless_after), number
            try:
                if kind == "batch":
                    batch = _normalise(payload, lambda: where, self.kind)  # noqa: B023 (called before the loop moves on)
                    if self.signature is None:
                        if self.reading is not None:
                            require_targets(self.reading, isinstance(batch, tuple) and len(batch) >= 2, self.kind,
                                            where, "an array" if not isinstance(batch, tuple) else "a 1-tuple")
                        self.signature = _Signature(batch, self.kind)
                    batch = self.signature.conform(batch, number, index)
                    count.add()
                elif kind == "end":
                    count.end()
                elif kind == "endless":  # the worker's own limit (the count's, which has raised already)
                    raise count.too_long(self.endless_after)
            except DataError as err:
                raise self._fail(err) from None
            if kind == "batch":
                yield batch
            elif kind == "end":
                if not self.repeat:
                    return
            elif kind == "error":
                raised = payload
                if isinstance(raised, KfitxError):
                    raise self._fail(raised)
                if isinstance(raised, _RemoteError) and raised.kfitx:  # kfitx's own message, from the worker
                    raise self._fail(DataError(raised.text))
                text = str(stream_raised(self.kind, _describe(raised), where))
                if isinstance(raised, _RemoteError):
                    text += "\nWorker process traceback:\n" + raised.traceback
                raise self._fail(DataError(text), raised)

    # -- shutdown ---------------------------------------------------------------

    def close(self, timeout: float = 2.0) -> None:
        """Stops the worker: bounded, idempotent; a thread stuck in user code is reported, not waited on."""
        if self._closed:
            return
        self._closed = True
        # tf.data keeps this producer until its iterator is deleted, and the fault's traceback keeps that
        # iterator: holding either here would keep both alive until the interpreter's teardown, where
        # deleting an iterator whose thread waits for Python deadlocks.
        self.error, self._boundary = None, None
        self._stop.set()
        if isinstance(self._worker, threading.Thread):
            deadline = time.monotonic() + timeout
            while self._worker.is_alive() and time.monotonic() < deadline:
                try:  # drain, so a worker blocked on a full queue sees the stop flag
                    while True:
                        self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._worker.join(_POLL)
            if self._worker.is_alive():
                import warnings

                warnings.warn(f"kfitx: the {self.kind} worker thread is stuck inside the {self.kind} "
                              f"and could not be stopped within {timeout:g} s; it is a daemon thread and "
                              "ends with the process. use_multiprocessing=True lets kfitx stop such a "
                              "generator.", ResourceWarning, stacklevel=2)
            return
        # A worker process waiting for a free slot sees the flag; one in the middle of sending a
        # batch finishes sending it while we read; one stuck in the generator is terminated (and
        # killed if it ignores that).
        deadline = time.monotonic() + min(timeout, 0.5)
        while self._worker.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.get(timeout=_POLL)
            except (queue.Empty, _WorkerGone):
                self._worker.join(_POLL)
        if self._worker.is_alive():
            self._worker.terminate()
            self._worker.join(1.0)
        if self._worker.is_alive():
            os.kill(self._worker.pid, signal.SIGKILL)
            self._worker.join(1.0)
        self._queue.close()


def stream(source: Any, reading: Any, *, repeat: bool = False) -> Any:
    """A ``tf.data.Dataset`` of a generator's or PyDataset's batches, read by a :class:`Producer`.

    One pass per iteration; with ``repeat`` one stream of passes back to back (a generator
    factory with ``steps_per_epoch``: it is called again when a pass ends, and never runs out).
    Weighted by ``reading.class_weight`` (:mod:`kfitx.data.weights`).

    The worker's settings are ``reading.worker(source)``. The worker is stopped when the boundary open
    around the fit exits.

    Raises:
        KfitxError: outside a :func:`kfitx.data.boundary` (``kfitx.fit`` opens one).
    """
    import tensorflow as tf

    owner = _boundary.current()
    if owner is None:
        raise KfitxError(message(
            f"A {source.kind} is read as a tf.data stream inside kfitx.fit, or inside "
            "`with kfitx.data.boundary():`, which stops its worker",
            "no open boundary",
            "Wrap the code that reads the stream in `with kfitx.data.boundary():`."))
    worker = reading.worker(source)
    producer = Producer(
        source.open_pass(reading), kind=source.kind, repeat=repeat,
        processes=worker["use_multiprocessing"], queue_size=worker["max_queue_size"],
        timeout=float(reading.timeout), endless_after=reading.endless_after, reading=reading)
    owner.closing(producer.close)
    first = producer.peek()
    spec = tf.nest.map_structure(lambda a: tf.TensorSpec((None, *a.shape[1:]), a.dtype), first)
    return weighted(tf.data.Dataset.from_generator(producer.batches, output_signature=spec), reading.class_weight)
