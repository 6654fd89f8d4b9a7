"""Compressed blocks of a series' points: how a store keeps its past in a few bits a point.

A block holds the points of one series, in time order, one per timestamp, as 64-bit words:

- a header word (the number of points, whether the values are decimals, their scale), the
  first time, the first step between times, the first value;
- the times as deltas of deltas (a series every 10 s has all of them 0), the values as deltas
  of integers when every one is a decimal of at most MAX_SCALE digits that division by the
  power of ten gives back bit for bit (0.01 steps: `round(v * 100)`), else as the XOR of each
  value's bits with the one before (a constant series costs nothing);
- each of the two streams zigzag-coded and bit-packed by miniblocks of MINI values, each
  miniblock as wide as its widest value (its width in a byte, eight to a word).

The idea is Gorilla's (delta-of-delta times, XOR values; Pelkonen et al., VLDB 2015) and
VictoriaMetrics' (values as decimals), with the word-aligned miniblocks of Parquet's
DELTA_BINARY_PACKED, so that a block decodes without a branch a bit. Nothing is lost: -0.0,
NaN, infinities and every other double go the XOR way and come back bit for bit.

Encoding and decoding are compiled (numba), a whole read's blocks in one call; a sampled read
decodes each block into a scratch buffer that stays in the cache and adds its points into the
(series, bucket) cells there (`accumulate_blocks`), so a read of millions of points never
writes them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["EMPTY_CELL", "Blocks", "accumulate_block_groups", "accumulate_blocks", "encode",
           "warm"]


@dataclass(frozen=True)
class Blocks:
    """Blocks as a store reads them, to be decoded together: block b holds `counts[b]` points
    of the series `ids[b]`, its first and last times `firsts[b]`, `lasts[b]`, encoded in
    `words` from `starts[b]`. Only the points in [start, end) are read."""

    ids: npt.NDArray[np.int64]
    firsts: npt.NDArray[np.int64]
    lasts: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]
    words: npt.NDArray[np.uint64]
    start: int
    end: int

    @property
    def points(self) -> int:
        """Points the blocks hold, in the window or not."""
        return int(self.counts.sum())

    def window(self) -> tuple[int, int] | None:
        """The earliest and latest times the blocks may hold in [start, end)."""
        if not len(self.ids):
            return None
        low, high = max(int(self.firsts.min()), self.start), min(int(self.lasts.max()),
                                                                 self.end - 1)
        return (low, high) if low <= high else None

    def decoded(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                               npt.NDArray[np.float64]]:
        """Each point in [start, end): its series id, time and value, block after block."""
        from tsq.kernels.blockcodec import decode_all

        stamps = np.empty(self.points, np.int64)
        values = np.empty(self.points, np.float64)
        decode_all(self.words, self.starts, self.counts, stamps, values)
        ids = np.repeat(self.ids, self.counts)
        inside = (stamps >= self.start) & (stamps < self.end)
        if inside.all():
            return ids, stamps, values
        return ids[inside], stamps[inside], values[inside]

    def shares(self, shares: int) -> list[Blocks]:
        """The blocks cut into `shares` runs of about as many points."""
        if shares < 2 or len(self.ids) < 2:
            return [self]
        ends = np.cumsum(self.counts)
        cuts = np.searchsorted(ends, np.arange(1, shares) * ends[-1] / shares)
        bounds = [0, *sorted(set(cuts.tolist()) - {0, len(self.ids)}), len(self.ids)]
        return [self._taken(slice(a, b)) for a, b in pairwise(bounds)]

    def only(self, keep: npt.NDArray[np.bool_]) -> Blocks:
        """The blocks `keep` marks."""
        return self._taken(keep)

    def taken(self, order: npt.NDArray[np.intp]) -> Blocks:
        """The blocks at `order`, in that order."""
        return self._taken(order)

    def _taken(self, which: slice | npt.NDArray[Any]) -> Blocks:
        return Blocks(self.ids[which], self.firsts[which], self.lasts[which],
                      self.counts[which], self.starts[which], self.words, self.start, self.end)

    @staticmethod
    def joined(parts: list[Blocks]) -> Blocks:
        """Blocks read in several parts (of one window) as one: their words copied into one
        array."""
        if len(parts) == 1:
            return parts[0]
        shifts = np.cumsum([0, *(len(part.words) for part in parts[:-1])])
        return Blocks(np.concatenate([part.ids for part in parts]),
                      np.concatenate([part.firsts for part in parts]),
                      np.concatenate([part.lasts for part in parts]),
                      np.concatenate([part.counts for part in parts]),
                      np.concatenate([part.starts + shift for part, shift in
                                      zip(parts, shifts, strict=True)]),
                      np.concatenate([part.words for part in parts]), parts[0].start,
                      parts[0].end)


def encode(stamps: npt.NDArray[np.int64], values: npt.NDArray[np.float64],
           offsets: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.uint64],
                                                     npt.NDArray[np.int64]]:
    """The blocks of the points cut at `offsets` (block b: points offsets[b] to
    offsets[b + 1], in strictly increasing time), as words and where each block starts and
    ends in them (one more offset than blocks)."""
    from tsq.kernels.blockcodec import HEADER_WORDS, encode_all

    counts = np.diff(offsets)
    room = np.cumsum(np.concatenate(([0], HEADER_WORDS + 2 * (counts + _width_words(counts)))))
    words = np.zeros(int(room[-1]), np.uint64)
    sizes = np.zeros(len(counts), np.int64)
    encode_all(np.ascontiguousarray(stamps, np.int64),
                np.ascontiguousarray(values, np.float64), offsets.astype(np.int64),
                room.astype(np.int64), words, sizes)
    kept = np.concatenate(([0], np.cumsum(sizes)))
    packed = np.concatenate([words[room[b]:room[b] + sizes[b]] for b in range(len(counts))]) \
        if len(counts) else words[:0]
    return packed, kept.astype(np.int64)


def warm() -> None:
    """Load the compiled encoder and decoder (from numba's cache: some 0.3 s of a first
    call) before a write needs them."""
    stamps, values = np.arange(3, dtype=np.int64), np.array([0.5, 1.5, 2.5])
    words, starts = encode(stamps, values, np.array([0, 3], np.int64))
    Blocks(np.zeros(1, np.int64), stamps[:1], stamps[2:], np.array([3], np.int64), starts[:1],
           words, 0, 3).decoded()


def _width_words(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Words a stream of `counts` values may need for its miniblocks' widths, and one more."""
    from tsq.kernels.blockcodec import MINI

    minis = -(-counts // MINI)
    return np.asarray(-(-minis // 8) + 1, np.int64)


def accumulate_blocks(blocks: Blocks, rank_of: npt.NDArray[np.integer[Any]] | None,
                      anchor: int, span: int, right: bool, first: int, width: int,
                      agg: str, bounds: tuple[int, int] | None,
                      totals: npt.NDArray[np.float64], counts: npt.NDArray[np.float64]
                      ) -> None:
    """The points of `blocks` in their window added into the dense cells `totals` and
    `counts` (as tsq.kernels.compiled.accumulate adds points), each block decoded into a
    scratch buffer and each of its buckets reduced there before it is added."""
    reading = _reading(blocks, bounds)
    if reading is None:
        return
    from tsq.kernels.blockcodec import accumulate_all
    from tsq.kernels.compiled import OPS

    table = np.zeros(1, np.int64) if rank_of is None else rank_of.astype(np.int64, copy=False)
    accumulate_all(blocks.words, blocks.starts, blocks.counts, blocks.ids, table,
                    rank_of is not None, anchor, span, right, first, width, OPS[agg],
                    *reading, totals, counts)


def accumulate_block_groups(blocks: Blocks, ranks: npt.NDArray[np.int64],
                            group_of: npt.NDArray[np.int64], anchor: int, span: int,
                            right: bool, first: int, width: int, agg: str, group_agg: str,
                            bounds: tuple[int, int] | None, group_totals: npt.NDArray[np.float64],
                            group_counts: npt.NDArray[np.float64]) -> None:
    """The points of `blocks` (each series' blocks together: `ranks`, their series, in rising
    order) bucketed one series at a time in cells that stay in the cache, each series' cells
    then reduced into its group's (`group_of[rank]`; as tsq.kernels.compiled.grouped_cells),
    `group_totals` and `group_counts`, (group, bucket) cells from bucket `first`."""
    reading = _reading(blocks, bounds)
    if reading is None:
        return
    from tsq.kernels.blockcodec import accumulate_groups_all
    from tsq.kernels.compiled import OPS, cell_op

    accumulate_groups_all(blocks.words, blocks.starts, blocks.counts, ranks, group_of, anchor,
                          span, right, first, width, OPS[agg], *reading,
                          float(EMPTY_CELL.get(agg, 0.0)), cell_op(agg), OPS[group_agg],
                          group_totals, group_counts)


def _reading(blocks: Blocks, bounds: tuple[int, int] | None) -> tuple[int, int] | None:
    """The times to read of `blocks` as (after, upto]: their window, inside the fixed grid
    `bounds` (low, high]; None if no time is left."""
    after, upto = max(blocks.start, -(2**63) + 1) - 1, blocks.end - 1
    if bounds is not None:
        after, upto = max(after, bounds[0]), min(upto, bounds[1])
    return None if not len(blocks.ids) or after >= upto else (after, upto)


# A cell's aggregate before its first point, where it is not 0
EMPTY_CELL = {"min": np.inf, "max": -np.inf}
