"""The embedded store's head: its newest numeric points, in memory, as columns.

A scheduled rollup reads what was just written (the last minute, the last hour), and a TSDB
keeps that span in memory (Prometheus' and InfluxDB's head). The head holds every numeric point
at or after its `start`, the DuckDB table every one before it: a read splits at `start` and
never merges the two, and a read inside the head never touches the disk. The store moves the
oldest part of the head into the table as time goes on (`split`); `headlog` makes the head
durable.

Points are kept in chunks, each sorted by series id (a stable sort: a series' points keep the
order they were written in): a write's points make one chunk, and the newest chunk is merged
into the one before it while that one is no bigger (a binary counter: a point is copied about
log2 times, and a head holds few chunks), up to MAX_CHUNK points. In a chunk a series' points
are one slice found by a binary search, so a read of a few series costs a few searches a chunk,
and a read of most series takes whole chunks, masked by time. One (series, time) holds one
point: a write that reaches back to times a series already holds here drops the points it
replaces first.

The state is an immutable `Snapshot` replaced whole by each change, under the store's write
lock: a reader takes one and needs no lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.jitloaded import loaded

__all__ = ["Chunk", "Head", "Snapshot"]

Ints = npt.NDArray[np.int64]
Ids = npt.NDArray[np.int32]
Floats = npt.NDArray[np.float64]
Columns = dict[str, npt.NDArray[Any]]  # "sid", "ts", "value": as DuckDB's fetchnumpy gives
INT64_MIN = -(2**63)
# Chunks stop growing here: merging two of a million points costs some 10 ms of a write
MAX_CHUNK = 1 << 20
# Points from which two chunks are merged by tsq.kernels.sortedmerge: from the first size
# once this process has loaded it (a server's line parsers do, at its start), three to five
# times quicker than numpy and without the GIL; from the second even if that loads numba
COMPILED_MERGE_LOADED = 1 << 12
COMPILED_MERGE = 1 << 16
# A read of more than one id in this many of the id range they span masks whole chunks
DENSE_FRACTION = 4
PAIR = np.dtype([("sid", "<i8"), ("ts", "<i8")])


@dataclass(frozen=True, slots=True)
class Chunk:
    sid: Ids  # sorted
    ts: Ints
    value: Floats
    low: int  # the oldest and the newest time in it
    high: int

    @classmethod
    def of(cls, sid: Ids, ts: Ints, value: Floats) -> Chunk:
        if len(sid) > 1 and np.any(sid[1:] < sid[:-1]):
            order = np.argsort(sid, kind="stable")
            sid, ts, value = sid[order], ts[order], value[order]
        return cls(sid, ts, value, int(ts.min()), int(ts.max()))

    def __len__(self) -> int:
        return len(self.sid)

    def merged(self, newer: Chunk) -> Chunk:
        """This chunk and a newer one as one, sorted by series, each series' newer points
        after its older ones (as a stable sort of the two would place them), in one pass:
        compiled for large chunks (a write that loads numba for a small one would wait)."""
        low, high = min(self.low, newer.low), max(self.high, newer.high)
        size = len(self) + len(newer)
        if size >= COMPILED_MERGE or (size >= COMPILED_MERGE_LOADED and merges_loaded()):
            from tsq.kernels.sortedmerge import merge_by_series

            return Chunk(*merge_by_series((self.sid, self.ts, self.value),
                                          (newer.sid, newer.ts, newer.value)), low, high)
        at = np.searchsorted(self.sid, newer.sid, "right") + np.arange(len(newer))
        older = np.ones(size, dtype=bool)
        older[at] = False
        columns = []
        for mine, theirs in ((self.sid, newer.sid), (self.ts, newer.ts),
                             (self.value, newer.value)):
            both = np.empty(size, mine.dtype)
            both[at] = theirs
            both[older] = mine
            columns.append(both)
        sid, ts, value = columns
        return Chunk(sid, ts, value, low, high)

    def kept(self, keep: npt.NDArray[np.bool_]) -> Chunk | None:
        """The chunk without the points `keep` is False for; None if none are left."""
        if keep.all():
            return self
        if not keep.any():
            return None
        return Chunk.of(self.sid[keep], self.ts[keep], self.value[keep])

    def rows_of(self, ids: Ids, wanted: npt.NDArray[np.bool_] | None) -> slice | Ints:
        """Where the points of the series `ids` (sorted) lie: a slice when `wanted` (a mask over
        ids[0]..ids[-1], None when the range is whole) says to take their range and mask."""
        first = int(np.searchsorted(self.sid, ids[0], "left"))
        last = int(np.searchsorted(self.sid, ids[-1], "right"))
        if wanted is not None or last - first <= 0 or len(ids) == ids[-1] - ids[0] + 1:
            return slice(first, last)
        return _ranges(np.searchsorted(self.sid, ids, "left"),
                       np.searchsorted(self.sid, ids, "right"))


@dataclass(frozen=True, slots=True)
class Snapshot:
    start: int  # the head holds the points at and after this time
    chunks: tuple[Chunk, ...]

    @property
    def points(self) -> int:
        return sum(len(c) for c in self.chunks)

    @property
    def newest(self) -> int | None:
        return max((c.high for c in self.chunks), default=None)

    def read(self, ids: Ids, start: int, end: int) -> list[tuple[Ids, Ints, Floats]]:
        """The points of the series `ids` (sorted, unique) in [start, end): a part a chunk,
        each sorted by series id, oldest chunk first."""
        start = max(start, self.start)
        wanted = None
        if len(ids) > 1 and len(ids) * DENSE_FRACTION >= ids[-1] - ids[0] + 1 \
                and len(ids) != ids[-1] - ids[0] + 1:
            wanted = np.zeros(int(ids[-1] - ids[0]) + 1, dtype=bool)
            wanted[ids - ids[0]] = True
        parts = []
        for chunk in self.chunks:
            if chunk.high < start or chunk.low >= end or not len(ids):
                continue
            rows = chunk.rows_of(ids, wanted)
            sid, ts, value = chunk.sid[rows], chunk.ts[rows], chunk.value[rows]
            keep = None if wanted is None else wanted[sid - ids[0]]
            if chunk.low < start or chunk.high >= end:
                inside = (ts >= start) & (ts < end)
                keep = inside if keep is None else keep & inside
            if keep is not None and not keep.all():
                sid, ts, value = sid[keep], ts[keep], value[keep]
            if len(sid):
                parts.append((sid, ts, value))
        return parts


class Head:
    def __init__(self, start: int) -> None:
        self.state = Snapshot(start, ())
        # each series' newest time here, an upper bound (a delete does not lower it): a write
        # at or before it may replace points
        self._newest: Ints = np.full(0, INT64_MIN, dtype=np.int64)

    def append(self, sid: Ids, ts: Ints, value: Floats) -> None:
        """Add points at or after `start`, each replacing the point its series has at its
        time."""
        if not len(sid):
            return
        chunks = list(self.state.chunks)
        if sid.max() >= len(self._newest):
            grown = np.full(max(int(sid.max()) + 1, 2 * len(self._newest)), INT64_MIN)
            grown[:len(self._newest)] = self._newest
            self._newest = grown
        back = ts <= self._newest[sid]
        if back.any():
            chunks = _replaced(chunks, sid[back], ts[back])
        added = Chunk.of(sid.astype(np.int32, copy=False), ts,
                         value.astype(np.float64, copy=False))
        chunks.append(added)
        while len(chunks) > 1 and len(chunks[-2]) <= len(chunks[-1]) \
                and len(chunks[-2]) + len(chunks[-1]) <= MAX_CHUNK:
            newer = chunks.pop()
            chunks.append(chunks.pop().merged(newer))
        # each series' newest time: the maximum of each of its runs in the sorted chunk (a
        # ufunc's `at` takes a slow path a point)
        runs = np.flatnonzero(np.concatenate(([True], added.sid[1:] != added.sid[:-1])))
        ids = added.sid[runs]
        self._newest[ids] = np.maximum(self._newest[ids], np.maximum.reduceat(added.ts, runs))
        self.state = Snapshot(self.state.start, tuple(chunks))

    def delete(self, ids: Ids, start: int, end: int) -> int:
        """Drop the points of the series `ids` (sorted, unique) in [start, end); how many."""
        removed = 0
        chunks: list[Chunk] = []
        for chunk in self.state.chunks:
            kept: Chunk | None = chunk
            if len(ids) and chunk.high >= start and chunk.low < end:
                doomed = np.isin(chunk.sid, ids) & (chunk.ts >= start) & (chunk.ts < end)
                removed += int(doomed.sum())
                kept = chunk.kept(~doomed)
            if kept is not None:
                chunks.append(kept)
        self.state = Snapshot(self.state.start, tuple(chunks))
        return removed

    def split(self, boundary: int) -> tuple[Columns, Snapshot]:
        """The points before `boundary`, sorted by series then time (the order the table
        compresses best), and the head without them, starting there: the store writes the
        first to the table and then takes the second (`advance`)."""
        parts, chunks = [], []
        for chunk in self.state.chunks:
            if chunk.low >= boundary:
                chunks.append(chunk)
                continue
            before = chunk.ts < boundary
            parts.append((chunk.sid[before], chunk.ts[before], chunk.value[before]))
            kept = chunk.kept(~before)
            if kept is not None:
                chunks.append(kept)
        taken = _columns(parts)
        order = np.lexsort((taken["ts"], taken["sid"]))
        return ({k: v[order] for k, v in taken.items()},
                Snapshot(max(boundary, self.state.start), tuple(chunks)))

    def advance(self, state: Snapshot) -> None:
        self.state = state


def merges_loaded() -> bool:
    """Whether this process has the compiled merge: a large merge without it loads numba (and
    after an install compiles the merge) on the writing thread."""
    return loaded("tsq.kernels.sortedmerge")


def _replaced(chunks: Sequence[Chunk], sid: Ids, ts: Ints) -> list[Chunk]:
    """`chunks` without the points at the (series, time) pairs given."""
    among = _Among(sid, ts)
    low, high = int(ts.min()), int(ts.max())
    ids = np.unique(sid)
    kept = []
    for chunk in chunks:
        if chunk.high >= low and chunk.low <= high:
            # the write's series first, found by binary searches, then their times: a late
            # write costs what its series hold here, not what the whole head does (writes
            # from several clients at once arrive out of order all the time)
            span = chunk.rows_of(ids, None)
            times = chunk.ts[span]
            inside = np.flatnonzero((times >= low) & (times <= high))
            rows = inside + span.start if isinstance(span, slice) else span[inside]
            hit = rows[among(chunk.sid[rows], chunk.ts[rows])]
            if len(hit):
                keep = np.ones(len(chunk), dtype=bool)
                keep[hit] = False
                survivor = chunk.kept(keep)
                if survivor is not None:
                    kept.append(survivor)
                continue
        kept.append(chunk)
    return kept


class _Among:
    """Whether (sid, ts) pairs are among theirs. A 64-bit mix of the two finds each with a
    search of sorted integers (sorted once, for every chunk asked), and the pair found is
    compared exactly; where theirs mix to one number twice, the pairs themselves are compared
    (a tenth as fast)."""

    def __init__(self, sid: Ids, ts: Ints) -> None:
        self.sid, self.ts = sid, ts
        mixed = _mixed(sid, ts)
        self.order = np.argsort(mixed)
        self.ordered = mixed[self.order]
        self.collide = len(mixed) > 1 and bool(np.any(self.ordered[1:] == self.ordered[:-1]))

    def __call__(self, sid: npt.NDArray[Any], ts: Ints) -> npt.NDArray[np.bool_]:
        if self.collide:
            return np.isin(_pairs(sid, ts), _pairs(self.sid, self.ts))
        mine = _mixed(sid, ts)
        at = np.minimum(np.searchsorted(self.ordered, mine), len(self.ordered) - 1)
        found = self.order[at]
        same: npt.NDArray[np.bool_] = (self.ordered[at] == mine) & (self.sid[found] == sid)
        same &= self.ts[found] == ts
        return same


def _mixed(sid: npt.NDArray[Any], ts: Ints) -> npt.NDArray[np.uint64]:
    mixed = ts.astype(np.uint64)
    mixed *= np.uint64(0x9E3779B97F4A7C15)  # wraps: a hash, not a value
    mixed ^= sid.astype(np.uint64)
    return mixed


def _pairs(sid: npt.NDArray[Any], ts: Ints) -> npt.NDArray[Any]:
    pairs = np.empty(len(sid), dtype=PAIR)
    pairs["sid"], pairs["ts"] = sid, ts
    return pairs


def _ranges(firsts: npt.NDArray[np.intp], stops: npt.NDArray[np.intp]) -> Ints:
    """The positions of the slices [firsts[i], stops[i]), in order, as one index array."""
    lengths = (stops - firsts).astype(np.int64)
    nonempty = lengths > 0
    firsts, stops, lengths = firsts[nonempty], stops[nonempty], lengths[nonempty]
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    steps = np.ones(total, dtype=np.int64)
    steps[0] = firsts[0]
    # at each later slice's first position, the jump from the previous slice's last
    steps[np.cumsum(lengths)[:-1]] = firsts[1:] - stops[:-1] + 1
    return np.cumsum(steps)


def _columns(parts: list[tuple[Ids, Ints, Floats]]) -> Columns:
    if not parts:
        return {"sid": np.zeros(0, np.int32), "ts": np.zeros(0, np.int64),
                "value": np.zeros(0, np.float64)}
    if len(parts) == 1:
        sid, ts, value = parts[0]
        return {"sid": sid, "ts": ts, "value": value}
    return {name: np.concatenate([p[i] for p in parts])
            for i, name in enumerate(("sid", "ts", "value"))}
