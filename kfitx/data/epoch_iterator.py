"""The one place that counts steps: :class:`EpochIterator`, ``model.fit``'s epoch and pass rules.

Separation of concerns (after Keras's ``trainers/epoch_iterator.py``):

* a source (:mod:`kfitx.data`): what one pass is -- it opens a fresh iterator of
  batches --, how long a pass is where known, and what each batch must be (its
  checks, ``class_weight``);
* this module: the steps. An epoch is ``steps_per_epoch`` batches, or one pass
  without it; a pass longer than an epoch is carried into the next epoch, one
  shorter ends the epoch with Keras's "ran out of data" warning (a generator
  factory's stream is refilled instead: it never runs out); batches go in groups
  of ``steps_per_execution``, and callbacks see ``begin + group - 1`` (the epoch's
  last batch when kfitx chose the group itself, as plain fit at one step per call
  reports it); ``keras.config.max_steps_per_epoch`` (:func:`limit_steps`); a pass
  of Python batches that is empty, shorter than its stated length, or seemingly
  endless (:class:`PassCount`) is a :class:`DataError`, each mistake in one wording;
* the strategy and the engine: the step and the callbacks.

A strategy's own loop reads an :class:`EpochIterator` (:mod:`kfitx.data.feed` makes
one of a source); the worker behind a generator's or a PyDataset's tf.data stream
(:mod:`kfitx.data._producer`) counts each pass with :class:`PassCount`, and
``model.fit`` applies its own epoch iterator to that stream.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from kfitx.errors import DataError, KfitxError, message

__all__ = ["ENDLESS_WARNING", "OUT_OF_DATA", "EpochIterator", "Group", "PassCount", "limit_steps",
           "ran_out_of_data", "stream_raised"]

#: A pass without ``steps_per_epoch`` this long is probably endless: said at once, in a warning, long before
#: ``endless_after`` (100,000 by default) ends the fit; a finite generator that long is only told once.
ENDLESS_WARNING = 10_000

#: ``model.fit``'s own words when the data ends before ``steps_per_epoch`` (Keras's ``EpochIterator``; the
#: wording is pinned in ``tests/test_keras_boundary.py``).
OUT_OF_DATA = ("Your input ran out of data; interrupting training. Make sure that your dataset or generator "
               "can generate at least `steps_per_epoch * epochs` batches. You may need to use the "
               "`.repeat()` function when building your dataset.")

#: One group of steps: ``(first step, last step as callbacks see it, data)``.
Group = tuple[int, int, Any]
#: Opens one pass: ``(iterator of batches, close)``.
Opener = Callable[[], tuple[Iterator[Any], Callable[[], None]]]


def limit_steps(steps: int | None) -> int | None:
    """``steps_per_epoch`` limited by ``keras.config.max_steps_per_epoch``, with Keras's warning, as its epoch
    iterator limits it."""
    import keras

    most = keras.config.max_steps_per_epoch()
    if most and (not steps or most < steps):
        warnings.warn(f"Limiting steps_per_epoch to {most}", stacklevel=4)  # where build_plan is called
        return int(most)
    return steps


def ran_out_of_data() -> None:
    """Keras's "ran out of data" warning: the data ended before the epoch's ``steps_per_epoch``."""
    warnings.warn(OUT_OF_DATA, stacklevel=3)


class PassCount:
    """One pass of Python batches (a generator's, a PyDataset's), counted by the pass rules.

    Args:
        kind: What the data is, for messages ("generator", "PyDataset").
        where: Which pass, for messages ("pass 3").
        length: The batches the pass must give (a PyDataset's length), or ``None``.
        endless_after: Without ``steps_per_epoch`` each pass is an epoch and must end: more
            batches than this are a :class:`DataError` (a warning comes at :data:`ENDLESS_WARNING`).
            ``None`` where a pass may run on (``steps_per_epoch`` given, or a repeated stream).
    """

    def __init__(self, kind: str, where: str, *, length: int | None = None, endless_after: int | None = None) -> None:
        self.kind, self.where, self.length, self.endless_after = kind, where, length, endless_after
        self.count = 0

    def add(self) -> None:
        """One more batch.

        Raises:
            DataError: past ``endless_after``.
        """
        self.count += 1
        limit = self.endless_after
        if limit is None:
            return
        if self.count > limit:
            raise self.too_long(limit)
        if self.count == ENDLESS_WARNING + 1 and ENDLESS_WARNING < limit:
            warnings.warn(f"kfitx: the {self.kind} has yielded {ENDLESS_WARNING:,} batches in one pass without "
                          "ending, and no steps_per_epoch was given, so each pass is an epoch. If it never ends, "
                          f"pass steps_per_epoch=N; otherwise the fit stops it at endless_after={limit:,} batches.",
                          RuntimeWarning, stacklevel=2)

    def too_long(self, limit: int) -> DataError:
        """The error of a pass longer than ``endless_after=limit``, without ``steps_per_epoch``."""
        return DataError(message(
            f"A {self.kind} without steps_per_epoch must end, each pass being one epoch",
            f"more than endless_after={limit} batches in {self.where}",
            "For an endless generator pass steps_per_epoch=N (to kfitx.fit or kfitx.data.generator); "
            "for a longer finite one raise the endless_after option."))

    def end(self) -> None:
        """The pass ended.

        Raises:
            DataError: it gave no batch, or fewer than its length says.
        """
        if self.count == 0:
            raise DataError(message(
                f"The {self.kind} must yield at least one batch each time it is started",
                f"no batches in {self.where}",
                "A generator function must `yield` batches; a generator object can be read only once, so pass "
                "the function (kfitx.data.generator(fn)), or give steps_per_epoch to an endless one."))
        if self.length is not None and self.count < self.length:
            raise DataError(message(
                f"The {self.kind} must yield the {self.length} batches its length says in every pass",
                f"{self.count} batch(es) in {self.where}",
                "Make __len__ (num_batches) say how many batches __getitem__ gives."))


def stream_raised(kind: str, described: str, where: str) -> DataError:
    """The error of a stream whose user code (a generator, a PyDataset's ``__getitem__``) raised: one wording,
    whichever reads it (kfitx's worker or a strategy's own loop); ``described``: the error, ``where``: which batch."""
    return DataError(message(f"The {kind} must produce batches without raising", f"{described} at {where}",
                             "Fix the generator; the traceback above shows where it failed."))


def _take(iterator: Iterator[Any], n: int, batches: list[Any]) -> list[Any]:
    """Up to ``n`` batches of ``iterator`` appended to ``batches`` (fewer where it ends; a tf.data iterator ends
    with ``OutOfRangeError``); where the iterator raises, ``batches`` holds those read before."""
    ended: tuple[type[BaseException], ...] = (StopIteration,)
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        ended += (tf.errors.OutOfRangeError,)
    try:
        while len(batches) < n:
            batches.append(next(iterator))
    except ended:
        pass
    return batches


class EpochIterator:
    """Each epoch's batches, in groups, by ``model.fit``'s rules (see the module docstring).

    Args:
        open_pass: Opens one pass: ``(iterator, close)``.
        steps: ``steps_per_epoch``, or ``None`` for one pass per epoch.
        pass_length: Batches in one pass where known, else ``None``.
        group: Batches per group (steps per compiled call).
        pull: Read each group's batches here (``data`` is a list of up to ``group`` batches). Else
            ``data`` is the pass's iterator itself, which the compiled step reads a group from, and
            the step's finding it empty is :meth:`ran_out`.
        last_batch: kfitx chose ``group`` itself: a last, partial group reports the epoch's last
            batch to callbacks, as plain fit at one step per call does (else ``begin + group - 1``,
            as Keras reports it).
        kind: What the data is, for messages.
        checked: Passes are Python code kfitx reads (a generator, a PyDataset): each pass is counted
            by :class:`PassCount` (empty, short, endless), not ended silently.
        endless_after: With ``checked`` and no ``steps``, the most batches a pass may take.
        refill: A pass that ends inside an epoch is followed at once by a new one (a generator
            factory's stream never runs out), where other data ends the epoch there.
        prepare: Called on each batch read here, ``prepare(batch, epoch, index)``; returns the batch
            to train on (the source's checks, ``class_weight``).
    """

    def __init__(self, open_pass: Opener, *, steps: int | None, pass_length: int | None, group: int,
                 pull: bool = True, last_batch: bool = False, kind: str = "data", checked: bool = False,
                 endless_after: int = 100_000, refill: bool = False,
                 prepare: Callable[[Any, int, int], Any] | None = None) -> None:
        self.open_pass = open_pass
        self.steps_per_epoch = steps
        self.pass_length = pass_length
        self.group = group
        self.pull = pull
        self.last_batch = last_batch
        self.kind = kind
        self.checked = checked
        self.endless_after = endless_after
        self.refill = refill
        self.prepare = prepare
        self._pass: tuple[Iterator[Any], Callable[[], None]] | None = None
        self._count: PassCount | None = None
        self._seen = 0  # batches of the current pass read (groups, where the compiled step reads them)
        self._passes = 0

    @property
    def num_batches(self) -> int | None:
        """Batches per epoch as the callbacks' ``steps`` parameter reports it (``None``: until the data ends)."""
        return self.steps_per_epoch or self.pass_length

    # -- passes -------------------------------------------------------------------------------

    def _open(self) -> Iterator[Any]:
        self._end_pass()
        self._pass, self._seen = self.open_pass(), 0
        self._passes += 1
        if self.checked:
            endless = self.endless_after if self.steps_per_epoch is None and self.pass_length is None else None
            self._count = PassCount(self.kind, f"pass {self._passes}", length=self.pass_length,
                                    endless_after=endless)
        return self._pass[0]

    def _end_pass(self) -> None:
        opened, self._pass, self._count = self._pass, None, None
        if opened is not None:
            opened[1]()

    def _ended(self) -> None:
        """The current pass's iterator is used up: its count is checked, and it is closed."""
        count = self._count
        self._end_pass()
        if count is not None:
            count.end()

    def _read(self, want: int, epoch: int, begin: int) -> list[Any]:
        """Up to ``want`` batches of the pass (and, with ``refill``, of the next ones); fewer where the pass ended."""
        batches: list[Any] = []
        while len(batches) < want:
            iterator = self._open() if self._pass is None else self._pass[0]
            fresh = self._seen == 0
            got: list[Any] = []
            try:
                _take(iterator, want - len(batches), got)
            except KfitxError:
                raise
            except Exception as err:  # the user's code, read in Python: said as kfitx's worker says it
                if not self.checked:
                    raise
                raise stream_raised(self.kind, f"{type(err).__name__}({str(err)!r})",
                                    f"batch {self._seen + len(got)} of pass {self._passes} of the {self.kind}") from err
            for batch in got:
                if self._count is not None:
                    self._count.add()
                index = begin + len(batches)
                batches.append(batch if self.prepare is None else self.prepare(batch, epoch, index))
            self._seen += len(got)
            if len(batches) < want:  # the pass ended (an empty one raises in a checked count)
                self._ended()
                if not self.refill or (fresh and not got):
                    break
        return batches

    # -- epochs -------------------------------------------------------------------------------

    def _end(self, begin: int, steps: int | None) -> int:
        end = begin + self.group - 1
        return min(end, steps - 1) if self.last_batch and steps else end

    def epoch(self, epoch: int) -> Iterator[Group]:
        """One epoch's groups ``(first step, last step, [batches] or the pass's iterator)``."""
        steps = self.num_batches
        if self._pass is None or self.steps_per_epoch is None:  # without steps_per_epoch, a fresh pass
            self._open()
        if not steps:  # unknown length, no steps_per_epoch: until the pass ends
            yield from self._until_the_end(epoch)
            return
        for begin in range(0, steps, self.group):
            if self.pass_length and self._seen >= self.pass_length:
                if self.steps_per_epoch:
                    ran_out_of_data()
                break
            if self.pull:
                data: Any = self._read(self.group, epoch, begin)
                if not data:
                    self.ran_out()
                    return
            else:
                assert self._pass is not None  # opened above, or at the end of the last epoch
                data = self._pass[0]
                self._seen += self.group
            yield begin, self._end(begin, steps), data
            if self.pull and len(data) < self.group and not self.pass_length:  # the pass ended early
                if self.steps_per_epoch and begin + len(data) < steps:
                    ran_out_of_data()
                return
        if self.pass_length and self._seen >= self.pass_length:
            # As Keras's EpochIterator: the next pass is opened now (and, without steps_per_epoch, again
            # when the next epoch starts). Counting passes as it does keeps a seeded shuffle (a new
            # permutation per iterator) in step with model.fit's.
            self._open()

    def _until_the_end(self, epoch: int) -> Iterator[Group]:
        for begin in itertools.count(0, self.group):
            if not self.pull:
                assert self._pass is not None
                yield begin, self._end(begin, None), self._pass[0]
                continue
            data = self._read(self.group, epoch, begin)
            if data:
                yield begin, self._end(begin, None), data
            if len(data) < self.group:
                return

    def ran_out(self) -> None:
        """The data ended before the epoch did (or a compiled step found the iterator empty): the epoch ends,
        with Keras's warning where ``steps_per_epoch`` asked for more, and the next one starts a new pass."""
        if self.steps_per_epoch:
            ran_out_of_data()
        self._end_pass()

    def restart(self) -> None:
        """The next epoch starts a new pass (after a batch was read to build the model, as Keras resets)."""
        self._end_pass()

    def close(self) -> None:
        """Ends the pass carried across epochs (the fit is over)."""
        self._end_pass()
