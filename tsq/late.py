"""The invalidation log: writes into time a rollup has already covered.

A rollup with `late: {within: …}` watches its source. Every write that goes through tsq (line
protocol, `db.write`, a loop's output) is checked against the watches of its connector: per
written batch, the earliest and latest point of the series a watch's selector matches (whole
arrays, never a loop over points), and if the earliest is before the end of the newest window
the rollup succeeded for, the range is recorded here for that rollup. `tsq.reroll` takes the
ranges and runs the rollup's windows again, as TimescaleDB's continuous aggregates do with
their invalidation log.

The log is in memory: writes are a hot path and a range is taken within a second. A service
stopped in that second forgets it; the points themselves are kept, and a backfill or a run by
hand of the window rolls them up.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tsq.selector import Selector
from tsq.series import SeriesSet

__all__ = ["LateLog", "Watch"]

Rollup = tuple[str, str]  # (project, loop)
NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class Watch:
    """A rollup that re-runs windows its source gets late points in."""

    project: str
    loop: str
    source: Selector
    connector: tuple[object, ...]  # the instance key of the connector it reads
    within_ms: int  # windows that ended longer ago than this are not run again


class LateLog:
    def __init__(self) -> None:
        self._watches: dict[tuple[object, ...], list[Watch]] = {}
        self._covered: dict[Rollup, int] = {}  # the end of the newest window that succeeded
        self._pending: dict[Rollup, list[tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self.wake = threading.Event()  # set when a range is recorded

    def watch(self, watches: Iterable[Watch], covered: dict[Rollup, int]) -> None:
        """The rollups to watch now (the loops changed), and how far each is covered."""
        by_connector: dict[tuple[object, ...], list[Watch]] = {}
        for item in watches:
            by_connector.setdefault(item.connector, []).append(item)
        with self._lock:
            self._watches = by_connector
            self._covered = dict(covered)

    def watched(self, project: str, loop: str) -> Watch | None:
        with self._lock:
            return next((w for ws in self._watches.values() for w in ws
                         if (w.project, w.loop) == (project, loop)), None)

    def covered(self, project: str, loop: str, window_end_ms: int) -> None:
        """A run of the rollup succeeded for a window ending at `window_end_ms`."""
        with self._lock:
            key = (project, loop)
            self._covered[key] = max(self._covered.get(key, window_end_ms), window_end_ms)

    def written(self, connector: tuple[object, ...], series: SeriesSet) -> None:
        """Record the ranges of `series` (just written to `connector`) that rollups covered."""
        watches = self._watches.get(connector)
        if not watches or series.points == 0:
            return
        counts = np.diff(series.offsets)
        firsts = series.timestamps[np.minimum(series.offsets[:-1], series.points - 1)]
        lasts = series.timestamps[np.maximum(series.offsets[1:] - 1, 0)]
        for item in watches:
            picked = _matching(item.source, series, counts)
            if not picked:
                continue
            start_ms = int(firsts[picked].min()) // NS_PER_MS
            end_ms = int(lasts[picked].max()) // NS_PER_MS + 1
            self._record(item, start_ms, end_ms)

    def take(self) -> dict[Rollup, list[tuple[int, int]]]:
        """The ranges recorded since the last call, per rollup."""
        with self._lock:
            taken, self._pending = self._pending, {}
            self.wake.clear()
            return taken

    def put_back(self, rollup: Rollup, ranges: Sequence[tuple[int, int]]) -> None:
        """Ranges that could not be handled yet (their window's run is running)."""
        with self._lock:
            self._pending.setdefault(rollup, []).extend(ranges)

    def _record(self, item: Watch, start_ms: int, end_ms: int) -> None:
        key = (item.project, item.loop)
        with self._lock:
            covered = self._covered.get(key)
            if covered is None or start_ms >= covered:
                return  # the rollup has not reached this time yet: it will read the points
            self._pending.setdefault(key, []).append((start_ms, min(end_ms, covered)))
        self.wake.set()


def _matching(source: Selector, series: SeriesSet, counts: np.ndarray) -> list[int]:
    """The indices of the non-empty series of the batch that `source` selects."""
    return [i for i, (name, labels) in enumerate(zip(series.names, series.labels, strict=True))
            if counts[i] and (source.name is None or name == source.name)
            and source.matches(name, dict(labels))]
