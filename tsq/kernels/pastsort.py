"""The buffer of the past's points in series order, by a compiled pass (numba): the points of
many writes, in the order added, sorted by series then time with one point a (series, time),
the last added, as the buffer goes into the table (`connectors/pastbuffer.py`), which a thread
writes while the writers go on.

numpy's stable sort by series, its gathers and checks take 9.6-11.5 ms for half a million
points, the gathers holding the GIL the writers want; a counting sort by id (a buffer's series
are a dense range of ids), then each series' times checked and, where a series came out of
time order, sorted, takes 7.7-8.8 ms without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.jit import machine_code

__all__ = ["last_by_series_and_time", "loaded", "warm"]

Columns = tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], npt.NDArray[np.float64]]


@machine_code
def _by_series(sid: Any, ts: Any, value: Any, low: int, span: int, out_sid: Any, out_ts: Any,
               out_value: Any) -> int:  # pragma: no cover - compiled, tested through the caller
    """The points into `out_*` sorted by series (ids `low`..`low + span - 1`), then time, one
    a (series, time): the last added; how many."""
    starts = np.zeros(span + 1, np.int64)
    for k in range(len(sid)):
        starts[sid[k] - low + 1] += 1
    for j in range(span):
        starts[j + 1] += starts[j]
    at = starts[:span].copy()
    for k in range(len(sid)):  # stable: a series' points in the order added
        j = sid[k] - low
        out_sid[at[j]] = sid[k]
        out_ts[at[j]] = ts[k]
        out_value[at[j]] = value[k]
        at[j] += 1
    kept = 0
    for j in range(span):
        first, stop = starts[j], starts[j + 1]
        ordered = True
        for k in range(first + 1, stop):
            if out_ts[k] < out_ts[k - 1]:
                ordered = False
                break
        if not ordered:  # by time, stably: of equal times the one added last stays last
            order = np.argsort(out_ts[first:stop], kind="mergesort") + first
            out_ts[first:stop] = out_ts[order]
            out_value[first:stop] = out_value[order]
        for k in range(first, stop):  # the last of each time, moved down over the others
            if k + 1 < stop and out_ts[k + 1] == out_ts[k]:
                continue
            out_sid[kept] = out_sid[k]
            out_ts[kept] = out_ts[k]
            out_value[kept] = out_value[k]
            kept += 1
    return kept


def last_by_series_and_time(sid: npt.NDArray[np.int32], ts: npt.NDArray[np.int64],
                            value: npt.NDArray[np.float64]) -> Columns | None:
    """The points sorted by series then time, one a (series, time): the last in the order
    given. None when the ids span more than four times the points (and a thousand): the
    counting sort would then count mostly series that have none."""
    if not len(sid):
        return sid, ts, value
    low, high = int(sid.min()), int(sid.max())
    if high - low >= 4 * len(sid) + 1024:
        return None
    out = (np.empty(len(sid), np.int32), np.empty(len(sid), np.int64),
           np.empty(len(sid), np.float64))
    kept = _by_series(sid, ts, value, low, high - low + 1, *out)
    return out[0][:kept], out[1][:kept], out[2][:kept]


def loaded() -> bool:
    """Whether the sort is compiled (or loaded from numba's cache) in this process."""
    return bool(_by_series.signatures)


def warm() -> None:
    """Load the compiled sort (from numba's cache) before a full buffer needs it."""
    one = (np.zeros(1, np.int32), np.zeros(1, np.int64), np.zeros(1, np.float64))
    last_by_series_and_time(*one)
