"""Point-wise kernels against pandas on generated series."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsq.errors import BadRequest
from tsq.kernels import maps
from tsq.series import SeriesSet

YEAR_NS = 365 * 86_400 * 10**9
stamp = st.integers(-5 * YEAR_NS, 60 * YEAR_NS)
value = st.floats(-1e9, 1e9, allow_subnormal=False)
series_list = st.lists(st.lists(st.tuples(stamp, value), max_size=15), max_size=4)
quick = settings(max_examples=60, deadline=None)


def build(spec: list[list[tuple[int, float]]]) -> SeriesSet:
    return SeriesSet.from_series(("s", {"i": str(i)}, [t for t, _ in points],
                                  [v for _, v in points]) for i, points in enumerate(spec))


def frames(series: SeriesSet) -> list[pd.Series]:
    return [pd.Series(s.values, index=pd.to_datetime(s.timestamps, unit="ns")) for s in series]


@quick
@given(spec=series_list, op=st.sampled_from(list(maps.ARITHMETIC)), n=st.floats(-100, 100))
def test_arithmetic(spec: Any, op: str, n: float) -> None:
    source = build(spec)
    result = maps.arithmetic(source, op, n)
    pandas_op = {"add": "add", "sub": "sub", "mul": "mul", "div": "truediv"}[op]
    for got, expected in zip(frames(result), frames(source), strict=True):
        with np.errstate(over="ignore", invalid="ignore"):   # 1e308 * 2 is inf in both
            reference = getattr(expected, pandas_op)(n).to_numpy()
        np.testing.assert_allclose(got.to_numpy(), reference, equal_nan=True)


@quick
@given(spec=series_list, op=st.sampled_from(list(maps.COMPARISONS)), n=st.floats(-1e9, 1e9))
def test_comparisons_keep_matching_points(spec: Any, op: str, n: float) -> None:
    source = build(spec)
    result = maps.compare(source, op, n)
    pandas_op = {"equal": "eq", "notEqual": "ne", "greaterThan": "gt", "greaterOrEqual": "ge",
                 "lessThan": "lt", "lessOrEqual": "le"}[op]
    for got, expected in zip(frames(result), frames(source), strict=True):
        kept = expected[getattr(expected, pandas_op)(n)]
        assert got.index.equals(kept.index) and np.array_equal(got.to_numpy(), kept.to_numpy())


@quick
@given(spec=series_list)
def test_rate_per_second(spec: Any) -> None:
    source = build(spec)
    result = maps.rate(source)
    for got, expected in zip(frames(result), frames(source), strict=True):
        seconds = np.diff(expected.index.asi8) / 1e9
        reference = np.diff(expected.to_numpy()) / seconds
        assert got.index.equals(expected.index[1:])
        np.testing.assert_allclose(got.to_numpy(), reference, rtol=1e-9, atol=1e-12)


@quick
@given(spec=series_list, count=st.integers(0, 20), last=st.booleans())
def test_keep_first_and_last(spec: Any, count: int, last: bool) -> None:
    source = build(spec)
    result = maps.keep(source, count, last=last)
    for got, expected in zip(frames(result), frames(source), strict=True):
        reference = expected.tail(count) if last else expected.head(count)
        assert got.index.equals(reference.index)


@quick
@given(spec=series_list, part=st.sampled_from([p for p in maps.TIME_PARTS
                                              if p != "timestamp"]))
def test_time_parts_match_pandas(spec: Any, part: str) -> None:
    source = build(spec)
    result = maps.time_part(source, part)
    for got, expected in zip(frames(result), frames(source), strict=True):
        index = expected.index
        reference = {"minute": index.minute, "hour": index.hour, "day": index.day,
                     "weekday": index.day_of_week + 1, "month": index.month,
                     "year": index.year}[part]
        assert got.to_numpy().tolist() == [float(v) for v in reference]


def test_math_clamp_finite_shift() -> None:
    source = SeriesSet.from_series([("s", {}, [1, 2, 3, 4], [-4.0, 0.0, 100.0, np.nan])])
    assert maps.math(source, "abs").values.tolist()[:3] == [4.0, 0.0, 100.0]
    assert maps.math(source, "logN", 10).values[2] == pytest.approx(2.0)
    assert maps.clamp(source, low=-1.0, high=10.0).values.tolist()[:3] == [-1.0, 0.0, 10.0]
    assert maps.finite(source).timestamps.tolist() == [1, 2, 3]
    assert maps.shift(source, 10).timestamps.tolist() == [11, 12, 13, 14]
    assert maps.time_part(source, "timestamp").values.tolist() == [0.0] * 4
    with pytest.raises(BadRequest, match="positive base other than 1"):
        maps.math(source, "logN", 1)
    with pytest.raises(BadRequest, match="unknown comparison 'gt'"):
        maps.compare(source, "gt", 1)
    with pytest.raises(BadRequest, match="needs numbers"):
        maps.arithmetic(SeriesSet.from_series(
            [("t", {}, [1], np.array(["x"], dtype=object))]), "add", 1)
