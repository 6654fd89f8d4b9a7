"""The blocks of the embedded store's recent reads, kept in memory for the reads after them.

A read of the store's past asks DuckDB for the blocks of its series (connectors/blockstore.py):
a statement of about a millisecond before any row, then the blocks' words handed over through
Arrow. For a day of 100 series every 10 s (864,000 points, 1.1 MB of words) that was 3.5 ms of a
7-8 ms query; the same query asked again (a dashboard's refresh, a loop over a sliding window)
asks for the same blocks. VictoriaMetrics and Prometheus keep their recent blocks in memory as
well (a cache of data blocks; chunks mapped into memory).

What is kept is what a read of a set of series got: every block of theirs that may hold points
in a window [low, high). A later read of the same series in a window inside that one takes the
blocks from here, those that reach into its window; `high` is open-ended where the read reached
the head's start, as no block holds a point from there on (the head does), so a window that
slides forward keeps finding them. Nothing decoded is kept: the words, some 1.3 bytes a point.

Blocks change only in the store's transactions (a move of the head, a write into the past, a
fold, a delete), and every transaction forgets every read kept, when it begins and once it has
ended (`changed`). A read notes the generation before its statement and is kept only if no
transaction began or ended meanwhile: its snapshot is then the last committed state, and stays
so until the next transaction (whose beginning forgets it). Kept reads are dropped, the least
recently used first, past the budget of bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.kernels import Blocks

__all__ = ["OPEN_END", "BlockCache"]

OPEN_END = 2**63 - 1  # a window's end past every block: the read reached the head


@dataclass(frozen=True)
class _Kept:
    low: int
    high: int
    parts: list[Blocks]
    size: int


class BlockCache:
    """The blocks of reads of the store's past, by the series read, within `budget` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._kept: OrderedDict[bytes, _Kept] = OrderedDict()
        self._bytes = 0
        self._generation = 0
        self._lock = threading.Lock()
        self.hits = 0  # reads answered from here
        self.misses = 0  # reads that asked DuckDB

    @property
    def generation(self) -> int:
        """Noted before a read's statement, and given back to `keep` with what it read."""
        return self._generation

    @property
    def size(self) -> int:
        """Bytes of the blocks kept."""
        return self._bytes

    def changed(self) -> None:
        """The blocks may change, or have: a transaction begins or has ended. Forget them all."""
        with self._lock:
            self._generation += 1
            self._kept.clear()
            self._bytes = 0

    def found(self, ids: npt.NDArray[np.int64], start: int, end: int) -> list[Blocks] | None:
        """The blocks of the series `ids` that may hold points in [start, end), to be read in
        that window, if a read of those series in a window around it is kept; else None."""
        key = _key(ids)
        with self._lock:
            kept = self._kept.get(key)
            if kept is None or not kept.low <= start <= end <= kept.high:
                self.misses += 1
                return None
            self._kept.move_to_end(key)
            self.hits += 1
        return [_within(part, start, end) for part in kept.parts]

    def keep(self, ids: npt.NDArray[np.int64], generation: int, low: int, high: int,
             parts: list[Blocks]) -> None:
        """What a read of the series `ids` in [low, high) got, begun at `generation`: kept
        if no transaction began or ended since, and it fits in the budget."""
        size = sum(_bytes(part) for part in parts)
        if size > self.budget:
            return
        for part in parts:  # later reads share them: none may change them in place
            for column in _columns(part):
                column.flags.writeable = False
        key = _key(ids)
        with self._lock:
            if generation != self._generation:
                return
            old = self._kept.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._kept[key] = _Kept(low, high, parts, size)
            self._bytes += size
            while self._bytes > self.budget:
                _, dropped = self._kept.popitem(last=False)
                self._bytes -= dropped.size


def _key(ids: npt.NDArray[np.int64]) -> bytes:
    return np.sort(ids).astype(np.int64, copy=False).tobytes()


def _within(part: Blocks, start: int, end: int) -> Blocks:
    """`part`'s blocks that reach into [start, end), to be read in that window."""
    reach = (part.lasts >= start) & (part.firsts < end)
    return replace(part if reach.all() else part.only(reach), start=start, end=end)


def _columns(part: Blocks) -> tuple[npt.NDArray[Any], ...]:
    return part.ids, part.firsts, part.lasts, part.counts, part.starts, part.words


def _bytes(part: Blocks) -> int:
    return sum(int(column.nbytes) for column in _columns(part))
