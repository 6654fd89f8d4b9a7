"""The two grouped means of the rollup shorthand, each against the engine whose mean it is, on the
same points: `aggregate: mean` is the mean of the series' means (Prometheus 2.42's
`avg by (dc)(avg_over_time(…))`), `aggregate: mean_of_points` the mean of all the group's points
(InfluxDB 1.6's `SELECT mean(value) … GROUP BY time(1m), dc`). The hosts of a data centre send
at different rates, so the two means differ, and points sit on the minute boundaries too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import numpy as np
import pytest

from benchmarks import influxdb as influx_server
from benchmarks import prometheus as prometheus_server
from tsq.config import Settings
from tsq.errors import InvalidLoopFile
from tsq.selector import parse_selector
from tsq.service import Service

pytestmark = pytest.mark.slow

T0_S = 1_767_225_600  # 2026-01-01T00:00:00Z
HOUR_S = 3600
# host → (data centre, seconds between its points): within a data centre the rates differ
HOSTS = {"a": ("gra", 10), "b": ("gra", 30), "c": ("gra", 20), "d": ("rbx", 15), "e": ("rbx", 60)}
LOOPS = """
functions:
  means-of-series:
    rollup: {from: gm_cpu, to: gm_cpu_mean, span: 1m, aggregate: mean, by: [dc]}
    events: [{hourly: {rate: R/2026-01-01T00:00:00Z/PT1H/ET10M}}]
  means-of-points:
    rollup: {from: gm_cpu, to: gm_cpu_points, span: 1m, aggregate: mean_of_points, by: [dc]}
    events: [{hourly: {rate: R/2026-01-01T00:00:00Z/PT1H/ET10M}}]
"""
Minutes = dict[str, dict[int, float]]  # dc → minute label (epoch s) → value


def points() -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(host, dc, stamps in s, values) for an hour, each host from T0 at its own rate."""
    rng = np.random.default_rng(23)
    found = []
    for host, (dc, every) in HOSTS.items():
        stamps = np.arange(T0_S, T0_S + HOUR_S, every)
        found.append((host, dc, stamps, rng.uniform(0, 100, len(stamps)).round(3)))
    return found


def line_protocol() -> str:
    return "\n".join(f"gm_cpu,dc={dc},host={host} value={v} {t * 10**9}"
                     for host, dc, stamps, values in points()
                     for t, v in zip(stamps.tolist(), values.tolist(), strict=True))


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Minutes]]:
    """Both rollups run by the service's scheduler path (a backfill of the hour): target → its
    minutes."""
    svc = Service(Settings.load(tmp_path_factory.mktemp("means")))
    svc.start()
    try:
        svc.write_lines(line_protocol())
        svc.deploy(LOOPS, "loops.yml", lambda name: None)
        for loop in ("means-of-series", "means-of-points"):
            job = svc.backfill(loop, datetime(2026, 1, 1, 1, tzinfo=UTC),
                               datetime(2026, 1, 1, 1, 1, tzinfo=UTC))
            deadline = time.monotonic() + 60
            while (status := svc.backfill_status(job["id"]))["status"] != "done":
                assert time.monotonic() < deadline, status
                time.sleep(0.05)
            assert status["success"] == 1, status
        yield {name: {s.labels["dc"]: dict(zip((s.timestamps // 10**9).tolist(),
                                               s.values.tolist(), strict=True))
                      for s in svc.store.select(parse_selector(name))}
               for name in ("gm_cpu_mean", "gm_cpu_points")}
    finally:
        svc.close()


def test_the_two_means_differ_on_these_points(rolled: dict[str, Minutes]) -> None:
    # Otherwise the tests below could not tell one mean from the other.
    assert rolled["gm_cpu_mean"]["gra"][T0_S] != pytest.approx(rolled["gm_cpu_points"]["gra"][T0_S])


@pytest.mark.skipif(not prometheus_server.available(),
                    reason="Prometheus 2.42 is not installed here (apt-get install prometheus; "
                           ".ci/run installs it)")
def test_mean_is_prometheus_avg_by_of_avg_over_time(rolled: dict[str, Minutes]) -> None:
    text = prometheus_server.to_openmetrics(
        ("gm_cpu", {"dc": dc, "host": host}, stamps, values)
        for host, dc, stamps, values in points())
    # Prometheus 2 ranges hold [t - d, t]: evaluated 1 ms before each minute's end over
    # 59.999 s, a range holds exactly the minute [m, m + 1m) of millisecond stamps.
    last = 0.001
    with prometheus_server.prometheus(text) as base:
        matrix = prometheus_server.query_range(
            base, "avg by (dc) (avg_over_time(gm_cpu[59999ms]))", T0_S + 60 - last,
            T0_S + HOUR_S - last, 60)
    theirs = {row["metric"]["dc"]: {round(float(t) + last) - 60: float(v)
                                    for t, v in row["values"]} for row in matrix}
    assert_minutes(rolled["gm_cpu_mean"], theirs)


@pytest.mark.skipif(not influx_server.available(),
                    reason="InfluxDB 1.6 is not installed here (apt-get install influxdb; "
                           ".ci/run installs it)")
def test_mean_of_points_is_influxql_mean_group_by_time(rolled: dict[str, Minutes]) -> None:
    query = (f"SELECT mean(value) FROM gm_cpu WHERE time >= {T0_S}s AND "
             f"time < {T0_S + HOUR_S}s GROUP BY time(1m), dc fill(none)")
    with influx_server.influxdb("means") as base:
        written = httpx.post(f"{base}/write", params={"db": "means"},
                             content=line_protocol().encode(), timeout=30)
        assert written.status_code == 204, written.text
        body = httpx.get(f"{base}/query", params={"db": "means", "q": query, "epoch": "s"},
                         timeout=30).json()
    theirs = {row["tags"]["dc"]: {int(t): float(v) for t, v in row["values"]}
              for row in body["results"][0]["series"]}
    assert_minutes(rolled["gm_cpu_points"], theirs)


def assert_minutes(ours: Minutes, theirs: Minutes) -> None:
    assert sorted(theirs) == sorted(ours) == ["gra", "rbx"]
    for dc, minutes in theirs.items():
        assert sorted(minutes) == [T0_S + 60 * m for m in range(60)], dc
        assert ours[dc] == pytest.approx(minutes, rel=1e-12), dc


def test_an_unknown_aggregate_gets_a_did_you_mean(tmp_path_factory: pytest.TempPathFactory
                                                 ) -> None:
    svc = Service(Settings.load(tmp_path_factory.mktemp("typo")))
    try:
        with pytest.raises(InvalidLoopFile) as failed:
            svc.deploy(LOOPS.replace("mean_of_points", "mean_of_point"), "loops.yml",
                       lambda name: None)
    finally:
        svc.close()
    assert ('unknown aggregate \'mean_of_point\'; did you mean "mean_of_points"?'
            in str(failed.value))
