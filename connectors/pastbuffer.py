"""Points written behind the head, held in memory until the store writes them into its table in
one transaction (write-behind).

A write into the past made a DuckDB transaction of its own: registering the batch, an `INSERT`
and a `COMMIT` with DuckDB's log sync, some 2.5 ms for a 5,000-point batch on top of the
request, where a TSDB appends to a log. So the store logs such points as it logs the head's
(a `HeadLog` of their own, synced before the write is acknowledged), keeps them here, and writes
them into the table when PAST_POINTS are held, before a read of a series with points here
reads the table, and before anything deletes, folds or moves points there: nothing ever reads
a series in the table with points of it waiting here, so no read merges the two. A
transaction of many batches is a few statements for them all, and a large enough stretch of a
series goes straight into a compressed block.

Two writes of one (series, time) keep the later; once the table holds the points, the log is
emptied. A restart replays the log into a fresh buffer and writes it into the table. If the
process dies after that transaction committed and before the log was emptied, the replay
writes the same points again over themselves: nothing else can have touched them in between,
as the write lock is held throughout.

The write that fills the buffer does not write it: it hands it to a thread (`Flush`) and
leaves a fresh buffer, and a fresh segment of the log, to the writes after it, which go on
meanwhile. Writing half a million points into the table took 50-70 ms, which that one write
waited for, and every writer behind it (a past day from one client: some 10 % of its time).
Until the thread is done, the buffer it writes counts as held: whatever would read those series
in the table, or write the table at all (a delete, a fold, a move of the head, a write of text
or of a new series, the next buffer), waits for it first, under the write lock, and takes its
outcome (`EmbeddedStore._settle`): its segments of the log deleted once it committed; its points
put back in front of the buffer's if it failed, for the next write-behind to try again. The
thread never takes the write lock, so waiting for it there cannot deadlock. A restart replays
every segment, oldest first: the thread's buffer, then the one after it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tsq.jitloaded import loaded

if TYPE_CHECKING:
    from tsq.connectors.seriesindex import Entry

__all__ = ["PAST_POINTS", "Flush", "PastBuffer", "Written"]

PAST_POINTS = 1 << 19  # points held before they are written into the table

Columns = tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], npt.NDArray[np.float64]]


class PastBuffer:
    def __init__(self) -> None:
        self._parts: list[Columns] = []
        self.points = 0
        self._held = np.zeros(0, dtype=bool)  # by series id: whether it has points here

    def add(self, sid: npt.NDArray[np.int32], ts: npt.NDArray[np.int64],
            value: npt.NDArray[np.float64]) -> None:
        if len(sid):
            self._parts.append((sid.astype(np.int32, copy=False), ts,
                                value.astype(np.float64, copy=False)))
            self.points += len(sid)
            highest = int(sid.max())
            if highest >= len(self._held):
                grown = np.zeros(max(highest + 1, 2 * len(self._held)), dtype=bool)
                grown[:len(self._held)] = self._held
                self._held = grown
            self._held[sid] = True

    def mark(self) -> tuple[int, int]:
        """Where the buffer is now, for `undo`."""
        return len(self._parts), self.points

    def undo(self, mark: tuple[int, int]) -> None:
        """Drop what was added since `mark` (its series may still be noted as held: a read
        of them then writes the buffer into the table for nothing)."""
        del self._parts[mark[0]:]
        self.points = mark[1]

    def holds_any(self, ids: npt.NDArray[np.integer[Any]]) -> bool:
        """Whether any of the series `ids` has points here."""
        known = ids[ids < len(self._held)]
        return bool(self._held[known].any())

    def held(self) -> Columns:
        """Every point held, sorted by series then time, one a (series, time): the last one
        added of each. Compiled where this process has loaded it (`tsq.kernels.pastsort`: a
        server does, at its start, in tsq.lineparsers), else by numpy."""
        sid, ts, value = (np.concatenate(column) for column in zip(*self._parts, strict=True))
        if loaded("tsq.kernels.pastsort"):
            from tsq.kernels.pastsort import last_by_series_and_time

            found = last_by_series_and_time(sid, ts, value)
            if found is not None:
                return found
        return _by_numpy(sid, ts, value)

    def put_back(self, older: PastBuffer) -> None:
        """Take `older`'s points back in front of these (a write-behind of it failed): as if
        they had never left, the later points of a (series, time) still the ones kept."""
        self._parts[:0] = older._parts
        self.points += older.points
        # made whole before it replaces the old one: a reader asks `holds_any` without a lock
        held = np.zeros(max(len(self._held), len(older._held)), dtype=bool)
        held[:len(self._held)] |= self._held
        held[:len(older._held)] |= older._held
        self._held = held

    def clear(self) -> None:
        self._parts.clear()
        self.points = 0
        self._held[:] = False


def _by_numpy(sid: npt.NDArray[np.int32], ts: npt.NDArray[np.int64],
              value: npt.NDArray[np.float64]) -> Columns:
    """`PastBuffer.held` without the compiled kernel."""
    # Each write's points come grouped by series and the writes mostly in time order, so a
    # stable sort by series alone (a merge of sorted runs) leaves each series in time
    # order: 3 ms for 550 k points, where sorting by series and time took 10. Stable: of
    # equal pairs the last added comes last.
    order = np.argsort(sid, kind="stable")
    sid, ts = sid[order], ts[order]
    if ((sid[1:] == sid[:-1]) & (ts[1:] < ts[:-1])).any():
        # a series out of time order: by time too (stable: the order added stays the
        # order of equal pairs)
        by_both = np.lexsort((ts, sid))
        order, sid, ts = order[by_both], sid[by_both], ts[by_both]
    value = value[order]
    twice = (sid[1:] == sid[:-1]) & (ts[1:] == ts[:-1])
    if not twice.any():
        return sid, ts, value
    last = np.append(~twice, True)
    return sid[last], ts[last], value[last]


@dataclass(frozen=True, eq=False)  # arrays: compared by identity, never by value
class Written:
    """What a write into the table leaves the store to note of it: the series written, how
    many points of each, their times (INT64_MIN where a point went to the head instead), where
    each series' points begin and the last end, and how many went in as rows, not blocks."""

    series: list[Entry]
    counts: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    rows: int


@dataclass
class Flush:
    """A full buffer that a thread writes into the table, and the log's first `segments`
    segments that hold it (module docstring): what the thread found once `done` is set, the
    store's notes for the points written (`written`) or None if it failed."""

    buffer: PastBuffer
    segments: int
    done: threading.Event = field(default_factory=threading.Event)
    written: Written | None = None
