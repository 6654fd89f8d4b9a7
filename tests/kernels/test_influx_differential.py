"""Differential tests against a real InfluxDB 1.6: the same line protocol goes into InfluxDB and
through tsq's parser, and `GROUP BY time(span)` with each aggregator and fill must agree with
tsq's bucketize (left-closed buckets, as InfluxDB's) point for point."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from benchmarks.influxdb import available, influxdb
from tsq.kernels import Aggregator, Buckets, Fill, bucketize
from tsq.lineprotocol import parse_lines
from tsq.series import SeriesSet

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="InfluxDB 1.6 is not installed here "
                                               "(apt-get install influxdb; .ci/run installs it)"),
]

START = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
MINUTE = 60 * 10**9
END = START + 30 * MINUTE
INFLUX_NAMES = {"mean": "mean", "sum": "sum", "min": "min", "max": "max", "count": "count",
                "first": "first", "last": "last", "median": "median", "stddev": "stddev"}
FILLS = {"none": [], "previous": [Fill("previous")], "linear": [Fill("interpolate")]}


def dataset() -> str:
    """Irregular points, gaps of several minutes, a rewritten point, values with decimals."""
    rng = np.random.default_rng(7)
    lines = []
    for host in ("a", "b", "c"):
        stamps = np.sort(rng.choice(np.arange(START, END, 7 * 10**9), 120, replace=False))
        stamps = stamps[(stamps < START + 9 * MINUTE) | (stamps > START + 14 * MINUTE)]
        for t in stamps:
            lines.append(f"m,host={host} value={rng.uniform(-50, 50):.3f} {t}")
    lines.append(lines[5].rsplit(" ", 2)[0] + " value=999.5 " + lines[5].rsplit(" ", 1)[1])
    return "\n".join(lines)


@pytest.fixture(scope="module")
def influx() -> Iterator[tuple[str, SeriesSet]]:
    text = dataset()
    with influxdb("diff") as base:
        answer = httpx.post(f"{base}/write", params={"db": "diff"}, content=text.encode(),
                            timeout=30)
        assert answer.status_code == 204, answer.text
        yield base, parse_lines(text).numbers


def influx_buckets(base: str, function: str, span: str, fill: str) -> dict[str, list[tuple]]:
    query = (f"SELECT {function}(value) FROM m WHERE time >= {START} AND time < {END} "
             f"GROUP BY time({span}), host fill({fill})")
    body = httpx.get(f"{base}/query", params={"db": "diff", "q": query, "epoch": "ns"},
                     timeout=30).json()
    found = {}
    for series in body["results"][0].get("series", []):
        found[series["tags"]["host"]] = [(int(t), float(v)) for t, v in series["values"]
                                         if v is not None]
    return found


@pytest.mark.parametrize("agg", list(INFLUX_NAMES))
@pytest.mark.parametrize(("span", "span_ns"), [("1m", MINUTE), ("5m", 5 * MINUTE)])
@pytest.mark.parametrize("fill", list(FILLS))
def test_group_by_time_agrees_with_influxdb(influx: tuple[str, SeriesSet], agg: str, span: str,
                                            span_ns: int, fill: str) -> None:
    if agg == "count" and fill == "linear":
        pytest.skip("InfluxDB interpolates integer aggregates (count) in integers, truncating "
                    "2.5 to 2; tsq's counts are floats and interpolate exactly (a documented "
                    "difference)")
    base, points = influx
    expected = influx_buckets(base, INFLUX_NAMES[agg], span, fill)
    buckets = Buckets(span_ns, anchor=START, closed="left", first=START, last=END - span_ns)
    got = bucketize(points, buckets, Aggregator(agg), FILLS[fill])
    actual = {s.labels["host"]: list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True))
              for s in got}
    assert sorted(actual) == sorted(expected)
    for host, rows in expected.items():
        assert [t for t, _ in actual[host]] == [t for t, _ in rows], (host, agg, fill)
        np.testing.assert_allclose([v for _, v in actual[host]], [v for _, v in rows],
                                   rtol=1e-9, atol=1e-9, err_msg=f"{host} {agg} {fill}")
