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

import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from tsq.errors import BadRequest
from tsq.kernels.aggregate import CHUNK, Aggregator, reduce_segments
from tsq.kernels.blocks import Blocks
from tsq.series import SeriesSet

__all__ = ["FILLS", "MAX_GRID_CELLS", "Buckets", "Closed", "Fill", "Label", "Points",
           "bucket_index", "bucketize", "bucketize_parts", "bucketize_unordered"]

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

    def tick(self, index: Ints, out: Ints | None = None) -> Ints:
        ticks = np.multiply(index, self.span, out=out)
        ticks += self.anchor + self.shift * self.span
        return ticks

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
    counts, column, reduced = _reduced(series, buckets, agg)
    return _gridded(series, counts, None, column, reduced, buckets, fills)


# What `bucketize_unordered` computes from points in any order: min and max do not care, and a
# bucket's sum adds its points in the order they come (time order, as a store reads them)
UNORDERED = frozenset({"sum", "mean", "count", "min", "max"})
SPARSE_CELLS = 4  # (series by bucket) cells per point above which the grid is too sparse


@dataclass(frozen=True)
class Points:
    """Points of several series in any order: point i belongs to the series `ids[i]` (a rank
    in the SeriesSet, or an id that a `rank_of` table maps to one). `runs`: each series' points
    come in runs (a store's chunk sorted by series), which are reduced first."""

    ids: npt.NDArray[np.integer[Any]]
    stamps: Ints
    values: Array
    runs: bool = False


def bucketize_unordered(series: SeriesSet, rank: npt.NDArray[np.integer[Any]], stamps: Ints,
                        values: Array, buckets: Buckets, agg: Aggregator,
                        fills: Sequence[Fill] = ()) -> SeriesSet | None:
    """`bucketize` of points that are not grouped by series: point i belongs to the series
    `rank[i]` of `series` (whose own points are ignored). A store reads points in the order
    they were written, time-major; grouping them by series costs a sort and three gathers,
    several times the aggregation itself, where here each (series, bucket) cell is a key and
    one `bincount` pass adds them. None when this way does not apply (another aggregator, not
    floats, no points, a grid much sparser than the points): call `bucketize` then."""
    return bucketize_parts(series, [Points(rank, stamps, values)], buckets, agg, fills)


def bucketize_parts(series: SeriesSet, parts: Sequence[Points | Blocks], buckets: Buckets,
                    agg: Aggregator, fills: Sequence[Fill] = (),
                    rank_of: npt.NDArray[np.integer[Any]] | None = None) -> SeriesSet | None:
    """`bucketize_unordered` of points read in parts (a store's table and the chunks of its
    head), none joined to another: `rank_of[ids[i]]` is the series of a part's point i (None:
    the ids are ranks), and a part of compressed blocks (tsq.kernels.blocks) is decoded. A
    large read is added into dense cells by a compiled pass (tsq.kernels.dense; the blocks are
    decoded there a block at a time). Otherwise, in a part of runs, each run of one (series,
    bucket) cell is reduced first (`reduceat`, or one compiled pass for a large part), and the
    cells add up runs, not points. Large reads are reduced on every core (numpy and numba let
    go of the GIL)."""
    if agg.name not in UNORDERED or \
            any(isinstance(p, Points) and p.values.dtype.kind != "f" for p in parts):
        return None
    from tsq.kernels.dense import bucketized, dense_grid

    grid = dense_grid(series, parts, buckets)
    if grid is not None:
        return bucketized(series, parts, buckets, agg, fills, rank_of, grid)
    bounds = buckets.edges(*buckets.bounds) if buckets.bounds is not None else None
    kept = [p for p in (_inside(points_of(part), bounds) for part in parts) if p is not None]
    if not kept:
        return None
    earliest = min(p.low for p in kept)
    latest = max(p.high for p in kept)
    if not _edges_fit(buckets, earliest, latest):
        return None
    first, last = bucket_index(np.array([earliest, latest], np.int64), buckets).tolist()
    width = last - first + 1
    cells = len(series) * width
    if cells > SPARSE_CELLS * sum(len(p.points.stamps) for p in kept) + CHUNK:
        return None
    reduced = _on_cores(lambda p: _reduced_runs(p, buckets, first, width, agg, rank_of), kept)
    key = _joined([r[0] for r in reduced])
    values = _joined([r[1] for r in reduced])
    weights = None if all(r[2] is None for r in reduced) else _joined(
        [np.ones(len(r[0])) if r[2] is None else r[2] for r in reduced])
    held, aggregates = _cells(key, values, cells, agg, weights)
    row, column = np.divmod(held, width)
    column += first
    return _gridded(series, np.bincount(row, minlength=len(series)), row, column, aggregates,
                    buckets, fills)


def points_of(part: Points | Blocks) -> Points:
    """A part as points: blocks decoded, each block a run of its series."""
    if isinstance(part, Points):
        return part
    return Points(*part.decoded(), runs=True)


def _size(part: Points | Blocks) -> int:
    return len(part.stamps) if isinstance(part, Points) else part.points


def _window(parts: Sequence[Points | Blocks], bounds: tuple[int, int] | None
            ) -> tuple[int, int] | None:
    """The earliest and latest times of `parts` inside the fixed grid `bounds` (low, high],
    NaN points or not (for blocks, the first and last times their window may hold); None if
    no part holds a point there."""
    found = [(int(p.stamps.min()), int(p.stamps.max())) if isinstance(p, Points) else p.window()
             for p in parts if _size(p)]
    spans = [span for span in found if span is not None]
    if not spans:
        return None
    earliest, latest = min(low for low, _ in spans), max(high for _, high in spans)
    if bounds is not None:
        earliest, latest = max(earliest, bounds[0] + 1), min(latest, bounds[1])
    return (earliest, latest) if earliest <= latest else None


@dataclass(frozen=True)
class _Kept:
    """A part's points to bucket, and their earliest and latest times."""

    points: Points
    low: int
    high: int


def _inside(part: Points, bounds: tuple[int, int] | None) -> _Kept | None:
    """`part` without NaN points and those off the fixed grid `bounds` (low, high]; None if
    none are left."""
    if not len(part.stamps):
        return None
    keep = ~np.isnan(part.values) if _any_nan(part.values) else None
    low, high = int(part.stamps.min()), int(part.stamps.max())
    if bounds is not None and (low <= bounds[0] or high > bounds[1]):
        inside = (part.stamps > bounds[0]) & (part.stamps <= bounds[1])
        keep = inside if keep is None else keep & inside
    if keep is None:
        return _Kept(part, low, high)
    if not keep.any():
        return None
    stamps = part.stamps[keep]
    return _Kept(Points(part.ids[keep], stamps, part.values[keep], part.runs),
                 int(stamps.min()), int(stamps.max()))


COMPILED_POINTS = 1 << 16  # a part of runs this large is reduced by tsq.kernels.compiled
COMPILED_SEGMENTS = 1 << 16  # a SeriesSet this large is cut into segments by the compiled pass
# Points from which the parts of a read are reduced on every core: the tenth of the rollup
# benchmark's day (864 k points in blocks, 2.7 ms of decoding on one core) took 4.9-5.1 ms a
# query at 1 << 20 and 4.1 at 1 << 18; the threads' hand-off is tens of microseconds
PARALLEL_POINTS = 1 << 18
Reduced = tuple[Ints, Array, Array | None]  # cells, values, weights: see _reduced_runs


def _on_cores(work: Callable[[_Kept], Reduced], kept: Sequence[_Kept]) -> list[Reduced]:
    """`work` on each part, in threads when there is enough to share."""
    if not _parallel([k.points for k in kept]):
        return [work(k) for k in kept]
    return _each_on_a_core(work, kept)


def _parallel(parts: Sequence[Points | Blocks]) -> bool:
    """Whether `parts` are worth sharing out between the cores."""
    return len(parts) >= 2 and _worth_sharing(sum(_size(p) for p in parts))


def _worth_sharing(points: int) -> bool:
    """Whether a read of `points` is worth sharing out between the cores."""
    return points >= PARALLEL_POINTS and (os.cpu_count() or 1) >= 2


_T = TypeVar("_T")
_R = TypeVar("_R")


def _each_on_a_core(work: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """`work` of each of `items` at once: the first on this thread, the others on the kernel
    threads. One thread fewer to wake and wait for: a query of the rollup benchmark's tenth of
    a day (864 k points in blocks, two shares) took 4.07-4.15 ms instead of 4.32."""
    others = [_kernel_threads().submit(work, item) for item in items[1:]]
    try:
        done = [work(items[0])] if items else []
    except BaseException:
        for other in others:  # those not begun yet: the read has failed
            other.cancel()
        raise
    return done + [other.result() for other in others]


@functools.cache
def _kernel_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(os.cpu_count(), thread_name_prefix="tsq-kernels")


def _reduced_runs(kept: _Kept, buckets: Buckets, first: int, width: int, agg: Aggregator,
                  rank_of: npt.NDArray[np.integer[Any]] | None) -> Reduced:
    """Each point's (or run's) cell, its value (or the run's aggregate) and how many points
    it stands for (None: one each). A large part of runs takes the compiled pass; a small one
    numpy's, which needs no numba loaded."""
    part = kept.points
    if part.runs and len(part.ids) >= COMPILED_POINTS:
        from tsq.kernels.compiled import reduce_runs

        return reduce_runs(part.ids, part.stamps, part.values, rank_of, buckets.anchor,
                           buckets.span, buckets.closed == "right", first, width, agg.name)
    ids, values, counts = part.ids, part.values, None
    column = _columns(kept, buckets, first, width)
    if part.runs and len(ids) > 1:
        change = ids[1:] != ids[:-1]
        if column is not None:
            change |= column[1:] != column[:-1]
        starts = np.concatenate(([0], np.flatnonzero(change) + 1))
        counts = np.diff(starts, append=len(ids)).astype(np.float64)
        values = counts if agg.name == "count" else \
            RUN_REDUCERS[agg.name].reduceat(values, starts)
        ids = ids[starts]
        if column is not None:
            column = column[starts]
    key = (ids if rank_of is None else rank_of[ids]).astype(np.int64)
    if column is not None:
        key *= width
        key += column
    return key, values, counts


def _columns(kept: _Kept, buckets: Buckets, first: int, width: int) -> Ints | None:
    """Each point's bucket counted from `first`; None when there is one bucket."""
    if width == 1:
        return None
    column = np.empty(len(kept.points.stamps), np.int64)
    _Indexer(buckets, kept.low, kept.high).into(kept.points.stamps, column)
    column -= first
    return column


# How a run of one cell is reduced before the cells are: sums add, extremes keep theirs
RUN_REDUCERS = {"sum": np.add, "mean": np.add, "min": np.minimum, "max": np.maximum}


def _joined(arrays: list[Array]) -> Array:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _cells(key: npt.NDArray[np.integer[Any]], values: Array, cells: int, agg: Aggregator,
           weights: Array | None = None) -> tuple[Ints, Array]:
    """The cells that hold points (`key`: each point's cell, or each run's, `weights` then its
    number of points) and their aggregates."""
    if weights is None:
        counts = np.bincount(key, minlength=cells)
    else:
        counts = np.bincount(key, weights=weights, minlength=cells)
    held = np.flatnonzero(counts)
    if agg.name in ("sum", "mean"):
        sums = np.asarray(np.bincount(key, weights=values, minlength=cells), np.float64)
        reduced = sums[held]
        if agg.name == "mean":
            reduced = np.divide(reduced, counts[held], out=reduced)
        return held, reduced
    if agg.name == "count":
        return held, counts[held].astype(np.float64)
    extreme = np.full(cells, np.inf if agg.name == "min" else -np.inf)
    (np.minimum if agg.name == "min" else np.maximum).at(extreme, key, values)
    return held, extreme[held]


def _gridded(series: SeriesSet, counts: Ints, row: Ints | None, column: Ints,
             reduced: Array, buckets: Buckets, fills: Sequence[Fill]) -> SeriesSet:
    """The buckets of `series` as a SeriesSet: the aggregate `reduced` of each (series, bucket)
    cell that holds points, row-major; `counts` of them in each series (`row`: the series of
    each, if known), then filled."""
    policies = _policies(fills)
    if policies:
        if row is None:
            row = np.repeat(np.arange(len(series), dtype=np.int64), counts)
        row, column, reduced = _filled(len(series), row, column, reduced, policies,
                                       buckets.bounds)
    if _holds_nan(reduced):
        # A bucket whose points have no aggregate (the stddev of one point) is left out, after
        # the fills: it had points, so no fill writes over it (as in InfluxDB).
        if row is None:
            row = np.repeat(np.arange(len(series), dtype=np.int64), counts)
        defined = ~np.isnan(reduced)
        row, column, reduced = row[defined], column[defined], reduced[defined]
    if row is not None:
        counts = np.bincount(row, minlength=len(series)).astype(np.int64)
    ticks = buckets.tick(column, out=column)  # the bucket numbers are not needed after this
    return SeriesSet(series.names, series.labels, ticks, reduced,
                     np.concatenate(([0], np.cumsum(counts))).astype(np.int64))


# The aggregators whose result is NaN when one of their points is
NAN_SPREADS = frozenset({"sum", "mean", "min", "max", "stddev", "stdvar"})


def _reduced(series: SeriesSet, buckets: Buckets, agg: Aggregator, *, nan: bool = False
             ) -> tuple[Ints, Ints, Array]:
    """The (series, bucket) segments: how many each series has, their buckets and their
    aggregates. NaN points (`nan`: known to be there) and those off a fixed grid are left out.
    Through the aggregators a NaN spreads to, NaN points are looked for among the aggregates,
    six times fewer than the points of a rollup: only when one is NaN are the points checked,
    and if NaN is among them the pass is made again without them."""
    values, stamps, offsets = series.values, series.timestamps, series.offsets
    lazy = agg.name in NAN_SPREADS and not nan
    keep = _kept(values, stamps, offsets, buckets, not lazy) if len(values) else None
    if keep is not None:
        values, stamps, offsets = values[keep], stamps[keep], _kept_offsets(offsets, keep)
    compiled = _segments_compiled(values, stamps, offsets, buckets, agg)
    if compiled is not None:
        counts, column, reduced = compiled
    else:
        bounds, column = _segments(stamps, offsets, buckets)
        starts = bounds[:-1]
        reduced = reduce_segments(values, starts, agg, ends=bounds[1:])
        counts = np.diff(np.searchsorted(starts, offsets)).astype(np.int64)
    if lazy and _holds_nan(reduced) and _any_nan(values):
        return _reduced(SeriesSet(series.names, series.labels, stamps, values, offsets),
                        buckets, agg, nan=True)
    return counts, column, reduced


def _segments_compiled(values: Array, stamps: Ints, offsets: Ints, buckets: Buckets,
                       agg: Aggregator) -> tuple[Ints, Ints, Array] | None:
    """`_reduced`'s segments from one compiled pass over each series' points, which follows
    the current bucket's end and divides only when a point skips buckets; a sum, mean, count,
    min or max of floats is taken in the same pass, any other aggregator reduces the
    segments after. The series are shared out between the cores in ranges of about as many
    points. None for a read too small to load numba for, or at the edges of time."""
    if len(stamps) < max(COMPILED_SEGMENTS, 1):
        return None
    sizes = np.diff(offsets)
    nonempty = np.flatnonzero(sizes)
    firsts, lasts = offsets[:-1][nonempty], offsets[1:][nonempty] - 1
    if not _edges_fit(buckets, int(stamps[firsts].min()), int(stamps[lasts].max())):
        return None
    from tsq.kernels.compiled import OPS, series_segments

    # room for each series' segments: no more than its points, nor than its buckets
    room = np.zeros(len(sizes), np.int64)
    room[nonempty] = np.minimum(sizes[nonempty], bucket_index(stamps[lasts], buckets) -
                                bucket_index(stamps[firsts], buckets) + 1)
    room_from = np.concatenate(([0], np.cumsum(room)))
    folded = agg.name in OPS and values.dtype == np.float64
    starts, column = np.empty(int(room_from[-1]), np.int64), np.empty(int(room_from[-1]), np.int64)
    reduced = np.empty(len(starts) if folded else 0, np.float64)
    counts = np.zeros(len(sizes), np.int64)
    stamps = np.ascontiguousarray(stamps, np.int64)
    source = np.ascontiguousarray(values) if folded else reduced

    def segments(first: int, last: int) -> int:
        at, upto = int(room_from[first]), int(room_from[last])
        return series_segments(stamps, source, offsets, (first, last), buckets.anchor,
                               buckets.span, buckets.closed == "right",
                               agg.name if folded else None, starts[at:upto], column[at:upto],
                               reduced[at:upto] if folded else reduced, counts)

    shares = (os.cpu_count() or 1) if _worth_sharing(len(stamps)) else 1
    cuts = np.searchsorted(offsets, np.arange(1, shares) * (len(stamps) // shares))
    ranges = list(pairwise(sorted({0, *cuts.tolist(), len(sizes)})))
    made = _each_on_a_core(lambda r: segments(*r), ranges)
    held = [slice(int(room_from[a]), int(room_from[a]) + runs)
            for (a, _), runs in zip(ranges, made, strict=True)]
    if sum(made) < len(starts):  # some series had empty buckets: their room is not all used
        starts, column = np.concatenate([starts[h] for h in held]), \
            np.concatenate([column[h] for h in held])
        if folded:
            reduced = np.concatenate([reduced[h] for h in held])
    if not folded:
        reduced = reduce_segments(values, starts, agg)
    return counts, column, reduced


def _holds_nan(values: Array) -> bool:
    """Whether a float array holds NaN: its sum is NaN if it does (a sum makes no array, and
    is NaN otherwise only for +inf and -inf together)."""
    return values.dtype.kind == "f" and bool(np.isnan(np.add.reduce(values))) and \
        bool(np.isnan(values).any())


def _any_nan(values: Array) -> bool:
    """Whether a float array holds NaN, looked for a cache-sized chunk at a time."""
    return values.dtype.kind == "f" and any(np.isnan(values[a:a + CHUNK]).any()
                                            for a in range(0, len(values), CHUNK))


def _kept(values: Array, stamps: Ints, offsets: Ints, buckets: Buckets, nan: bool
          ) -> npt.NDArray[np.bool_] | None:
    """Which points to aggregate (not NaN, if `nan` says to look; inside a fixed grid); None
    when all of them."""
    keep = None
    if nan and _any_nan(values):
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


SEARCH_MIN_POINTS = 2  # points per bucket from which bucket starts are searched for
GUESS_SLACK = 1e-9  # of a point: above a guess's rounding (series of up to ~10^6 points),
# below the offsets of real points from a boundary; a guess it tips wrong is a miss, bisected


def _segments(stamps: Ints, offsets: Ints, buckets: Buckets) -> tuple[Ints, Ints]:
    """Where each (series, bucket) run of points starts, then the number of points (where the
    last run ends); and the bucket index of each run.

    With several points per bucket (as a rollup reads them), the buckets' boundaries are
    searched for: a few passes per bucket instead of a few per point. Sparse points (buckets
    between them empty) are scanned instead, every point's bucket computed.
    """
    if len(stamps) == 0:
        return np.zeros(1, np.int64), np.empty(0, np.int64)
    nonempty = np.flatnonzero(offsets[:-1] < offsets[1:])
    firsts, lasts = offsets[:-1][nonempty], offsets[1:][nonempty] - 1
    low, high = int(stamps[firsts].min()), int(stamps[lasts].max())
    if _edges_fit(buckets, low, high):
        first_bucket = bucket_index(stamps[firsts], buckets)
        per_series = bucket_index(stamps[lasts], buckets) - first_bucket + 1
        if len(stamps) >= SEARCH_MIN_POINTS * int(per_series.sum()):
            return _segments_searched(stamps, firsts, lasts, first_bucket, per_series, buckets)
    return _segments_scanned(stamps, offsets, buckets, low, high)


def _edges_fit(buckets: Buckets, low: int, high: int) -> bool:
    """Whether the bucket boundaries from `low` to `high`, and their distances from the points,
    are int64s (not so at the edges of time with a large span)."""
    first = buckets.anchor + ((low - buckets.anchor) // buckets.span - 1) * buckets.span
    last = buckets.anchor + ((high - buckets.anchor) // buckets.span + 1) * buckets.span
    return first >= -(2**62) and last < 2**62


def _segments_searched(stamps: Ints, firsts: Ints, lasts: Ints, first_bucket: Ints,
                       per_series: Ints, buckets: Buckets) -> tuple[Ints, Ints]:
    """`_segments` from the bucket boundaries: where, in each series, each bucket from the one
    of its first point to the one of its last begins. Buckets without points begin where the
    next one does, and are dropped.

    A group of series at a time, about CHUNK buckets, in scratch arrays allocated once: a
    full-size temporary per step would cost fresh pages (zeroed by the kernel), more time than
    the arithmetic on them."""
    stamps = np.ascontiguousarray(stamps, dtype=np.int64)  # `_neighbours` reads its memory
    ends = np.cumsum(per_series)
    bounds, column = np.empty(int(ends[-1]) + 1, np.int64), np.empty(int(ends[-1]), np.int64)
    bounds[-1] = len(stamps)
    start = bounds[:-1]
    cuts = np.searchsorted(ends, np.arange(CHUNK, int(ends[-1]), CHUNK)) + 1
    groups = np.unique(np.minimum(np.concatenate(([0], cuts, [len(firsts)])),
                                  len(firsts))).tolist()
    spans = [(int(ends[a] - per_series[a]), int(ends[b - 1])) for a, b in pairwise(groups)]
    scratch = _Scratch.of(max(high - low for low, high in spans))
    exact = True  # every start found where it was guessed, in series known to be gapless
    for (a, b), (low, high) in zip(pairwise(groups), spans, strict=True):
        exact &= _group_starts(stamps, firsts[a:b], lasts[a:b], first_bucket[a:b],
                               per_series[a:b], buckets, start[low:high], column[low:high],
                               scratch)
    if exact:
        return bounds, column
    begun = np.ones(len(start), dtype=bool)
    np.not_equal(start[:-1], start[1:], out=begun[:-1])  # an empty bucket: the next begins here
    if begun.all():
        return bounds, column
    return bounds[np.append(begun, True)], column[begun]


@dataclass(frozen=True)
class _Scratch:
    """The arrays a group of series works in, as long as the largest group."""

    counting: Ints  # 0, 1, 2, …
    edge: Ints
    index: Ints
    guess: npt.NDArray[np.float64]
    missed: npt.NDArray[np.bool_]
    late: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, size: int) -> _Scratch:
        return cls(np.arange(size), np.empty(size, np.int64), np.empty(size, np.int64),
                   np.empty(size), np.empty(size, bool), np.empty(size, bool))


def _group_starts(stamps: Ints, firsts: Ints, lasts: Ints, first_bucket: Ints,
                  per_series: Ints, buckets: Buckets, found: Ints, column: Ints,
                  scratch: _Scratch) -> bool:
    """For a group of series, the bucket of each of their buckets (`column`) and where it
    begins in its series (`found`, the `searchsorted` of its boundary), all series at once.
    True if no bucket is empty, as far as it is cheap to know: aligned series whose first has
    none, and where every guess was right.

    The position is first guessed as if the series' points were evenly spaced, which they
    nearly always are, then checked against the points on either side of it, both read by one
    gather (a binary search would read a dozen); only the guesses that miss are bisected. A
    guess past its series reads the series' last point as the one before: a miss too."""
    size = len(column)
    edge, index = scratch.edge[:size], scratch.index[:size]
    missed, late = scratch.missed[:size], scratch.late[:size]
    right = buckets.closed == "right"
    heads = np.cumsum(per_series) - per_series
    gapless = _aligned(stamps, firsts, lasts)
    if gapless:
        gapless = _aligned_guess(stamps, firsts, lasts, first_bucket, buckets, found, column,
                                 edge, scratch)
    else:
        _guess(stamps, firsts, lasts, first_bucket, per_series, heads, buckets, found, column,
               edge, scratch)
    np.subtract(found, 1, out=index)
    before, at = _neighbours(stamps, index)
    (np.greater if right else np.greater_equal)(before, edge, out=missed)
    (np.less_equal if right else np.less)(at, edge, out=late)
    missed |= late
    missed[heads] = False
    wrong = np.flatnonzero(missed)
    if len(wrong):
        owner = np.searchsorted(heads, wrong, side="right") - 1
        found[wrong] = _bisect(stamps, firsts[owner] + 1, lasts[owner], edge[wrong], right)
    return gapless and len(wrong) == 0


def _edges(column: Ints, buckets: Buckets, out: Ints) -> Ints:
    """Bucket k begins at the first point at or after anchor + k·span (closed on the left),
    or after anchor + (k - 1)·span (closed on the right): that instant is its edge."""
    np.multiply(column, buckets.span, out=out)
    out += buckets.anchor - (buckets.span if buckets.closed == "right" else 0)
    return out


def _aligned(stamps: Ints, firsts: Ints, lasts: Ints) -> bool:
    """Whether the series have as many points, from the same first to the same last time (as
    series scraped or written together have): then they share their buckets, and the guesses
    of where those begin."""
    counts, low, high = lasts - firsts, stamps[firsts], stamps[lasts]
    return bool((counts == counts[0]).all() and (low == low[0]).all() and
                (high == high[0]).all())


def _aligned_guess(stamps: Ints, firsts: Ints, lasts: Ints, first_bucket: Ints,
                   buckets: Buckets, found: Ints, column: Ints, edge: Ints,
                   scratch: _Scratch) -> bool:
    """`_guess` for aligned series: where the first one's buckets begin, found by
    `searchsorted`, then the same places in the others. Whether the first one's buckets all
    hold points: then so do the others' wherever the guess is right (a bucket the first
    series fills and another leaves empty moves a start)."""
    width = len(column) // len(firsts)
    np.add(scratch.counting[:width], first_bucket[0], out=column[:width])
    _edges(column[:width], buckets, edge[:width])
    side: Literal["left", "right"] = "right" if buckets.closed == "right" else "left"
    begins = np.searchsorted(stamps[firsts[0]:lasts[0] + 1], edge[:width], side=side)
    column.reshape(-1, width)[1:] = column[:width]
    edge.reshape(-1, width)[1:] = edge[:width]
    np.add(begins[None, :], firsts[:, None], out=found.reshape(-1, width))
    return bool(np.all(begins[1:] != begins[:-1]))


def _guess(stamps: Ints, firsts: Ints, lasts: Ints, first_bucket: Ints, per_series: Ints,
           heads: Ints, buckets: Buckets, found: Ints, column: Ints, edge: Ints,
           scratch: _Scratch) -> None:
    """The buckets of the series (`column`), their edges, and where each begins (`found`) if
    the series' points are evenly spaced."""
    right = buckets.closed == "right"
    guess = scratch.guess[:len(column)]
    np.add(scratch.counting[:len(column)], np.repeat(first_bucket - heads, per_series),
           out=column)
    _edges(column, buckets, edge)
    np.subtract(edge, np.repeat(stamps[firsts], per_series), out=found)  # ns after the first
    rate = (lasts - firsts) / np.maximum(stamps[lasts] - stamps[firsts], 1)  # points per ns
    np.multiply(found, np.repeat(rate, per_series), out=guess)
    # Evenly spaced, the bucket begins at point ⌈guess⌉ (left) or ⌊guess⌋ + 1 (right): a
    # boundary often falls on a point, where rounding must not tip the guess past it.
    guess += 1 + GUESS_SLACK if right else -GUESS_SLACK
    (np.floor if right else np.ceil)(guess, out=found, casting="unsafe")
    found += np.repeat(firsts, per_series)
    np.clip(found, 0, len(stamps) - 1, out=found)
    found[heads] = firsts  # a series' first bucket begins at its first point


def _neighbours(stamps: Ints, index: Ints) -> tuple[Ints, Ints]:
    """stamps[index] and stamps[index + 1] in one gather, of 16-byte pairs (at index -1, the
    first is some other point)."""
    pairs = np.ndarray((len(stamps) - 1,), np.complex128, stamps, strides=(8,))
    if len(pairs) == 0:
        return stamps[index], stamps[index + 1]
    both = pairs[index].view(np.int64).reshape(-1, 2)
    return both[:, 0], both[:, 1]


def _after(stamps: Ints, edge: Ints, right: bool) -> npt.NDArray[np.bool_]:
    """Whether each point falls in the bucket that begins at `edge` or after it."""
    return stamps > edge if right else stamps >= edge


def _bisect(stamps: Ints, low: Ints, high: Ints, edge: Ints, right: bool) -> Ints:
    """The first position in [low, high] of a point `_after` its edge (there is one)."""
    low, high = low.copy(), high.copy()
    while True:
        open_ = np.flatnonzero(low < high)
        if len(open_) == 0:
            return low
        middle = (low[open_] + high[open_]) // 2
        later = _after(stamps[middle], edge[open_], right)
        high[open_] = np.where(later, middle, high[open_])
        low[open_] = np.where(later, low[open_], middle + 1)


def _segments_scanned(stamps: Ints, offsets: Ints, buckets: Buckets, low: int, high: int
                      ) -> tuple[Ints, Ints]:
    """`_segments` from every point's bucket. Works through the points in chunks with scratch
    arrays allocated once: a full-size temporary per step would cost more in fresh memory
    pages than the arithmetic itself."""
    total = len(stamps)
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
    starts.append(np.array([total]))
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
