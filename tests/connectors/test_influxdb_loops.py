"""Loops against a real InfluxDB 1.6: a TSL rollup loop and the rollup shorthand, naming an
`influxdb` connector, read their window from InfluxDB and write their rollup back there, on
their schedule (a backfill runs the scheduled times), and the values equal the same loops' on
the embedded store. Points sit exactly on minute boundaries, where window conventions differ."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from benchmarks.influxdb import available, influxdb
from tsq.config import Settings
from tsq.selector import parse_selector
from tsq.series import SeriesSet
from tsq.service import Service

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="InfluxDB 1.6 is not installed here "
                                               "(apt-get install influxdb; .ci/run installs it)"),
]

S = 1_000_000_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = 3600 * S
ROLLUP_TSL = """select("il_cpu").from(start, end)
  .sampleBy(1m, mean, "none").groupBy(["dc"], mean)
  .rename("il_cpu_tsl_1m").store("token")
"""
LOOPS = """
connectors:
  influx: {type: influxdb, url: "%s", database: rollups}
functions:
  %s-tsl:
    handler: rollup.tsl
    events: [{every-15m: {rate: R/2026-01-01T00:00:00Z/PT15M/ET1M}}]%s
  %s-short:
    rollup: {from: il_cpu, to: il_cpu_short_1m, span: 1m, aggregate: mean, by: [dc]}
    events: [{every-15m: {rate: R/2026-01-01T00:00:00Z/PT15M/ET1M}}]%s
"""


def raw_points() -> SeriesSet:
    """Four hosts in two data centres, every 10 s for an hour, on the boundaries too."""
    stamps = np.arange(int(T0.timestamp()) * S, int(T0.timestamp()) * S + HOUR, 10 * S)
    rng = np.random.default_rng(3)
    return SeriesSet.from_series([
        ("il_cpu", {"dc": dc, "host": host}, stamps, rng.uniform(0, 100, len(stamps)).round(3))
        for dc, host in (("gra", "a"), ("gra", "b"), ("rbx", "c"), ("rbx", "d"))])


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[Service, str]]:
    with influxdb("rollups") as base, tempfile.TemporaryDirectory() as data:
        svc = Service(Settings.load(data))
        svc.start()
        try:
            yield svc, base
        finally:
            svc.close()


def backfill(service: Service, loop: str) -> None:
    # The scheduled times 00:15 … 01:00, whose windows [t - 15m, t) make up the hour.
    job = service.backfill(loop, datetime(2026, 1, 1, 0, 15, tzinfo=UTC),
                           datetime(2026, 1, 1, 1, 15, tzinfo=UTC))
    deadline = time.monotonic() + 120
    while (status := service.backfill_status(job["id"]))["status"] != "done":
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert (status["total"], status["success"]) == (4, 4), status


def rollup(store: object, name: str) -> dict[str, list[tuple[int, float]]]:
    found = store.select(parse_selector(name))  # type: ignore[attr-defined]
    return {s.labels["dc"]: list(zip(s.timestamps.tolist(), s.values.round(9).tolist(),
                                     strict=True)) for s in found}


def test_rollup_loops_read_and_write_influxdb_as_the_embedded_store(
        service: tuple[Service, str]) -> None:
    svc, base = service
    text = LOOPS % (base, "influx", "\n    connector: influx", "influx", "\n    connector: influx")
    local = LOOPS % (base, "local", "", "local", "")
    for loop_file in (text, local):
        svc.deploy(loop_file, "loops.yml", {"rollup.tsl": ROLLUP_TSL}.get)
    influx = svc.connections.of({"type": "influxdb", "url": base, "database": "rollups"})
    assert influx.write(raw_points()) == svc.store.write(raw_points()) == 4 * 360

    for loop in ("influx-tsl", "influx-short", "local-tsl", "local-short"):
        backfill(svc, loop)

    for name in ("il_cpu_tsl_1m", "il_cpu_short_1m"):
        remote, embedded = rollup(influx, name), rollup(svc.store, name)
        assert sorted(remote) == ["gra", "rbx"]
        assert remote == embedded
        assert len(remote["gra"]) == 60  # one point a minute for the hour, none twice
        assert remote == embedded
    assert rollup(influx, "il_cpu_tsl_1m") == rollup(influx, "il_cpu_short_1m")
