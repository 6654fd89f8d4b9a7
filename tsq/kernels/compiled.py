"""The bucket pass over runs compiled to machine code (numba), for reads of millions of points.

numpy reduces a part of a store's read in about ten passes over it (bucket numbers by division,
run boundaries, `reduceat`), some 9 ns a point; one compiled pass that keeps the current bucket's
edges and divides only when a point leaves them takes a run at a time and a fraction of that.
numba compiles it on first use (a second or two, then cached on disk beside this file or in
numba's user cache) and lets go of the GIL, so the parts of a read run on every core. The module
is imported only for parts this large: small reads never pay for loading numba.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.jit import machine_code

__all__ = ["OPS", "accumulate", "bucket_at", "cell_op", "combined", "fold_row", "grouped_cells",
           "held_cells", "reduce_runs", "series_segments"]

# How a run's values are combined: sum (sum and mean), min, max, or only counted
OPS = {"sum": 0, "mean": 0, "min": 1, "max": 2, "count": 3}


@machine_code
def bucket_at(stamp: int, anchor: int, span: int, right: bool
              ) -> tuple[int, int]:  # pragma: no cover - compiled
    """The bucket that holds `stamp`, and where its times end, as a half-open [.., high)."""
    if right:  # (anchor + (b - 1) span, anchor + b span]: the ceiling
        bucket = -((anchor - stamp) // span)
        return bucket, anchor + bucket * span + 1
    bucket = (stamp - anchor) // span  # [anchor + b span, anchor + (b + 1) span): the floor
    return bucket, anchor + (bucket + 1) * span


@machine_code
def _reduce_runs(ids: Any, stamps: Any, values: Any, rank_of: Any, ranked: bool, anchor: int,
                 span: int, right: bool, first: int, width: int, op: int
                 ) -> tuple[Any, Any, Any]:  # pragma: no cover - compiled, tested through
    n = len(ids)
    keys = np.empty(n, np.int64)
    reduced = np.empty(n, np.float64)
    counts = np.empty(n, np.float64)
    runs = 0
    current = -1
    low = 1  # the current bucket holds [low, high): none yet
    high = 0
    bucket = 0
    total = 0.0  # the current run's sum, extreme and number of points, kept in registers
    count = 0
    for i in range(n):
        series = ids[i]
        stamp = stamps[i]
        value = values[i]
        if series != current or stamp < low or stamp >= high:
            if count:  # the run before ends
                reduced[runs] = total
                counts[runs] = count
                runs += 1
            # a new run: its bucket, and that bucket's edges as a half-open [low, high); in
            # time order it is mostly the next one, found without a division
            if series == current and high <= stamp < high + span:
                bucket += 1
                high += span
            else:
                bucket, high = bucket_at(stamp, anchor, span, right)
            low = high - span
            current = series
            rank = rank_of[series] if ranked else series
            keys[runs] = rank * width + (bucket - first)
            total = value
            count = 1
        else:
            count += 1
            if op == 0:
                total += value
            elif op == 1:
                total = min(total, value)
            elif op == 2:
                total = max(total, value)
    if count:
        reduced[runs] = total
        counts[runs] = count
        runs += 1
    if op == 3:
        reduced[:runs] = counts[:runs]
    return keys[:runs], reduced[:runs], counts[:runs]


def reduce_runs(ids: npt.NDArray[np.integer[Any]], stamps: npt.NDArray[np.int64],
                values: npt.NDArray[np.float64], rank_of: npt.NDArray[np.integer[Any]] | None,
                anchor: int, span: int, right: bool, first: int, width: int, agg: str
                ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64],
                           npt.NDArray[np.float64]]:
    """Each run's cell (`rank * width + bucket - first`; the rank is `rank_of[id]`, or the id
    when None), its aggregate (`agg` of `OPS`) and its number of points. A run is a stretch of
    points of one series in one bucket, whatever the order of the part; a point with no run
    to join starts one. NaN points must be out already."""
    # one machine-code version per type of ids (int32 from DuckDB and the head, or int64):
    # each new combination of types is compiled again, a second or two
    table = np.zeros(1, np.int64) if rank_of is None else rank_of.astype(np.int64, copy=False)
    if ids.dtype != np.int32:
        ids = ids.astype(np.int64, copy=False)
    keys, reduced, counts = _reduce_runs(ids, stamps, np.ascontiguousarray(values, np.float64),
                                         table, rank_of is not None, anchor, span, right, first,
                                         width, OPS[agg])
    return keys, reduced, counts


@machine_code
def _series_segments(stamps: Any, values: Any, offsets: Any, low: int, high: int, anchor: int,
                     span: int, right: bool, op: int, starts: Any, columns: Any, reduced: Any,
                     per_series: Any) -> int:  # pragma: no cover - compiled, tested through
    """`series_segments` for the series from `low` to `high`, into the arrays from 0."""
    how = 0 if op == 4 else op  # how a point joins its segment's total: a mean's is a sum
    runs = 0
    for series in range(low, high):
        before = runs
        first, last = offsets[series], offsets[series + 1]
        if first < last:
            bucket, ends = bucket_at(stamps[first], anchor, span, right)
            starts[runs] = first
            columns[runs] = bucket
            total = values[first] if op >= 0 else 0.0
            count = 1
            for i in range(first + 1, last):
                stamp = stamps[i]
                if stamp >= ends:  # the times are sorted: the bucket is over
                    if op >= 0:
                        reduced[runs] = _aggregate(total, count, op)
                    runs += 1
                    if stamp < ends + span:  # mostly the next one: no division
                        bucket += 1
                        ends += span
                    else:
                        bucket, ends = bucket_at(stamp, anchor, span, right)
                    starts[runs] = i
                    columns[runs] = bucket
                    count = 1
                    if op >= 0:
                        total = values[i]
                elif op >= 0:
                    count += 1
                    total = combined(total, values[i], how)
            if op >= 0:
                reduced[runs] = _aggregate(total, count, op)
            runs += 1
        per_series[series] = runs - before
    return runs


def series_segments(stamps: npt.NDArray[np.int64], values: npt.NDArray[np.float64],
                    offsets: npt.NDArray[np.int64], series: tuple[int, int], anchor: int,
                    span: int, right: bool, agg: str | None, starts: npt.NDArray[np.int64],
                    columns: npt.NDArray[np.int64], reduced: npt.NDArray[np.float64],
                    per_series: npt.NDArray[np.int64]) -> int:
    """The (series, bucket) segments of the sorted points of the series from `series[0]` to
    `series[1]` (of a SeriesSet's `offsets`), in one pass: where each begins (`starts`), its
    bucket (`columns`), its aggregate (`reduced`) when `agg` is one of `cell_op`'s (None: the
    caller reduces the segments itself, `values` and `reduced` unused), written from the
    arrays' first element; and how many each series has (`per_series[series]`). Returns how
    many segments it wrote; the arrays must have room for them."""
    op = -1 if agg is None else cell_op(agg)
    return int(_series_segments(stamps, values, offsets, series[0], series[1], anchor, span,
                                right, op, starts, columns, reduced, per_series))


@machine_code
def _add_into_cells(ids: Any, stamps: Any, values: Any, rank_of: Any, ranked: bool, anchor: int,
                span: int, right: bool, first: int, width: int, op: int, bounded: bool,
                after: int, upto: int, totals: Any, counts: Any
                ) -> None:  # pragma: no cover - compiled, tested through accumulate
    """Each point of ids, stamps, values added into its cell of `totals` and `counts`
    (`accumulate`); those off (after, upto] left out when `bounded`."""
    placed = False  # the current bucket holds [low, high), once a point placed one
    low = 0
    high = 0
    bucket = 0
    current = -1
    cell = 0
    for i in range(len(ids)):
        value = values[i]
        if np.isnan(value):  # no aggregate takes it
            continue
        stamp = stamps[i]
        if bounded and (stamp <= after or stamp > upto):
            continue
        series = ids[i]
        if not placed or stamp < low or stamp >= high:
            # the bucket depends on the time alone: in time order (a chunk of one series, or
            # time-major points of many) it is mostly the same or the next, found without a
            # division
            if placed and high <= stamp < high + span:
                bucket += 1
                high += span
            else:
                bucket, high = bucket_at(stamp, anchor, span, right)
            low = high - span
            placed = True
            current = -1
        if series != current:
            current = series
            rank = rank_of[series] if ranked else series
            cell = rank * width + (bucket - first)
        counts[cell] += 1.0
        if op == 0:
            totals[cell] += value
        elif op == 1:
            totals[cell] = min(totals[cell], value)
        elif op == 2:
            totals[cell] = max(totals[cell], value)


def accumulate(ids: npt.NDArray[np.integer[Any]], stamps: npt.NDArray[np.int64],
               values: npt.NDArray[np.float64], rank_of: npt.NDArray[np.integer[Any]] | None,
               anchor: int, span: int, right: bool, first: int, width: int, agg: str,
               bounds: tuple[int, int] | None, totals: npt.NDArray[np.float64],
               counts: npt.NDArray[np.float64]) -> None:
    """Every point (ids, times, values; in any order) added into its cell (`rank * width +
    bucket - first`) of two dense arrays: `totals`, the cells' aggregate (`agg` of `OPS`: the
    sum for sum and mean, the extreme for min and max, unused for count), and `counts`, their
    number of points. NaN points and those off the fixed grid (`bounds`: (low, high]) are left
    out. One pass a point and no array a point: what the parts of a read of millions of points
    into a grid no sparser than them need."""
    table = np.zeros(1, np.int64) if rank_of is None else rank_of.astype(np.int64, copy=False)
    after, upto = bounds if bounds is not None else (0, 0)
    _add_into_cells(ids if ids.dtype == np.int32 else ids.astype(np.int64, copy=False), stamps,
                   np.ascontiguousarray(values, np.float64), table, rank_of is not None,
                   anchor, span, right, first, width, OPS[agg], bounds is not None, after,
                   upto, totals, counts)


@machine_code
def _held(totals: Any, counts: Any, width: int, op: int, rows: Any, columns: Any,
          aggregates: Any) -> int:  # pragma: no cover - compiled, tested through held_cells
    held = 0
    for row in range(len(counts) // width):
        cells = row * width
        before = held
        for column in range(width):  # no division a cell
            count = counts[cells + column]
            if count:
                columns[held] = column
                aggregates[held] = _aggregate(totals[cells + column], count, op)
                held += 1
        rows[row] = held - before
    return held


@machine_code
def _aggregate(total: float, count: float, op: int) -> float:  # pragma: no cover - compiled
    """A cell's aggregate from its total and its number of points (`op` as in _held)."""
    if op == 3:
        return count
    if op == 4:
        return total / count
    return total


@machine_code
def _grouped(totals: Any, counts: Any, width: int, op: int, group_of: Any, group_op: int,
             group_totals: Any, group_counts: Any) -> None:  # pragma: no cover - compiled
    for row in range(len(counts) // width):
        fold_row(totals, counts, row * width, width, op, group_of[row] * width, group_op,
                 group_totals, group_counts)


@machine_code
def fold_row(totals: Any, counts: Any, cells: int, width: int, op: int, into: int,
             group_op: int, group_totals: Any,
             group_counts: Any) -> None:  # pragma: no cover - compiled
    """The `width` cells of a series from `cells` reduced into its group's from `into`
    (`grouped_cells`)."""
    for column in range(width):
        count = counts[cells + column]
        if not count:
            continue
        value = _aggregate(totals[cells + column], count, op)
        if np.isnan(value):  # as group_by, which leaves NaN out
            continue
        group_counts[into + column] += 1.0
        group_totals[into + column] = combined(group_totals[into + column], value, group_op)


@machine_code
def combined(total: float, value: float, op: int) -> float:  # pragma: no cover - compiled
    """A sum (op 0), a minimum (1) or a maximum (2) with one more value; a count's (3) unused."""
    if op == 0:
        return total + value
    if op == 1:
        return min(total, value)
    if op == 2:
        return max(total, value)
    return total


def grouped_cells(totals: npt.NDArray[np.float64], counts: npt.NDArray[np.float64], width: int,
                  agg: str, group_of: npt.NDArray[np.int64], group_op: int,
                  group_totals: npt.NDArray[np.float64],
                  group_counts: npt.NDArray[np.float64]) -> None:
    """The dense cells (`accumulate`) of each series (row) reduced into those of its group
    (`group_of[row]`): a group's cell takes the aggregate (`agg`) of every series' cell that
    holds points and is not NaN, into `group_totals` (summed, or the extreme: `group_op` of
    `OPS`) and `group_counts` (how many series)."""
    _grouped(totals, counts, width, cell_op(agg),
             group_of.astype(np.int64, copy=False), group_op, group_totals, group_counts)


def cell_op(agg: str) -> int:
    """How a cell's aggregate comes from its total and count (`_aggregate`), for `agg`."""
    return 4 if agg == "mean" else OPS[agg]


def held_cells(totals: npt.NDArray[np.float64], counts: npt.NDArray[np.float64], width: int,
               agg: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                  npt.NDArray[np.float64]]:
    """The dense cells (`accumulate`) that hold points, row-major: how many in each row (a
    row is `width` cells), each one's column, and its aggregate (the mean divides the sum)."""
    rows = np.zeros(len(counts) // width, np.int64)
    columns = np.empty(len(counts), np.int64)
    aggregates = np.empty(len(counts), np.float64)
    op = cell_op(agg)
    held = _held(totals, counts, width, op, rows, columns, aggregates)
    return rows, columns[:held], aggregates[:held]
