"""``keras.utils.PyDataset`` sources: :class:`PyDatasetSource`, read by index.

A pass calls ``on_epoch_begin``, reads the batches in index order, or in a new
random order each pass when the fit shuffles (``model.fit``'s default for a
PyDataset of known length; the same order for every strategy, :func:`_order`),
and calls ``on_epoch_end``. For a tf.data stream a background worker reads it with the
PyDataset's own ``workers`` / ``use_multiprocessing`` / ``max_queue_size``
unless the fit sets them; a strategy's own loop reads it in this thread.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from kfitx.data.base import InputForm, Reading, Source
from kfitx.errors import DataError, message
from kfitx.runtime.lazy import is_instance as _is_instance

if TYPE_CHECKING:
    from kfitx.data.epoch_iterator import EpochIterator

__all__ = ["PyDatasetSource"]


@dataclass(frozen=True, eq=False)
class PyDatasetSource(Source):
    """A ``keras.utils.PyDataset``."""

    kind: ClassVar[str] = "PyDataset"
    dataset: Any

    @property
    def form(self) -> InputForm:
        return InputForm.PYDATASET

    def __post_init__(self) -> None:
        if not _is_instance(self.dataset, "keras", "utils.PyDataset"):
            raise DataError(message("Expected a keras.utils.PyDataset", type(self.dataset).__name__))

    def num_batches(self, batch_size: int) -> int | None:
        return self.dataset.num_batches

    def default_steps(self, steps: int | None, role: str) -> int | None:
        if steps is None and self.dataset.num_batches is None:
            raise DataError(message(f"An endless PyDataset (num_batches None) needs {role}",
                                    f"{role}=None", f"Pass {role}=N."))
        return steps

    def passthrough(self) -> Any:
        return self.dataset

    def worker_settings(self) -> dict[str, Any]:
        return {name: getattr(self.dataset, name, None)
                for name in ("workers", "use_multiprocessing", "max_queue_size")}

    def open_pass(self, reading: Reading) -> Callable[[], Iterator[Any]]:
        """One read of the PyDataset per call, by ``reading.worker(self)["workers"]`` threads, order kept."""
        ds = self.dataset
        length = ds.num_batches
        rng = np.random.default_rng(reading.seed)
        shuffle = reading.shuffle is True
        settings = reading.worker(self)
        assert settings is not None  # a PyDataset has worker settings (worker_settings above)
        workers = settings["workers"]

        def one_pass() -> Iterator[Any]:
            ds.on_epoch_begin()
            order = _order(length, shuffle, rng)
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

    def as_dataset(self, reading: Reading) -> Any:
        """The worker's stream: one pass per iteration, of the PyDataset's length (so that ``model.fit``'s
        epoch rules carry a pass across epochs as for the PyDataset itself); an endless one is one stream."""
        import tensorflow as tf

        from kfitx.data._producer import stream

        length = self.dataset.num_batches
        dataset = stream(self, reading, repeat=length is None)
        return dataset if length is None else dataset.apply(tf.data.experimental.assert_cardinality(length))

    def feed(self, reading: Reading, *, group: int = 1, pull: bool = False) -> EpochIterator:
        from kfitx.data.feed import PythonFeed

        ds = self.dataset
        length = ds.num_batches
        self.default_steps(reading.steps, "steps_per_epoch")  # an endless one needs steps
        rng = np.random.default_rng(reading.seed)
        shuffle = reading.shuffle is True

        def open_epoch() -> tuple[Iterator[Any], Callable[[], None]]:
            ds.on_epoch_begin()
            return (ds[i] for i in _order(length, shuffle, rng)), ds.on_epoch_end

        return PythonFeed(open_epoch, reading, length, group, self.kind)


def _order(length: int | None, shuffle: bool, rng: Any) -> Any:
    """The batch indices of one pass: every index, permuted with ``shuffle`` (``shuffle=True``, as
    ``model.fit`` shuffles a PyDataset's batches), endless when the length is unknown."""
    if length is None:
        return itertools.count()
    return rng.permutation(length).tolist() if shuffle else range(length)
