"""Choosing series (sort, top, filters) and operators across sets, against pandas."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsq.errors import BadRequest
from tsq.kernels import Aggregator
from tsq.kernels.choose import (
    filter_by_labels,
    filter_by_last_value,
    filter_by_name,
    filter_without_labels,
    sort_by,
    top,
)
from tsq.kernels.combine import apply
from tsq.selector import Matcher
from tsq.series import SeriesSet

quick = settings(max_examples=60, deadline=None)
points = st.lists(st.tuples(st.integers(0, 30), st.floats(-1e6, 1e6, allow_subnormal=False)),
                  max_size=12)


def build(spec: list[list[tuple[int, float]]], name: str = "s") -> SeriesSet:
    return SeriesSet.from_series((name, {"host": f"h{i}"}, [t for t, _ in p], [v for _, v in p])
                                 for i, p in enumerate(spec))


@quick
@given(spec=st.lists(points, max_size=6), descending=st.booleans(), count=st.integers(1, 7))
def test_sort_and_top_by_mean(spec: Any, descending: bool, count: int) -> None:
    source = build(spec)
    means = [pd.Series([v for _, v in dict(p).items()], dtype=float).mean()
             if p else np.nan for p in [list(dict(p).items()) for p in spec]]
    ordered = [h for _, h in sorted(
        ((m, f"h{i}") for i, m in enumerate(means) if not np.isnan(m)),
        key=lambda pair: -pair[0] if descending else pair[0])]
    ordered += [f"h{i}" for i, m in enumerate(means) if np.isnan(m)]
    got = [s.labels["host"] for s in sort_by(source, descending=descending)]
    assert [means[int(h[1:])] for h in got][:len(ordered)] == pytest.approx(
        [means[int(h[1:])] for h in ordered], nan_ok=True)
    best = [s.labels["host"] for s in top(source, count)]
    assert len(best) == min(count, len(spec))


@quick
@given(left=st.lists(points, min_size=1, max_size=4), right=st.lists(points, min_size=1,
                                                                        max_size=4),
       op=st.sampled_from(["add", "sub", "mul", "greaterThan", "and"]))
def test_operators_match_on_labels_and_common_ticks(left: Any, right: Any, op: str) -> None:
    a, b = build(left, "a"), build(right, "b")
    result = apply(op, [a, b])
    pandas_op = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y,
                 "mul": lambda x, y: x * y,
                 "greaterThan": lambda x, y: (x > y).astype(float),
                 "and": lambda x, y: ((x != 0) & (y != 0)).astype(float)}[op]
    expected = {}
    for i in range(min(len(left), len(right))):
        x = pd.Series(dict(left[i]), dtype=float)
        y = pd.Series(dict(right[i]), dtype=float)
        common = x.index.intersection(y.index).sort_values()
        expected[f"h{i}"] = pandas_op(x[common], y[common])
    assert sorted(s.labels["host"] for s in result) == sorted(expected)
    for s in result:
        reference = expected[s.labels["host"]]
        assert s.timestamps.tolist() == list(reference.index)
        np.testing.assert_allclose(s.values, reference.to_numpy(), rtol=1e-12)
        assert s.name == "a"


def test_on_ignoring_masks_and_errors() -> None:
    cpu = SeriesSet.from_series([("cpu", {"dc": "gra", "host": "a"}, [1, 2, 3], [1.0, 2, 3]),
                                 ("cpu", {"dc": "rbx", "host": "b"}, [1, 2, 3], [5.0, 5, 5])])
    limit = SeriesSet.from_series([("limit", {"dc": "gra"}, [1, 2, 3], [2.0, 2, 2]),
                                   ("limit", {"dc": "rbx"}, [1, 2], [4.0, 4])])
    over = apply("greaterOrEqual", [cpu, limit], on=["dc"])
    assert {s.labels["dc"]: s.values.tolist() for s in over} == {
        "gra": [0.0, 1.0, 1.0], "rbx": [1.0, 1.0]}
    masked = apply("mask", [over, cpu], ignoring=["host"])  # cpu's values where over is true
    assert {s.labels["dc"]: (s.timestamps.tolist(), s.values.tolist()) for s in masked} == {
        "gra": ([2, 3], [2.0, 3.0]), "rbx": ([1, 2], [5.0, 5.0])}
    flags = SeriesSet.from_series([("f", {"host": "a"}, [1, 2, 3], [1.0, 0, 1])])
    assert apply("mask", [flags, cpu], on=["host"])[0].values.tolist() == [1.0, 3.0]
    assert apply("negmask", [flags, cpu], on=["host"])[0].values.tolist() == [2.0]
    with pytest.raises(BadRequest, match="several series"):
        apply("add", [cpu, limit], on=[])
    with pytest.raises(BadRequest, match="exactly two operands"):
        apply("sub", [cpu, cpu, cpu])
    with pytest.raises(BadRequest, match="unknown operator 'pow'"):
        apply("pow", [cpu, cpu])


def test_filters() -> None:
    set_ = SeriesSet.from_series([("cpu.idle", {"dc": "gra"}, [1, 2], [1.0, 50.0]),
                                  ("cpu.user", {"dc": "rbx", "x": "1"}, [1], [10.0]),
                                  ("mem", {}, [], [])])
    assert [s.name for s in filter_by_name(set_, "~cpu\\..*")] == ["cpu.idle", "cpu.user"]
    assert [s.name for s in filter_by_name(set_, "=mem")] == ["mem"]
    assert [s.name for s in filter_by_last_value(set_, ">= 42")] == ["cpu.idle"]
    assert [s.name for s in filter_by_last_value(set_, "<42")] == ["cpu.user"]
    assert [s.name for s in filter_by_labels(set_, [Matcher.of("dc", "=~", "r.*")])] == [
        "cpu.user"]
    assert [s.name for s in filter_without_labels(set_, ["x"])] == ["cpu.idle", "mem"]
    assert [s.name for s in top(set_, 1, Aggregator("max"), bottom=True)] == ["cpu.user"]
    with pytest.raises(BadRequest, match="needs `=name` or `~regex`"):
        filter_by_name(set_, "cpu")
    with pytest.raises(BadRequest, match="needs an operator and a number"):
        filter_by_last_value(set_, "big")
