"""Sliding windows against a brute-force reference (each window sliced and reduced alone)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tsq.kernels import Aggregator
from tsq.kernels.window import cumulative, window
from tsq.series import SeriesSet

NAMES = ["sum", "mean", "count", "min", "max", "first", "last", "delta", "median", "stddev"]
value = st.one_of(st.floats(-1e4, 1e4, allow_subnormal=False), st.just(float("nan")))
spec = st.lists(st.lists(st.tuples(st.integers(0, 100), value), max_size=15), max_size=4)
quick = settings(max_examples=80, deadline=None)


def build(items: Any) -> SeriesSet:
    return SeriesSet.from_series(("s", {"i": str(i)}, [t for t, _ in p], [v for _, v in p])
                                 for i, p in enumerate(items))


def reference(values: np.ndarray, name: str) -> float:
    if name == "delta":
        return float(values[-1] - values[0])
    if name == "stddev":
        return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    if name in ("first", "last"):
        return float(values[0 if name == "first" else -1])
    return float({"sum": np.sum, "mean": np.mean, "count": len, "min": np.min,
                  "max": np.max, "median": np.median}[name](values))


@quick
@given(items=spec, name=st.sampled_from(NAMES), pre=st.integers(0, 5), post=st.integers(0, 5),
       by_time=st.booleans())
def test_window_matches_brute_force(items: Any, name: str, pre: int, post: int,
                                    by_time: bool) -> None:
    result = window(build(items), Aggregator(name), pre * 7 if by_time else pre,
                    post * 7 if by_time else post, by_time=by_time)
    for got in result:
        t, v = got.timestamps, build(items)[int(got.labels["i"])]
        present = ~np.isnan(v.values)
        stamps, values = v.timestamps[present], v.values[present]
        assert t.tolist() == stamps.tolist()
        expected = []
        for i, stamp in enumerate(stamps):
            if by_time:
                inside = (stamps >= stamp - pre * 7) & (stamps <= stamp + post * 7)
                chosen = values[inside]
            else:
                chosen = values[max(0, i - pre):i + post + 1]
            expected.append(reference(chosen, name))
        np.testing.assert_allclose(got.values, expected, rtol=1e-9, atol=1e-6, equal_nan=True)


def test_cumulative_sum_and_max_restart_per_series() -> None:
    source = SeriesSet.from_series([("a", {}, [1, 2, 3], [1.0, 5.0, 2.0]),
                                    ("b", {}, [1, 2], [10.0, 1.0])])
    assert cumulative(source, Aggregator("sum")).values.tolist() == [1.0, 6.0, 8.0, 10.0, 11.0]
    assert cumulative(source, Aggregator("max")).values.tolist() == [1.0, 5.0, 5.0, 10.0, 10.0]


def test_stddev_of_close_large_values_does_not_cancel() -> None:
    values = [10_000.0, 10_000.001, 10_000.003, 10_000.006, 9_999.999]
    source = SeriesSet.from_series([("s", {}, [1, 2, 3, 4, 5], values)])
    got = window(source, Aggregator("stddev"), pre=1).values
    expected = [np.nan] + [np.std(values[i - 1:i + 1], ddof=1) for i in range(1, 5)]
    np.testing.assert_allclose(got, expected, rtol=1e-9, equal_nan=True)
