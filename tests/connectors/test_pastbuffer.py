"""The buffer of the past (connectors/pastbuffer.py) gives back what was added sorted by series
then time, one point a (series, time): the last one added. Writes come grouped by series and
mostly in time order, which `held` relies on for speed; any order must give the same."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsq.connectors.pastbuffer import PastBuffer, _by_numpy

WRITES = st.lists(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 20)), min_size=1,
                           max_size=30), min_size=1, max_size=8)


def _reference(writes: list[list[tuple[int, int]]]) -> list[tuple[int, int, float]]:
    kept: dict[tuple[int, int], float] = {}
    value = 0.0
    for write in writes:
        for point in write:
            value += 1.0
            kept[point] = value  # the last added wins
    return [(sid, ts, kept[sid, ts]) for sid, ts in sorted(kept)]


@settings(max_examples=300, deadline=None)
@given(WRITES, st.booleans())
def test_held_is_sorted_and_keeps_the_last_point_added(
        writes: list[list[tuple[int, int]]], grouped: bool) -> None:
    buffer = PastBuffer()
    value = 0.0
    for write in writes:
        points = sorted(write, key=lambda p: p[0]) if grouped else write  # stable: as added
        numbered = []
        for point in write:  # values in the order added, as the reference numbers them
            value += 1.0
            numbered.append((point, value))
        if grouped:
            numbered = sorted(numbered, key=lambda pv: pv[0][0])
        assert [p for p, _ in numbered] == points
        buffer.add(np.array([p[0] for p, _ in numbered], np.int32),
                   np.array([p[1] for p, _ in numbered], np.int64),
                   np.array([v for _, v in numbered]))
    sid, ts, values = buffer.held()
    assert list(zip(sid.tolist(), ts.tolist(), values.tolist(), strict=True)) == \
        _reference(writes)


def test_writes_in_time_order_grouped_by_series_come_back_as_they_were() -> None:
    buffer = PastBuffer()
    for step in range(3):  # each write: three series, two times each, later than the last
        sid = np.repeat(np.arange(3, dtype=np.int32), 2)
        ts = np.tile(np.array([2 * step, 2 * step + 1], np.int64), 3)
        buffer.add(sid, ts, (10 * step + sid + ts / 100).astype(np.float64))
    sid, ts, _ = buffer.held()
    assert sid.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert ts.tolist() == list(range(6)) * 3


@settings(max_examples=200, deadline=None)
@given(WRITES, st.integers(0, 8))
def test_a_buffer_put_back_in_front_of_a_later_one_is_as_if_it_never_left(
        writes: list[list[tuple[int, int]]], split: int) -> None:
    """A write-behind that failed gives its buffer back (connectors/pastbuffer.py): the
    points added to the fresh buffer since still come after its own."""
    older, newer = PastBuffer(), PastBuffer()
    value = 0.0
    for at, write in enumerate(writes):
        values = np.arange(value + 1.0, value + len(write) + 1.0)
        value += len(write)
        (older if at < split else newer).add(np.array([p[0] for p in write], np.int32),
                                             np.array([p[1] for p in write], np.int64), values)
    newer.put_back(older)
    assert newer.points == sum(len(write) for write in writes)
    sid, ts, values = newer.held()
    assert list(zip(sid.tolist(), ts.tolist(), values.tolist(), strict=True)) == \
        _reference(writes)
    added = {p[0] for write in writes for p in write}
    for series in range(7):
        assert newer.holds_any(np.array([series])) == (series in added)


@settings(max_examples=300, deadline=None)
@given(WRITES, st.integers(0, 3))
def test_the_compiled_sort_gives_what_numpy_gives(
        writes: list[list[tuple[int, int]]], offset: int) -> None:
    """The buffer's points sorted by series then time, the last added of each kept, by the
    compiled kernel (a server's) and by numpy (elsewhere); ids need not start at 0."""
    from tsq.kernels.pastsort import last_by_series_and_time

    sid = np.array([p[0] + 1000 * offset for write in writes for p in write], np.int32)
    ts = np.array([p[1] for write in writes for p in write], np.int64)
    values = np.arange(1.0, len(sid) + 1.0)
    compiled = last_by_series_and_time(sid, ts, values)
    assert compiled is not None  # a few ids close together: counted
    expected = _by_numpy(sid, ts, values)
    for got, want in zip(compiled, expected, strict=True):
        assert got.tolist() == want.tolist() and got.dtype == want.dtype
    assert [(s - 1000 * offset, t, v) for s, t, v in zip(*(c.tolist() for c in compiled),
                                                         strict=True)] == _reference(writes)


def test_a_server_sorts_the_buffer_compiled_and_elsewhere_by_numpy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tsq.kernels import pastsort

    pastsort.warm()
    buffer = PastBuffer()
    buffer.add(np.array([7, 5, 7], np.int32), np.array([2, 1, 2], np.int64),
               np.array([1.0, 2.0, 3.0]))
    sorts = {"compiled": 0}
    real = pastsort.last_by_series_and_time

    def counted(*columns: Any) -> Any:
        sorts["compiled"] += 1
        return real(*columns)

    monkeypatch.setattr(pastsort, "last_by_series_and_time", counted)
    for compiled in (True, False):
        monkeypatch.setattr(pastsort, "loaded", lambda compiled=compiled: compiled)
        sid, ts, values = buffer.held()
        assert (sid.tolist(), ts.tolist(), values.tolist()) == ([5, 7], [1, 2], [2.0, 3.0])
    assert sorts["compiled"] == 1


def test_ids_spread_far_apart_are_sorted_by_numpy() -> None:
    """A counting sort over ids spanning far more than the points would count mostly series
    with none: the kernel declines, and numpy sorts them."""
    from tsq.kernels import pastsort

    pastsort.warm()
    sid = np.array([10**6, 0, 10**6], np.int32)
    ts, values = np.array([2, 1, 2], np.int64), np.array([1.0, 2.0, 3.0])
    assert pastsort.last_by_series_and_time(sid, ts, values) is None
    buffer = PastBuffer()
    buffer.add(sid, ts, values)
    held = buffer.held()
    assert [c.tolist() for c in held] == [[0, 10**6], [1, 2], [2.0, 3.0]]
