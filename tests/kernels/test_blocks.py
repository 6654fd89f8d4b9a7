"""Compressed blocks (tsq.kernels.blocks): every point comes back bit for bit, a window reads
only its points, and a sampled read of blocks gives `bucketize`'s buckets."""

from __future__ import annotations

import math
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsq.kernels import Aggregator, Blocks, Buckets, bucketize, bucketize_parts
from tsq.kernels import dense as dense_module
from tsq.kernels.blocks import encode
from tsq.series import SeriesSet

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# values as a store sees them: decimals (most metrics), any double, and the awkward ones
value = st.one_of(st.integers(-10**6, 10**6).map(lambda n: n / 100),
                  st.integers(-2**53, 2**53).map(float),
                  st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from([-0.0, 0.0, math.nan, math.inf, -math.inf, 5e-324, 1e308]))
# times: a regular step with jitter, or any strictly increasing int64s
step = st.integers(1, 10**12)
series = st.lists(st.tuples(st.integers(-2**40, 2**40), value), min_size=1, max_size=300)
quick = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _blocks(stamps: list[np.ndarray[Any, Any]], values: list[np.ndarray[Any, Any]],
            start: int = INT64_MIN, end: int = INT64_MAX) -> Blocks:
    counts = np.array([len(s) for s in stamps], np.int64)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    words, word_offsets = encode(np.concatenate(stamps), np.concatenate(values), offsets)
    return Blocks(np.arange(len(stamps), dtype=np.int64) + 7,
                  np.array([s[0] for s in stamps], np.int64),
                  np.array([s[-1] for s in stamps], np.int64), counts, word_offsets[:-1], words,
                  start, end)


def _series(spec: list[tuple[int, float]], origin: int, regular: bool
            ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    gaps = np.array([abs(g) + 1 for g, _ in spec], np.int64)
    if regular:  # a steady step, now and then a point late or early
        gaps = np.where(np.arange(len(gaps)) % 17 == 5, gaps % 7 + 1, 10)
    stamps = origin + np.cumsum(gaps) - gaps[0]
    return stamps.astype(np.int64), np.array([v for _, v in spec], np.float64)


@quick
@given(specs=st.lists(series, min_size=1, max_size=4), regular=st.booleans(),
       origin=st.sampled_from([0, -(2**62), 2**62, 1_767_225_600 * 10**9]))
def test_blocks_give_back_every_point_bit_for_bit(specs: list[list[tuple[int, float]]],
                                                  regular: bool, origin: int) -> None:
    built = [_series(spec, origin, regular) for spec in specs]
    blocks = _blocks([s for s, _ in built], [v for _, v in built])
    ids, stamps, values = blocks.decoded()
    assert ids.tolist() == [7 + b for b, (s, _) in enumerate(built) for _ in s]
    assert stamps.tolist() == np.concatenate([s for s, _ in built]).tolist()
    expected = np.concatenate([v for _, v in built])
    assert values.view(np.uint64).tolist() == expected.view(np.uint64).tolist()


@quick
@given(spec=series, low=st.integers(0, 400), length=st.integers(0, 400))
def test_a_window_reads_only_its_points(spec: list[tuple[int, float]], low: int,
                                        length: int) -> None:
    stamps, values = _series(spec, 0, regular=False)
    start, end = int(stamps[0]) + low * 3, int(stamps[0]) + (low + length) * 3
    _, found, kept = _blocks([stamps], [values], start, end).decoded()
    inside = (stamps >= start) & (stamps < end)
    assert found.tolist() == stamps[inside].tolist()
    assert kept.view(np.uint64).tolist() == values[inside].view(np.uint64).tolist()


def test_regular_decimal_points_take_under_a_byte_and_a_half() -> None:
    """The footprint's case: a point every 10 s, values with two decimals moving a little."""
    rng = np.random.default_rng(1)
    stamps = 1_767_225_600 * 10**9 + np.arange(8640, dtype=np.int64) * 10**10
    values = np.round(np.clip(50 + np.cumsum(rng.normal(0, 0.2, 8640)) +
                              rng.normal(0, 2, 8640), 0, 100), 2)
    blocks = _blocks([stamps], [values])
    assert blocks.words.nbytes / len(stamps) < 1.5
    constant = _blocks([stamps], [np.full(8640, 3.25)])
    assert constant.words.nbytes < 200  # nothing changes: the header and the widths


@pytest.mark.parametrize("name", ["sum", "mean", "count", "min", "max"])
@pytest.mark.parametrize("closed", ["left", "right"])
@pytest.mark.parametrize("dense", [True, False])
def test_a_sampled_read_of_blocks_is_bucketize_of_their_points(name: str, closed: str,
                                                               dense: bool) -> None:
    """Three series in blocks, two blocks for one of them, a window that cuts blocks, NaN
    points: the same buckets as `bucketize` of the points in the window, whether the blocks
    are decoded into dense cells (a large read) or decoded first (a small one)."""
    rng = np.random.default_rng(7)
    span = 60
    pieces = []
    for block in range(4):
        stamps = np.arange(0, 2000, 10, dtype=np.int64) + (2000 if block == 3 else 0)
        values = np.round(rng.normal(50, 10, len(stamps)), 1)
        values[5 + block] = math.nan
        pieces.append((stamps, values))
    start, end = 95, 3500
    blocks = Blocks(*_parts(pieces, start, end))
    rows = [0, 1, 2, 0]  # the fourth block: the first series' later points

    def points_of(row: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        stamps = np.concatenate([s for (s, _), r in zip(pieces, rows, strict=True) if r == row])
        values = np.concatenate([v for (_, v), r in zip(pieces, rows, strict=True) if r == row])
        inside = (stamps >= start) & (stamps < end)
        return stamps[inside], values[inside]

    inside = SeriesSet.from_series((f"s{row}", {}, *points_of(row)) for row in range(3))
    grid = Buckets(span, closed=closed)  # type: ignore[arg-type]
    rank_of = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 2], np.int64)  # ids 7, 8, 9 -> ranks
    with patch.object(dense_module, "DENSE_POINTS", 0 if dense else 2**62):
        found = bucketize_parts(inside, [blocks], grid, Aggregator(name), (), rank_of)
    expected = bucketize(inside, grid, Aggregator(name))
    assert found is not None
    assert found.offsets.tolist() == expected.offsets.tolist()
    assert found.timestamps.tolist() == expected.timestamps.tolist()
    np.testing.assert_allclose(found.values, expected.values, rtol=1e-12)


def _parts(pieces: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]], start: int,
           end: int) -> tuple[Any, ...]:
    built = _blocks([s for s, _ in pieces], [v for _, v in pieces], start, end)
    ids = np.array([7, 8, 9, 7], np.int64)
    return (ids, built.firsts, built.lasts, built.counts, built.starts, built.words, start,
            end)


@pytest.mark.parametrize("width", range(1, 65))
def test_every_packing_width_gives_back_its_values(width: int) -> None:
    """Values whose XOR with the one before is exactly `width` bits wide: each miniblock packs
    at that width, values straddling two words at every offset."""
    rng = np.random.default_rng(width)
    top = np.uint64(1) << np.uint64(width - 1)
    xors = rng.integers(0, 2**63, 300, dtype=np.uint64, endpoint=True) & \
        np.uint64((1 << width) - 1) | top
    bits = np.bitwise_xor.accumulate(np.concatenate(([np.uint64(0x4000000000000000)], xors)))
    values = bits.view(np.float64)
    stamps = np.arange(len(values), dtype=np.int64) * 7 + (xors[0] & np.uint64(5)).astype(int)
    _, found_stamps, found = _blocks([stamps], [values]).decoded()
    assert found_stamps.tolist() == stamps.tolist()
    assert found.view(np.uint64).tolist() == values.view(np.uint64).tolist()


# a block's values as the fused paths see them: decimals (summed as integers), decimals too
# large to sum as integers without overflow, and doubles with NaN (decoded as values)
block_values = st.sampled_from(["decimal", "huge", "nan"])


@quick
@given(kinds=st.lists(st.tuples(st.booleans(), block_values), min_size=1, max_size=3),
       length=st.integers(1, 300), step=st.integers(1, 200), span=st.integers(1, 20_000),
       anchor=st.integers(-50_000, 50_000), window=st.tuples(st.integers(-100, 70_000),
                                                             st.integers(-100, 70_000)),
       bounded=st.one_of(st.none(), st.tuples(st.integers(-100, 70_000),
                                              st.integers(-100, 70_000))),
       name=st.sampled_from(["sum", "mean", "count", "min", "max"]),
       closed=st.sampled_from(["left", "right"]), seed=st.integers(0, 2**32 - 1))
def test_blocks_add_into_cells_what_their_points_would(
        kinds: list[tuple[bool, str]], length: int, step: int, span: int, anchor: int,
        window: tuple[int, int], bounded: tuple[int, int] | None, name: str, closed: str,
        seed: int) -> None:
    """accumulate_blocks, whichever way a block is read (times steady or not; values summed as
    integers, or decoded), adds into each (series, bucket) cell the count and the sum,
    minimum or maximum of the block's points in the window and the bounds."""
    from tsq.kernels.blocks import accumulate_blocks

    rng = np.random.default_rng(seed)
    stamps, values = [], []
    for steady, kind in kinds:
        gaps = np.full(length, step, np.int64) if steady else rng.integers(1, 2 * step + 1,
                                                                          length)
        stamps.append(np.cumsum(gaps) - gaps[0] + int(rng.integers(0, 1000)))
        numbers = rng.integers(-10**6, 10**6, length) / 100
        if kind == "huge":
            numbers = rng.integers(2**50, 2**52, length).astype(np.float64)
        elif kind == "nan":
            numbers[rng.random(length) < 0.2] = math.nan
        values.append(numbers)
    start, end = min(window), max(window)
    bounds = None if bounded is None else (min(bounded), max(bounded))
    right = closed == "right"

    def bucket_of(stamp: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return -((anchor - stamp) // span) if right else (stamp - anchor) // span

    everything = np.concatenate(stamps)
    first = int(bucket_of(everything).min())
    width = int(bucket_of(everything).max()) - first + 1
    fresh = {"min": math.inf, "max": -math.inf}.get(name, 0.0)
    totals, counts = np.full(len(kinds) * width, fresh), np.zeros(len(kinds) * width)
    expected_totals, expected_counts = totals.copy(), counts.copy()
    blocks = _blocks(stamps, values, start, end)
    rank_of = np.zeros(7 + len(kinds), np.int64)
    rank_of[7:] = np.arange(len(kinds))
    accumulate_blocks(blocks, rank_of, anchor, span, right, first, width, name, bounds,
                      totals, counts)
    for row, (times, numbers) in enumerate(zip(stamps, values, strict=True)):
        keep = (times >= start) & (times < end) & ~np.isnan(numbers)
        if bounds is not None:
            keep &= (times > bounds[0]) & (times <= bounds[1])
        cells = row * width + bucket_of(times[keep]) - first
        np.add.at(expected_counts, cells, 1)
        reduce = {"min": np.minimum, "max": np.maximum}.get(name, np.add)
        reduce.at(expected_totals, cells, numbers[keep])
    assert counts.tolist() == expected_counts.tolist()
    if name != "count":
        np.testing.assert_allclose(totals, expected_totals, rtol=1e-12, atol=1e-9)


def test_integers_that_could_overflow_a_bucket_sum_are_summed_as_doubles() -> None:
    """2,048 integers near 2**52 in one bucket: their sum passes 2**63, which int64 cannot
    hold; the block is summed as values instead, and the sum is right."""
    from tsq.kernels.blocks import accumulate_blocks

    stamps = np.arange(2048, dtype=np.int64)
    values = np.full(2048, 2.0**52) + np.arange(2048) % 3
    totals, counts = np.zeros(1), np.zeros(1)
    accumulate_blocks(_blocks([stamps], [values], 0, 2048), np.zeros(8, np.int64), 0, 4096,
                      False, 0, 1, "sum", None, totals, counts)
    assert counts.tolist() == [2048.0]
    assert totals[0] == pytest.approx(float(values.sum()), rel=1e-15)


def test_warming_loads_the_encoder_and_the_decoder() -> None:
    from tsq.kernels import blockcodec
    from tsq.kernels.blocks import warm

    warm()
    assert blockcodec.encode_all.signatures and blockcodec.decode_all.signatures
