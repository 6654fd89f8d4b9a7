"""Dense cells: a read of millions of points bucketed in (series, bucket) arrays, then its
buckets, or the groups of its buckets, taken out.

A large read into a grid no sparser than its points (a day of 10 s points in 1-minute buckets:
six points a cell) is added into two dense arrays, each cell's aggregate and its number of
points, by one compiled pass a part (tsq.kernels.compiled.accumulate for rows,
tsq.kernels.blocks.accumulate_blocks for compressed blocks, decoded a block at a time): no
key, value and weight arrays a point, no concatenation, no bincount. The cells that hold points
are then gathered row by row (`bucketized`). For TSL's `sampleBy(…).groupBy(…)`
(`bucketize_groups`) the series' cells are reduced into their group's instead, and a read of
blocks alone never makes the series' arrays: each series is bucketed in cells of its own that
stay in the cache, then reduced into its group's.

The parts are shared out between the cores. Blocks of different series add into different
rows, so each core takes a range of series and adds into the same arrays; parts that may meet
in a cell (rows in any order, or the blocks of one long series) are added into arrays of their
own, combined at the end.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.kernels.aggregate import Aggregator
from tsq.kernels.blocks import EMPTY_CELL, Blocks
from tsq.kernels.buckets import (
    Buckets,
    Fill,
    Points,
    _each_on_a_core,
    _edges_fit,
    _gridded,
    _parallel,
    _policies,
    _size,
    _window,
    _worth_sharing,
    bucket_index,
)
from tsq.kernels.group import Grouping
from tsq.series import SeriesSet

__all__ = ["DenseGrid", "bucketize_groups", "bucketized", "dense_grid"]

Array = npt.NDArray[Any]
Ranks = npt.NDArray[np.integer[Any]] | None

DENSE_POINTS = 1 << 16  # points of a read from which it may be added into dense cells
DENSE_CELLS = 2  # cells a point up to which it is (a sparser grid goes the way of runs)
# How the shares' dense arrays of a cell's aggregate are combined (count's go unused)
COMBINE = {"sum": np.add, "mean": np.add, "count": np.add, "min": np.minimum,
           "max": np.maximum}
# The aggregators a group takes from its series' cells here (others: bucketize, then group_by)
GROUPED = frozenset({"sum", "mean", "count", "min", "max"})
# How much more than an even share the heaviest range of series may hold for the cores to add
# into the same arrays; a read more lopsided (one long series) is shared out by points instead
EVEN_ENOUGH = 1.5


@dataclass(frozen=True)
class DenseGrid:
    """The cells of a read: `width` buckets a series from bucket `first`; `bounds`, the
    fixed grid's (low, high] (None: no fixed grid)."""

    first: int
    width: int
    bounds: tuple[int, int] | None


def dense_grid(series: SeriesSet, parts: Sequence[Points | Blocks], buckets: Buckets
               ) -> DenseGrid | None:
    """The dense cells of a read of `parts` for the series `series`, if it is large enough
    (DENSE_POINTS) and its grid no sparser than DENSE_CELLS cells a point; else None."""
    points = sum(_size(p) for p in parts)
    if points < DENSE_POINTS:
        return None
    bounds = buckets.edges(*buckets.bounds) if buckets.bounds is not None else None
    window = _window(parts, bounds)
    if window is None or not _edges_fit(buckets, *window):
        return None
    first, last = bucket_index(np.array(window, np.int64), buckets).tolist()
    if len(series) * (last - first + 1) > DENSE_CELLS * points:
        return None
    return DenseGrid(first, last - first + 1, bounds)


def bucketized(series: SeriesSet, parts: Sequence[Points | Blocks], buckets: Buckets,
               agg: Aggregator, fills: Sequence[Fill], rank_of: Ranks,
               grid: DenseGrid) -> SeriesSet | None:
    """`bucketize_parts` through the dense cells: the cells that hold points, row by row,
    then filled. None if no point is left."""
    from tsq.kernels.compiled import held_cells

    totals, counts = _cells(len(series), parts, buckets, agg, rank_of, grid)
    rows, column, aggregates = held_cells(totals, counts, grid.width, agg.name)
    if not len(column):
        return None
    column += grid.first
    return _gridded(series, rows, None, column, aggregates, buckets, fills)


def bucketize_groups(series: SeriesSet, parts: Sequence[Points | Blocks], buckets: Buckets,
                     agg: Aggregator, fills: Sequence[Fill], rank_of: Ranks,
                     group: Grouping) -> SeriesSet | None:
    """`group.apply(bucketize_parts(…))` of a large read: each series' cells reduced into
    its group's cells by one compiled pass (a group's cell takes the aggregates of the
    series' cells that hold points), without making the series' buckets. None where this way
    does not apply (a small or sparse read, fills, an aggregator of another kind): bucketize,
    then group."""
    from tsq.kernels.compiled import OPS, grouped_cells, held_cells

    if agg.name not in COMBINE or group.aggregator.name not in GROUPED or _policies(fills) or \
            any(isinstance(p, Points) and p.values.dtype.kind != "f" for p in parts):
        return None
    grid = dense_grid(series, parts, buckets)
    if grid is None:
        return None
    classes = group.classes(series)
    cells = len(classes.labels) * grid.width
    fresh = EMPTY_CELL.get(group.aggregator.name, 0.0)
    if all(isinstance(part, Blocks) for part in parts):
        group_totals, group_counts = _block_groups(
            Blocks.joined([part for part in parts if isinstance(part, Blocks)]), buckets, agg,
            rank_of, grid, classes.of_series, group.aggregator.name, cells)
    else:
        totals, counts = _cells(len(series), parts, buckets, agg, rank_of, grid)
        group_totals, group_counts = np.full(cells, fresh), np.zeros(cells)
        grouped_cells(totals, counts, grid.width, agg.name, classes.of_series,
                      OPS[group.aggregator.name], group_totals, group_counts)
    rows, column, aggregates = held_cells(group_totals, group_counts, grid.width,
                                          group.aggregator.name)
    column += grid.first
    heads = SeriesSet(classes.names, classes.labels, np.zeros(0, np.int64), np.zeros(0),
                      np.zeros(len(classes.labels) + 1, np.int64))
    return _gridded(heads, rows, None, column, aggregates, buckets, ())


def _block_groups(blocks: Blocks, buckets: Buckets, agg: Aggregator, rank_of: Ranks,
                  grid: DenseGrid, group_of: npt.NDArray[np.int64], group_agg: str,
                  cells: int) -> tuple[Array, Array]:
    """The (group, bucket) cells of `blocks`: sorted by series, a range of series a core,
    each series bucketed in cells that stay in the cache and reduced into its group's
    (tsq.kernels.blocks.accumulate_block_groups); the cores' group cells combined."""
    from tsq.kernels.blocks import accumulate_block_groups

    ranks = (blocks.ids if rank_of is None else rank_of[blocks.ids]).astype(np.int64)
    order = np.argsort(ranks, kind="stable")
    blocks, ranks = blocks.taken(order), ranks[order]
    fresh = EMPTY_CELL.get(group_agg, 0.0)
    layout = (buckets.anchor, buckets.span, buckets.closed == "right", grid.first, grid.width)

    def share(low: int, high: int) -> tuple[Array, Array]:
        totals, counts = np.full(cells, fresh), np.zeros(cells)
        accumulate_block_groups(blocks.taken(np.arange(low, high)), ranks[low:high],
                                group_of.astype(np.int64), *layout, agg.name, group_agg,
                                grid.bounds, totals, counts)
        return totals, counts

    cores = os.cpu_count() or 1
    edges = _series_edges(ranks, blocks.counts, cores) if _worth_sharing(blocks.points) \
        else [0, len(ranks)]
    shares = _each_on_a_core(lambda bounds: share(*bounds), list(pairwise(edges)))
    totals, counts = shares[0]
    for more in shares[1:]:
        _combine_into(totals, counts, more, group_agg)
    return totals, counts


def _series_edges(ranks: npt.NDArray[np.int64], counts: npt.NDArray[np.int64],
                  cores: int) -> list[int]:
    """Where to cut blocks sorted by series (`ranks`) into `cores` runs of about as many
    points, never inside a series."""
    ends = np.cumsum(counts)
    cuts = np.searchsorted(ends, np.arange(1, cores) * ends[-1] / cores, side="right")
    starts = np.flatnonzero(np.concatenate(([True], ranks[1:] != ranks[:-1])))
    at_series = starts[np.minimum(np.searchsorted(starts, cuts), len(starts) - 1)]
    return [0, *sorted(set(at_series.tolist()) - {0, len(ranks)}), len(ranks)]


def _cells(rows: int, parts: Sequence[Points | Blocks], buckets: Buckets, agg: Aggregator,
           rank_of: Ranks, grid: DenseGrid) -> tuple[Array, Array]:
    """Every point of `parts` added into the dense arrays of `rows` series by `grid.width`
    cells: each cell's aggregate (the sum for sum and mean, the extreme for min and max) and
    its number of points."""
    from tsq.kernels.blocks import accumulate_blocks
    from tsq.kernels.compiled import accumulate

    layout = (buckets.anchor, buckets.span, buckets.closed == "right", grid.first, grid.width)

    def add(group: Sequence[Points | Blocks], totals: Array, counts: Array) -> None:
        for part in group:
            if isinstance(part, Points):
                accumulate(part.ids, part.stamps, part.values, rank_of, *layout, agg.name,
                           grid.bounds, totals, counts)
            else:
                accumulate_blocks(part, rank_of, *layout, agg.name, grid.bounds, totals,
                                  counts)

    def fresh() -> tuple[Array, Array]:
        return np.full(rows * grid.width, EMPTY_CELL.get(agg.name, 0.0)), \
            np.zeros(rows * grid.width)

    totals, counts = fresh()
    cores = os.cpu_count() or 1
    pieces = [piece for part in parts for piece in (
        [part] if isinstance(part, Points) else part.shares(cores))]
    if not _parallel(pieces):
        add(parts, totals, counts)
        return totals, counts
    by_series = _by_series(parts, rank_of, rows, cores)
    if by_series is not None:  # each core its own rows of the same arrays
        _each_on_a_core(lambda group: add(group, totals, counts), by_series)
        return totals, counts

    groups = _shared_out(pieces, cores)

    def cells_of(at: int) -> tuple[Array, Array]:
        """The first group added into the read's own cells, each other into cells of its own."""
        cells = (totals, counts) if at == 0 else fresh()
        add(groups[at], *cells)
        return cells

    for more in _each_on_a_core(cells_of, range(len(groups)))[1:]:
        _combine_into(totals, counts, more, agg.name)
    return totals, counts


def _combine_into(totals: Array, counts: Array, more: tuple[Array, Array], agg: str) -> None:
    """A core's cells (`more`: their aggregates and counts) added into `totals` and
    `counts`, each aggregate combined as `agg` combines its cells' (COMBINE)."""
    counts += more[1]
    COMBINE[agg](totals, more[0], out=totals)


def _by_series(parts: Sequence[Points | Blocks], rank_of: Ranks, rows: int,
               cores: int) -> list[list[Blocks]] | None:
    """Blocks cut into a group a core by ranges of series of about as many points; None if
    there are rows (which may hold any series) or the ranges cannot be even (EVEN_ENOUGH)."""
    if any(isinstance(part, Points) for part in parts):
        return None
    blocks = [part for part in parts if isinstance(part, Blocks)]
    ranks = [block.ids if rank_of is None else rank_of[block.ids] for block in blocks]
    load = np.bincount(np.concatenate(ranks), np.concatenate([b.counts for b in blocks]),
                       minlength=rows)
    ends = np.cumsum(load)
    cuts = np.searchsorted(ends, np.arange(1, cores) * ends[-1] / cores, side="right")
    edges = [0, *sorted(set(cuts.tolist()) - {0, rows}), rows]
    heaviest = max(ends[high - 1] - (ends[low - 1] if low else 0) for low, high in
                   pairwise(edges))
    if len(edges) - 1 < cores or heaviest > EVEN_ENOUGH * ends[-1] / cores:
        return None
    return [[block.only((rank >= low) & (rank < high)) for block, rank in
             zip(blocks, ranks, strict=True)] for low, high in pairwise(edges)]


def _shared_out(parts: Sequence[Points | Blocks], shares: int) -> list[list[Points | Blocks]]:
    """`parts` in `shares` groups of about as many points, the largest placed first."""
    groups: list[list[Points | Blocks]] = [[] for _ in range(min(shares, len(parts)))]
    loads = [0] * len(groups)
    for part in sorted(parts, key=lambda p: -_size(p)):
        lightest = loads.index(min(loads))
        groups[lightest].append(part)
        loads[lightest] += _size(part)
    return groups
