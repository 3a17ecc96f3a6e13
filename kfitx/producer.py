"""Batches made in a background worker while the model trains, with every wait bounded.

Separation of concerns:

* a *pass opener* returns a fresh iterator over one pass of the data: one call of
  a generator factory, or one read of a ``PyDataset`` in (optionally shuffled)
  index order (:func:`pass_opener`);
* :class:`Producer` runs passes one after another in a worker -- a thread, or a
  forked process -- and hands batches over a bounded queue (its size is how far
  the worker runs ahead, and so what it holds in memory);
* :meth:`Producer.batches` is what ``tf.data.Dataset.from_generator`` reads: one
  pass per call, or with ``repeat`` a stream that never ends (a finite generator
  is then re-created from its factory each time it ends, so it never runs out).

Every batch is checked against the first one (structure, trailing shapes, dtype)
on the consumer side, so a wrong batch is a :class:`DataError` naming the batch,
not a TensorFlow error deep in a graph. A generator that raises, a pass with no
batches, a worker process that dies, or no batch within ``timeout`` seconds end
the stream with a :class:`KfitxError` (also kept in :attr:`Producer.error`).
:meth:`Producer.close` stops the worker in bounded time: the thread is joined,
the process terminated and, if need be, killed.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from kfitx.data import GeneratorSource, PyDatasetSource, Source, _flatten
from kfitx.errors import DataError, KfitxError, WorkerError, message

__all__ = ["Producer", "pass_opener"]

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


def pass_opener(source: Source, *, shuffle: bool = False, seed: int | None = None,
                workers: int = 1) -> Callable[[], Iterator[Any]]:
    """A function returning a fresh iterator over one pass of a generator or PyDataset source.

    Args:
        source: A :class:`GeneratorSource` or :class:`PyDatasetSource`.
        shuffle: Read a PyDataset's batches in a new random order each pass (as
            ``model.fit`` does); generators keep their own order.
        seed: Seed of that order.
        workers: Threads reading a PyDataset's batches at once (order is kept).
    """
    if isinstance(source, GeneratorSource):
        return source.__iter__
    if not isinstance(source, PyDatasetSource):
        raise DataError(message("A producer reads generators and PyDatasets", source.describe()))
    ds = source.dataset
    length = ds.num_batches
    rng = np.random.default_rng(seed)

    def one_pass() -> Iterator[Any]:
        ds.on_epoch_begin()
        if length is None:
            order: Any = itertools.count()
        else:
            order = rng.permutation(length).tolist() if shuffle else range(length)
        try:
            if workers <= 1:
                for index in order:
                    yield ds[index]
            else:
                with ThreadPoolExecutor(workers, thread_name_prefix="kfitx-pydataset") as pool:
                    pending: list[Any] = []
                    try:
                        for index in order:
                            pending.append(pool.submit(ds.__getitem__, index))
                            if len(pending) > 2 * workers:
                                yield pending.pop(0).result()
                        while pending:
                            yield pending.pop(0).result()
                    finally:
                        for future in pending:
                            future.cancel()
        finally:
            ds.on_epoch_end()

    return one_pass


class _Signature:
    """The first batch's structure, trailing shapes and dtypes; later batches must agree."""

    def __init__(self, batch: Any, kind: str) -> None:
        self.kind = kind
        self.structure = _structure(batch)
        leaves = _flatten(batch)
        self.shapes = [leaf.shape[1:] for leaf in leaves]
        self.dtypes = [leaf.dtype for leaf in leaves]

    def where(self, number: int, index: int) -> str:
        return f"batch {index} of pass {number + 1} of the {self.kind}"

    def conform(self, batch: Any, number: int, index: int) -> Any:
        """``batch`` cast to the first batch's dtypes, or a DataError saying what differs."""
        where = self.where(number, index)
        if _structure(batch) != self.structure:
            raise DataError(message(
                f"Every batch must have the structure of the first one, {_show(self.structure)}",
                f"{_show(_structure(batch))} at {where}",
                "Yield the same (x, y[, sample_weight]) layout from every batch."))
        leaves = _flatten(batch)
        sizes = {len(leaf) for leaf in leaves}
        if len(sizes) > 1:
            raise DataError(message("x, y and sample_weight of one batch must have the same number of samples",
                                    f"sizes {sorted(sizes)} at {where}"))
        for i, (leaf, shape, dtype) in enumerate(zip(leaves, self.shapes, self.dtypes)):
            name = _leaf_name(self.structure, i)
            if leaf.shape[1:] != shape:
                raise DataError(message(
                    f"{name} must have shape (batch, {', '.join(map(str, shape))}) in every batch, as in the first",
                    f"shape {leaf.shape} at {where}",
                    "Make the generator yield arrays of one shape (only the batch size may vary)."))
            if leaf.dtype != dtype:
                if not np.can_cast(leaf.dtype, dtype, "same_kind"):
                    raise DataError(message(f"{name} must have dtype {dtype} in every batch, as in the first",
                                            f"dtype {leaf.dtype} at {where}",
                                            "Cast the arrays to one dtype in the generator."))
        dtypes = iter(self.dtypes)
        return _map_leaves(lambda a: a if a.dtype == (d := next(dtypes)) else a.astype(d), batch)


def _structure(batch: Any) -> Any:
    if isinstance(batch, dict):
        return ("dict", tuple(sorted(batch)), tuple(_structure(batch[k]) for k in sorted(batch)))
    if isinstance(batch, (list, tuple)):
        return ("seq", tuple(_structure(b) for b in batch))
    return "array"


def _show(structure: Any) -> str:
    if structure == "array":
        return "array"
    if structure[0] == "dict":
        return "{" + ", ".join(f"{k!r}: {_show(s)}" for k, s in zip(structure[1], structure[2])) + "}"
    return "(" + ", ".join(_show(s) for s in structure[1]) + ")"


def _leaf_name(structure: Any, i: int) -> str:
    if structure != "array" and structure[0] == "seq" and len(structure[1]) in (2, 3):
        roles = ["x", "y", "sample_weight"]
        counts = [len(_flatten_structure(s)) for s in structure[1]]
        for role, count in zip(roles, counts):
            if i < count:
                return role if count == 1 else f"{role}[{i}]"
            i -= count
    return "x" if i == 0 and structure == "array" else f"array {i} of the batch"


def _flatten_structure(structure: Any) -> list[Any]:
    if structure == "array":
        return ["array"]
    children = structure[2] if structure[0] == "dict" else structure[1]
    return [leaf for child in children for leaf in _flatten_structure(child)]


def _map_leaves(fn: Callable[[Any], Any], batch: Any) -> Any:
    if isinstance(batch, dict):
        return {k: _map_leaves(fn, batch[k]) for k in sorted(batch)}
    if isinstance(batch, (list, tuple)):
        return tuple(_map_leaves(fn, b) for b in batch)
    return fn(batch)


def _normalise(batch: Any, where: Callable[[], str], kind: str) -> Any:
    """Lists become tuples, leaves numpy arrays; floats become ``floatx`` as Keras casts them."""
    if isinstance(batch, list):
        batch = tuple(batch)
    if isinstance(batch, tuple) and not 1 <= len(batch) <= 3:
        raise DataError(message(f"A {kind} must yield x, (x, y) or (x, y, sample_weight)",
                                f"a tuple of {len(batch)} items at {where()}",
                                "Pass several inputs as a list or dict inside x: ([x1, x2], y)."))

    def leaf(value: Any) -> np.ndarray:
        array = np.asarray(value)
        if array.dtype.kind not in "biuf" or array.ndim == 0:
            raise DataError(message(
                f"A {kind} must yield numeric arrays with a leading batch axis",
                f"{type(value).__name__} of dtype {array.dtype} and shape {array.shape} at {where()}",
                "Yield numpy arrays (or tensors) of numbers."))
        return array.astype("float32") if array.dtype.kind == "f" and array.dtype != np.float32 else array

    return _map_leaves(leaf, batch)


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
                 endless_after: int = 100_000) -> None:
        self.kind = kind
        self.repeat = repeat
        self.processes = processes
        self.timeout = timeout
        self.error: KfitxError | None = None
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
        while True:
            kind, number, index, payload = self._get()
            if not self.repeat and number < serving:
                continue  # the rest of a pass a consumer stopped reading early
            self._last = (number, index)
            where = f"batch {index} of pass {number + 1} of the {self.kind}"
            if kind == "batch":
                try:
                    batch = _normalise(payload, lambda: where, self.kind)
                    if self.signature is None:
                        self.signature = _Signature(batch, self.kind)
                    batch = self.signature.conform(batch, number, index)
                except DataError as err:
                    raise self._fail(err) from None
                yield batch
            elif kind == "end":
                if index == 0:
                    raise self._fail(DataError(message(
                        f"The {self.kind} must yield at least one batch each time it is started",
                        f"no batches in pass {number + 1}",
                        "A generator function must `yield` batches; a generator object can be read only "
                        "once, so pass the function (kfitx.data.generator(fn)), or give steps_per_epoch "
                        "to an endless one.")))
                if not self.repeat:
                    return
            elif kind == "endless":
                raise self._fail(DataError(message(
                    f"A {self.kind} without steps_per_epoch must end, each pass being one epoch",
                    f"more than {index - 1} batches in pass {number + 1} (endless_after)",
                    "For an endless generator pass steps_per_epoch=N (to kfitx.fit or kfitx.data.generator).")))
            else:  # "error"
                err = payload
                if isinstance(err, KfitxError):
                    raise self._fail(err)
                if isinstance(err, _RemoteError) and err.kfitx:  # kfitx's own message, from the worker
                    raise self._fail(DataError(err.text))
                text = message(f"The {self.kind} must produce batches without raising",
                               f"{_describe(err)} at {where}",
                               "Fix the generator; the traceback above shows where it failed.")
                if isinstance(err, _RemoteError):
                    text += "\nWorker process traceback:\n" + err.traceback
                raise self._fail(DataError(text), err)

    # -- shutdown ---------------------------------------------------------------

    def close(self, timeout: float = 2.0) -> None:
        """Stops the worker: bounded, idempotent; a thread stuck in user code is reported, not waited on."""
        if self._closed:
            return
        self._closed = True
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
