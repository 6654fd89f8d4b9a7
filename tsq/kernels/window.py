"""Sliding windows: each point becomes an aggregate of its neighbourhood in its series.

The window of a point holds `pre` points before it and `post` after it (TSL's `window(agg,
pre, post)` with counts), or, with `by_time`, every point within `pre` nanoseconds before and
`post` after it. `cumulative` is a window reaching back to the series' start. NaN points are
left out first, as everywhere in the kernels.

Each point's window is a range `[lo, hi]` of the flat arrays, found for all points at once
(arithmetic for counts; one `searchsorted` on a key that orders series one after another for
durations). Sums, means, counts and variances come from prefix sums; first, last and delta
from the bounds; the other aggregators gather each window into a matrix, in chunks, or walk a
long window per series.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.errors import BadRequest
from tsq.kernels.aggregate import Aggregator, reduce_segments
from tsq.series import SeriesSet

__all__ = ["cumulative", "window"]

Array = npt.NDArray[Any]
Ints = npt.NDArray[np.int64]
GATHER_CELLS = 1 << 22  # points x window width gathered at once
MAX_GATHER_WIDTH = 4096  # wider windows are walked series by series
PREFIX = frozenset({"sum", "mean", "count", "first", "last", "delta"})
SPREAD = frozenset({"stddev", "stdvar"})  # prefix sums only for wide windows: they cancel badly


def window(series: SeriesSet, agg: Aggregator, pre: int = 0, post: int = 0, *,
           by_time: bool = False) -> SeriesSet:
    if pre < 0 or post < 0:
        raise BadRequest(f"a window's pre and post must be 0 or more, got {pre} and {post}")
    clean = _without_nan(series)
    if clean.points == 0:
        return clean
    lo, hi = (_time_bounds if by_time else _count_bounds)(clean, pre, post)
    values = _aggregate(clean, lo, hi, agg)
    return SeriesSet(clean.names, clean.labels, clean.timestamps, values, clean.offsets)


def cumulative(series: SeriesSet, agg: Aggregator) -> SeriesSet:
    """Each point becomes the aggregate of its series up to and including it."""
    return window(series, agg, pre=max(series.points, 1))


def _without_nan(series: SeriesSet) -> SeriesSet:
    if series.values.dtype.kind != "f":
        return series
    present = ~np.isnan(series.values)
    if present.all():
        return series
    before = np.concatenate(([0], np.cumsum(present, dtype=np.int64)))
    return SeriesSet(series.names, series.labels, series.timestamps[present],
                     series.values[present], before[series.offsets])


def _series_bounds(series: SeriesSet) -> tuple[Ints, Ints]:
    ids = series.series_ids()
    return series.offsets[ids], series.offsets[ids + 1] - 1


def _count_bounds(series: SeriesSet, pre: int, post: int) -> tuple[Ints, Ints]:
    first, last = _series_bounds(series)
    at = np.arange(series.points, dtype=np.int64)
    return np.maximum(at - pre, first), np.minimum(at + post, last)


def _time_bounds(series: SeriesSet, pre: int, post: int) -> tuple[Ints, Ints]:
    first, last = _series_bounds(series)
    stamps = series.timestamps
    spread = int(stamps.max()) - int(stamps.min()) + pre + post + 1
    if len(series) * spread < 2**62:  # one sorted key: series after series
        key = (stamps - stamps.min()) + series.series_ids() * spread
        lo = np.searchsorted(key, key - pre, side="left")
        hi = np.searchsorted(key, key + post, side="right") - 1
        return np.maximum(lo, first), np.minimum(hi, last)
    lo, hi = np.empty_like(stamps), np.empty_like(stamps)
    for s in range(len(series)):  # extreme time ranges: the key would overflow
        a, b = int(series.offsets[s]), int(series.offsets[s + 1])
        lo[a:b] = a + np.searchsorted(stamps[a:b], stamps[a:b] - pre, side="left")
        hi[a:b] = a + np.searchsorted(stamps[a:b], stamps[a:b] + post, side="right") - 1
    return lo, hi


def _aggregate(series: SeriesSet, lo: Ints, hi: Ints, agg: Aggregator) -> Array:
    values = series.values
    width = int((hi - lo).max()) + 1
    numeric = values.dtype.kind in "fiub"
    if numeric and (agg.name in PREFIX or (agg.name in SPREAD and width > MAX_GATHER_WIDTH)):
        floats = values.astype(np.float64)
        if agg.name in SPREAD:  # centre each series: variance is shift-invariant, sums stay small
            ids = series.series_ids()
            sums = np.bincount(ids, weights=floats, minlength=len(series))
            floats = floats - (sums / np.maximum(np.diff(series.offsets), 1))[ids]
        return _from_prefix_sums(floats, lo, hi, agg)
    if width <= MAX_GATHER_WIDTH:
        return _gathered(values, lo, hi, width, agg)
    return np.concatenate([reduce_segments(values[a:b + 1], np.array([0], np.int64), agg)
                           for a, b in zip(lo.tolist(), hi.tolist(), strict=True)])


def _from_prefix_sums(values: Array, lo: Ints, hi: Ints, agg: Aggregator) -> Array:
    if agg.name == "first":
        return values[lo]
    if agg.name == "last":
        return values[hi]
    if agg.name == "delta":
        return values[hi] - values[lo]
    count = (hi - lo + 1).astype(np.float64)
    if agg.name == "count":
        return count
    # One prefix sum over all points: O(n) for any window width; its rounding grows with the
    # running total (relative 1e-16 of it), negligible for metrics, noted for huge magnitudes.
    sums = np.concatenate(([0.0], np.cumsum(values)))
    total = sums[hi + 1] - sums[lo]
    if agg.name == "sum":
        return total
    mean = total / count
    if agg.name == "mean":
        return mean
    squares = np.concatenate(([0.0], np.cumsum(values * values)))
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = (squares[hi + 1] - squares[lo] - count * mean * mean) / (count - 1)
    variance = np.where(count > 1, np.maximum(variance, 0.0), np.nan)
    return variance if agg.name == "stdvar" else np.sqrt(variance)


def _gathered(values: Array, lo: Ints, hi: Ints, width: int, agg: Aggregator) -> Array:
    """Windows as rows of a (points, width) matrix, in chunks; short rows padded and masked
    by reducing each row's own prefix as a segment of the flattened chunk."""
    out: list[Array] = []
    rows = max(1, GATHER_CELLS // width)
    offsets = np.arange(width, dtype=np.int64)
    for start in range(0, len(lo), rows):
        low, high = lo[start:start + rows], hi[start:start + rows]
        sizes = high - low + 1
        index = low[:, None] + offsets[None, :]
        keep = offsets[None, :] < sizes[:, None]
        flat = values[index[keep]]
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        out.append(reduce_segments(flat, starts, agg))
    return np.concatenate(out)
