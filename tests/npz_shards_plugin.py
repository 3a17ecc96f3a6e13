"""A third-party-style data-source plugin: a directory of ``.npz`` shards, each holding arrays ``x`` and ``y``.

Written as a plugin author would write it from ``docs/plugins.md``, with kfitx's public names only
(``kfitx.hookimpl``, ``kfitx.data.Source``, ``kfitx.data.Reading``, ``kfitx.errors``): a source that
yields one pass of batches at a time, in shard order, batches running across shard boundaries as
``model.fit`` cuts the shards' concatenation, holding at most two shards in memory (the one being read
and the next one, while a batch spans both); and a ``kfitx_sources`` hook answering for a directory of
``.npz`` files, so that ``kfitx.fit(model, "shards/", ...)`` trains on it with every strategy.

Registered as a plugin object: ``kfitx.register(NpzShardsPlugin())``.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

import kfitx
from kfitx.errors import DataError, message


class ShardCount:
    """How many shards are loaded now, and the most there ever were at once (the plugin's own bookkeeping)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live = 0
        self.most = 0
        self.loads = 0

    def add(self, n: int) -> None:
        with self.lock:
            self.live += n
            self.most = max(self.most, self.live)
            self.loads += max(n, 0)


class _Shard:
    """One shard's arrays in memory; counted live until it is collected."""

    def __init__(self, path: Path, count: ShardCount) -> None:
        with np.load(path) as npz:
            self.x, self.y = np.array(npz["x"]), np.array(npz["y"])
        count.add(1)
        weakref.finalize(self, count.add, -1)


@dataclass(frozen=True, eq=False)
class NpzShards(kfitx.data.Source):
    """The ``.npz`` shards of a directory, read in name order."""

    kind: ClassVar[str] = "npz shards"
    directory: Path
    count: ShardCount = field(default_factory=ShardCount)

    @property
    def paths(self) -> list[Path]:
        return sorted(self.directory.glob("*.npz"))

    def describe(self) -> str:
        return f"{len(self.paths)} npz shards in {self.directory}"

    def get_numpy_iterator(self, reading: kfitx.data.Reading, epoch: int) -> Iterator[Any]:
        paths = self.paths
        if reading.shuffle:  # a new shard order each epoch, reproducible from the fit's seed
            rng = np.random.default_rng(None if reading.seed is None else [reading.seed, epoch])
            paths = [paths[i] for i in rng.permutation(len(paths))]
        return self._batches(paths, reading.batch_size)

    def _batches(self, paths: list[Path], size: int) -> Iterator[Any]:
        held: list[tuple[_Shard, int]] = []  # (shard, first unread sample): at most the current one and the next
        ready = 0
        for path in paths:
            held.append((_Shard(path, self.count), 0))
            ready += len(held[-1][0].x)
            while ready >= size:
                yield self._cut(held, size)
                ready -= size
        if ready:
            yield self._cut(held, ready)

    @staticmethod
    def _cut(held: list[tuple[_Shard, int]], size: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``size`` samples (copies), dropping every shard read to its end."""
        xs, ys = [], []
        while size:
            shard, start = held[0]
            stop = min(start + size, len(shard.x))
            xs.append(shard.x[start:stop].copy())
            ys.append(shard.y[start:stop].copy())
            size -= stop - start
            if stop == len(shard.x):
                del held[0]
                del shard  # its arrays go with it: only the batch's copies are kept
            else:
                held[0] = (shard, stop)
        return np.concatenate(xs), np.concatenate(ys)


class NpzShardsPlugin:
    """The plugin: teaches ``kfitx.fit`` a directory of ``.npz`` shards. ``made`` lists the sources it made."""

    def __init__(self) -> None:
        self.made: list[NpzShards] = []

    @kfitx.hookimpl
    def kfitx_sources(self, data: Any, y: Any) -> kfitx.data.Source | None:
        if not isinstance(data, (str, os.PathLike)) or not Path(data).is_dir():
            return None  # not ours: kfitx's own rules apply
        directory = Path(data)
        if not any(directory.glob("*.npz")):
            return None
        if y is not None:
            raise DataError(message("`y` None for a directory of .npz shards (each shard holds x and y)",
                                    type(y).__name__, "Save the targets in the shards as `y`."))
        source = NpzShards(directory)
        self.made.append(source)
        return source


def write_shards(directory: Path, x: np.ndarray, y: np.ndarray, shards: int) -> Path:
    """``x`` and ``y`` cut into ``shards`` files ``shard-000.npz``, ... (for tests)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, (xs, ys) in enumerate(zip(np.array_split(x, shards), np.array_split(y, shards))):
        np.savez(directory / f"shard-{i:03d}.npz", x=xs, y=ys)
    return directory
