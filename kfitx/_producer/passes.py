"""Pass openers: a function returning a fresh iterator over one pass of a generator or PyDataset.

One call of a generator factory, or one read of a ``PyDataset`` in (optionally
shuffled) index order, with ``on_epoch_begin``/``on_epoch_end`` around it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from kfitx.data import GeneratorSource, PyDatasetSource, Source
from kfitx.errors import DataError, message

__all__ = ["pass_opener"]


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
