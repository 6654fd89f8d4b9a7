"""Bucketize: one value per series per time bucket, then fill the empty buckets.

Buckets are `span` long and aligned on `anchor` (any bucket boundary). Which side of a bucket is
closed and which edge labels it (its tick) are two fields:
- `closed="left", label="start"`, the default: tsq's time model (docs/time.md), as InfluxDB's
  GROUP BY time, TimescaleDB's time_bucket and pandas' resample: `[start, start + span)`, tick
  `start`;
- `closed="right", label="end"`: Warp 10's BUCKETIZE (which TSL compiles to) and Prometheus'
  ranges: `(end - span, end]`, tick `end`.
`label` defaults to the closed side's edge, so `closed="right"` alone is Warp 10's convention.
The other two pairings work too (pandas allows them), but nothing in tsq uses them.

NaN values are left out before aggregating, so a bucket of NaNs is an empty bucket. With
`first`/`last` (ticks) the grid is fixed: points outside it are dropped and fills cover all of it;
without, each series' grid runs from its first to its last bucket, so fills only close inner
gaps. Fills work on a dense (series by buckets) grid, all series at once; they apply in the order
given, as Warp 10 applies INTERPOLATE, FILLPREVIOUS, FILLNEXT and FILLVALUE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tsq.errors import BadRequest
from tsq.kernels.aggregate import Aggregator, reduce_segments
from tsq.series import SeriesSet

__all__ = ["FILLS", "MAX_GRID_CELLS", "Buckets", "Closed", "Fill", "Label", "bucket_index",
           "bucketize"]

Ints = npt.NDArray[np.int64]
Array = npt.NDArray[Any]

FILLS = ("none", "previous", "next", "interpolate", "auto", "value")
AUTO = ("interpolate", "previous", "next")
MAX_GRID_CELLS = 200_000_000  # series by buckets a fill may materialise (1.6 GB of float64)


@dataclass(frozen=True)
class Fill:
    policy: str  # one of FILLS
    value: float = np.nan  # for "value"

    def __post_init__(self) -> None:
        if self.policy not in FILLS:
            raise BadRequest(f"unknown fill policy {self.policy!r}; expected one of "
                             f"{', '.join(FILLS)}")


Closed = Literal["left", "right"]
Label = Literal["start", "end"]
# Bucket k starts at anchor + k·span when closed on the left (k is the floor of
# (t - anchor) / span) and ends there when closed on the right (the ceiling); its tick is the
# labelling edge, this many spans from that boundary.
TICK_SHIFT: dict[tuple[Closed, Label], int] = {
    ("left", "start"): 0, ("right", "end"): 0, ("left", "end"): 1, ("right", "start"): -1}


@dataclass(frozen=True)
class Buckets:
    span: int  # nanoseconds
    anchor: int = 0  # a bucket boundary, epoch ns
    closed: Closed = "left"
    first: int | None = None  # the first bucket's tick: fixes the grid
    last: int | None = None  # the last bucket's tick
    label: Label | None = None  # None: the closed side's edge (left: start, right: end)

    def __post_init__(self) -> None:
        if self.span <= 0:
            raise BadRequest(f"a bucket span must be positive, got {self.span} ns")
        if (self.first is None) != (self.last is None):
            raise BadRequest("give both the first and the last bucket, or neither")
        if self.label is None:
            object.__setattr__(self, "label", "start" if self.closed == "left" else "end")
        if (self.closed, self.label) not in TICK_SHIFT:
            raise BadRequest(f"buckets are closed on the left or the right and labelled by their "
                             f"start or end, not closed={self.closed!r}, label={self.label!r}")

    @property
    def shift(self) -> int:
        return TICK_SHIFT[(self.closed, self.label or "start")]  # label is set by now

    def tick(self, index: Ints) -> Ints:
        return self.anchor + (index + self.shift) * self.span

    @property
    def bounds(self) -> tuple[int, int] | None:
        """The indices of the first and the last bucket of a fixed grid."""
        if self.first is None or self.last is None:
            return None
        ticks = np.array([self.first, self.last], np.int64)
        low, high = bucket_index(ticks, self) - self.shift
        return int(low), int(high)

    def edges(self, low: int, high: int) -> tuple[int, int]:
        """Buckets low..high hold the points in (a, b]; for integer times [s, e) is
        (s - 1, e - 1]."""
        if self.closed == "right":
            return self.anchor + (low - 1) * self.span, self.anchor + high * self.span
        return self.anchor + low * self.span - 1, self.anchor + (high + 1) * self.span - 1


EXACT_FLOAT = 2**52  # below this, int64 → float64 is exact and so is floor(x / span)
CHUNK = 1 << 16  # points per pass: scratch arrays stay in cache and are allocated once


def bucket_index(timestamps: Ints, buckets: Buckets) -> Ints:
    """The bucket of each timestamp, counted in spans from the anchor."""
    if len(timestamps) == 0:
        return np.empty(0, np.int64)
    index = np.empty(len(timestamps), np.int64)
    _Indexer(buckets, int(timestamps.min()), int(timestamps.max())).into(timestamps, index)
    return index


class _Indexer:
    """Bucket indices for timestamps within [low, high], fast.

    int64 division is several times slower than float division; within 2^52 ns (52 days) of
    the first bucket the float quotient rounds to the right bucket every time, so that range
    takes the float path and anything wider the exact integer one.
    """

    def __init__(self, buckets: Buckets, low: int, high: int) -> None:
        self.span, self.right, self.anchor = buckets.span, buckets.closed == "right", \
            buckets.anchor
        self.base = (low - buckets.anchor) // buckets.span  # whole spans to the data
        self.origin = buckets.anchor + self.base * buckets.span
        self.exact = high - self.origin < EXACT_FLOAT and buckets.span < EXACT_FLOAT
        self.quotient = np.empty(CHUNK, np.float64)

    def into(self, stamps: Ints, out: Ints) -> None:
        for first in range(0, len(stamps), CHUNK):
            last = min(len(stamps), first + CHUNK)
            self._chunk(stamps[first:last], out[first:last])

    def relative(self, stamps: Ints) -> npt.NDArray[np.float64]:
        """Exact mode: bucket indices minus `base`, as floats, in a scratch array."""
        quotient = self.quotient[:len(stamps)]
        np.subtract(stamps, self.origin, out=quotient, casting="unsafe")
        quotient /= self.span
        (np.ceil if self.right else np.floor)(quotient, out=quotient)
        return quotient

    def _chunk(self, stamps: Ints, out: Ints) -> None:
        if self.exact:
            np.copyto(out, self.relative(stamps), casting="unsafe")
            out += self.base
        elif self.right:
            out[:] = -((self.anchor - stamps) // self.span)
        else:
            out[:] = (stamps - self.anchor) // self.span


def bucketize(series: SeriesSet, buckets: Buckets, agg: Aggregator,
              fills: Sequence[Fill] = ()) -> SeriesSet:
    values, stamps, offsets = series.values, series.timestamps, series.offsets
    bounds = buckets.bounds
    keep = _kept(values, stamps, offsets, buckets) if len(values) else None
    if keep is not None:
        values, stamps, offsets = values[keep], stamps[keep], _kept_offsets(offsets, keep)
    starts, column = _segments(stamps, offsets, buckets)
    reduced = reduce_segments(values, starts, agg)
    counts = np.diff(np.searchsorted(starts, offsets)).astype(np.int64)
    policies = _policies(fills)
    row: Ints | None = None
    if policies:
        row = np.repeat(np.arange(len(series), dtype=np.int64), counts)
        row, column, reduced = _filled(len(series), row, column, reduced, policies, bounds)
    if reduced.dtype.kind == "f" and np.isnan(reduced).any():
        # A bucket whose points have no aggregate (the stddev of one point) is left out, after
        # the fills: it had points, so no fill writes over it (as in InfluxDB).
        if row is None:
            row = np.repeat(np.arange(len(series), dtype=np.int64), counts)
        defined = ~np.isnan(reduced)
        row, column, reduced = row[defined], column[defined], reduced[defined]
    if row is not None:
        counts = np.bincount(row, minlength=len(series)).astype(np.int64)
    return SeriesSet(series.names, series.labels, buckets.tick(column), reduced,
                     np.concatenate(([0], np.cumsum(counts))).astype(np.int64))


def _kept(values: Array, stamps: Ints, offsets: Ints, buckets: Buckets
          ) -> npt.NDArray[np.bool_] | None:
    """Which points to aggregate (not NaN, inside a fixed grid); None when all of them."""
    keep = None
    if values.dtype.kind == "f" and any(np.isnan(values[a:a + CHUNK]).any()
                                        for a in range(0, len(values), CHUNK)):
        keep = ~np.isnan(values)
    bounds = buckets.bounds
    if bounds is not None:
        low, high = buckets.edges(*bounds)
        nonempty = offsets[:-1] < offsets[1:]
        firsts, lasts = stamps[offsets[:-1][nonempty]], stamps[offsets[1:][nonempty] - 1]
        if len(firsts) and (firsts.min() <= low or lasts.max() > high):
            inside = (stamps > low) & (stamps <= high)
            keep = inside if keep is None else keep & inside
    return keep


def _kept_offsets(offsets: Ints, keep: npt.NDArray[np.bool_]) -> Ints:
    kept_before = np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))
    return kept_before[offsets]


def _segments(stamps: Ints, offsets: Ints, buckets: Buckets) -> tuple[Ints, Ints]:
    """Where each (series, bucket) run of points starts, and its bucket index.

    Works through the points in chunks with scratch arrays allocated once: a full-size
    temporary per step would cost more in fresh memory pages than the arithmetic itself.
    """
    total = len(stamps)
    if total == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    nonempty = offsets[:-1] < offsets[1:]
    low = int(stamps[offsets[:-1][nonempty]].min())
    high = int(stamps[offsets[1:][nonempty] - 1].max())
    indexer = _Indexer(buckets, low, high)
    series_starts = offsets[1:-1]
    index = np.empty(CHUNK, np.int64)
    change = np.empty(CHUNK, dtype=bool)
    starts: list[Ints] = []
    columns: list[Ints] = []
    previous: float | None = None
    for first in range(0, total, CHUNK):
        last = min(total, first + CHUNK)
        size = last - first
        changed = change[:size]
        if indexer.exact:  # compare the float quotients: two passes fewer than integers
            here: npt.NDArray[Any] = indexer.relative(stamps[first:last])
        else:
            here = index[:size]
            indexer.into(stamps[first:last], here)
        np.not_equal(here[1:], here[:-1], out=changed[1:])
        changed[0] = previous is None or here[0] != previous
        begins = series_starts[np.searchsorted(series_starts, first):
                               np.searchsorted(series_starts, last)]
        changed[begins - first] = True
        local = np.flatnonzero(changed)
        starts.append(local + first)
        columns.append(here[local].astype(np.int64) + (indexer.base if indexer.exact else 0))
        previous = here[-1]
    return np.concatenate(starts).astype(np.int64), np.concatenate(columns)


def _policies(fills: Sequence[Fill]) -> list[Fill]:
    expanded: list[Fill] = []
    for fill in fills:
        if fill.policy == "auto":
            expanded.extend(Fill(policy) for policy in AUTO)
        elif fill.policy != "none":
            expanded.append(fill)
    return expanded


def _filled(rows: int, row: Ints, column: Ints, values: Array, policies: list[Fill],
            bounds: tuple[int, int] | None) -> tuple[Ints, Ints, Array]:
    """Fill the empty cells of the (series by bucket) grid; the filled cells, row-major."""
    if len(row) == 0 and bounds is None:
        return row, column, values
    low, high = bounds if bounds is not None else (int(column.min()), int(column.max()))
    width = high - low + 1
    if rows * width > MAX_GRID_CELLS:
        raise BadRequest(f"filling {rows} series over {width} buckets is too large "
                         f"(at most {MAX_GRID_CELLS} cells); use a larger span or a shorter "
                         f"range")
    grid = np.full((rows, width), np.nan if values.dtype.kind == "f" else None,
                   dtype=values.dtype if values.dtype.kind == "f" else object)
    valid = np.zeros((rows, width), dtype=bool)
    grid[row, column - low] = values
    valid[row, column - low] = True
    allowed = _allowed(valid, bounds is not None)
    for fill in policies:
        grid, valid = _FILLERS[fill.policy](grid, valid, fill)
        valid &= allowed
    cell_row, cell_column = np.nonzero(valid)
    return (cell_row.astype(np.int64), (cell_column + low).astype(np.int64),
            grid[cell_row, cell_column])


def _allowed(valid: npt.NDArray[np.bool_], fixed: bool) -> npt.NDArray[np.bool_]:
    """The cells a fill may write: all of a fixed grid, else each row's first to last bucket."""
    if fixed:
        return np.ones_like(valid)
    seen = np.logical_or.accumulate(valid, axis=1)
    seen_after = np.logical_or.accumulate(valid[:, ::-1], axis=1)[:, ::-1]
    return seen & seen_after


def _previous_index(valid: npt.NDArray[np.bool_]) -> Ints:
    """Per cell, the column of the nearest valid cell at or before it (-1: none)."""
    columns = np.where(valid, np.arange(valid.shape[1]), -1)
    return np.maximum.accumulate(columns, axis=1)


def _next_index(valid: npt.NDArray[np.bool_]) -> Ints:
    """Per cell, the column of the nearest valid cell at or after it (-1: none)."""
    mirrored = _previous_index(valid[:, ::-1])
    return np.where(mirrored >= 0, valid.shape[1] - 1 - mirrored, -1)[:, ::-1]


def _take(grid: Array, source: Ints) -> Array:
    rows = np.arange(grid.shape[0])[:, None]
    return grid[rows, np.maximum(source, 0)]


def _fill_previous(grid: Array, valid: npt.NDArray[np.bool_], _fill: Fill
                   ) -> tuple[Array, npt.NDArray[np.bool_]]:
    source = _previous_index(valid)
    return _take(grid, source), source >= 0


def _fill_next(grid: Array, valid: npt.NDArray[np.bool_], _fill: Fill
               ) -> tuple[Array, npt.NDArray[np.bool_]]:
    source = _next_index(valid)
    return _take(grid, source), source >= 0


def _fill_interpolate(grid: Array, valid: npt.NDArray[np.bool_], _fill: Fill
                      ) -> tuple[Array, npt.NDArray[np.bool_]]:
    if grid.dtype.kind != "f":
        return grid, valid  # only numbers interpolate
    before, after = _previous_index(valid), _next_index(valid)
    inner = ~valid & (before >= 0) & (after >= 0)
    if not inner.any():
        return grid, valid
    left, right = _take(grid, before), _take(grid, after)
    position = np.arange(grid.shape[1])[None, :]
    span = np.maximum(after - before, 1)
    interpolated = left + (right - left) * (position - before) / span
    return np.where(inner, interpolated, grid), valid | inner


def _fill_value(grid: Array, valid: npt.NDArray[np.bool_], fill: Fill
                ) -> tuple[Array, npt.NDArray[np.bool_]]:
    return np.where(valid, grid, fill.value), np.ones_like(valid)


_FILLERS = {"previous": _fill_previous, "next": _fill_next,
            "interpolate": _fill_interpolate, "value": _fill_value}
