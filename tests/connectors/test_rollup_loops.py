"""Rollup loops against real servers: a TSL rollup loop and the rollup shorthand, naming an
`influxdb` (InfluxDB 1.6), `prometheus` (Prometheus 2.42), `victoriametrics` (VictoriaMetrics
1.79) or `warp10` (tsq's own Warp-10-compatible API) connector, read their window from the server and write their rollup back there, on their
schedule (a backfill runs the scheduled times), and their minutes equal the same loops' on the
embedded store, and each other's.

Points sit on the minute boundaries too: every connector reads exactly `[start, end)`, so the
boundaries are where a different convention would show. The rollups write history behind the
raw points, which Prometheus takes only with its out-of-order window open."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from benchmarks import influxdb as influx_server
from benchmarks import prometheus as prometheus_server
from benchmarks import victoriametrics as vm_server
from tests.conftest import tsq_server
from tsq.config import Settings
from tsq.selector import parse_selector
from tsq.series import SeriesSet
from tsq.service import Service

pytestmark = pytest.mark.slow

S = 1_000_000_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = 3600 * S
ROLLUP_TSL = """select("rl_cpu").from(start, end)
  .sampleBy(1m, mean, "none").groupBy(["dc"], mean)
  .rename("rl_cpu_tsl_1m").store("token")
"""
LOOPS = """
connectors:
  remote: %s
functions:
  %s-tsl:
    handler: rollup.tsl
    events: [{every-15m: {rate: R/2026-01-01T00:00:00Z/PT15M/ET1M}}]%s
  %s-short:
    rollup: {from: rl_cpu, to: rl_cpu_short_1m, span: 1m, aggregate: mean, by: [dc]}
    events: [{every-15m: {rate: R/2026-01-01T00:00:00Z/PT15M/ET1M}}]%s
"""
Start = Callable[[], AbstractContextManager[str]]
# connector type → (installed?, start a server giving its URL, its connector keys, skip reason)
SERVERS: dict[str, tuple[Callable[[], bool], Start, Callable[[str], dict[str, Any]], str]] = {
    "influxdb": (influx_server.available, lambda: influx_server.influxdb("rollups"),
                 lambda url: {"type": "influxdb", "url": url, "database": "rollups"},
                 "InfluxDB 1.6 is not installed here (apt-get install influxdb; .ci/run "
                 "installs it)"),
    "prometheus": (prometheus_server.available,
                   lambda: prometheus_server.prometheus(writable="1d"),
                   lambda url: {"type": "prometheus", "url": url},
                   "Prometheus 2.42 is not installed here (apt-get install prometheus; "
                   ".ci/run installs it)"),
    "victoriametrics": (vm_server.available, vm_server.victoriametrics,
                        lambda url: {"type": "victoriametrics", "url": url},
                        "VictoriaMetrics 1.79 is not installed here (apt-get install "
                        "victoria-metrics; .ci/run installs it)"),
    # No Warp 10 server is packaged: tsq's own Warp-10-compatible API (a second tsq with its
    # own data directory) stands in for it, so this row never skips.
    "warp10": (lambda: True, tsq_server,
               lambda url: {"type": "warp10", "url": url, "token": "rollups"}, ""),
}


def raw_points() -> SeriesSet:
    """Four hosts in two data centres, every 10 s for an hour, on the boundaries too."""
    stamps = np.arange(int(T0.timestamp()) * S, int(T0.timestamp()) * S + HOUR, 10 * S)
    rng = np.random.default_rng(3)
    return SeriesSet.from_series([
        ("rl_cpu", {"dc": dc, "host": host}, stamps, rng.uniform(0, 100, len(stamps)).round(3))
        for dc, host in (("gra", "a"), ("gra", "b"), ("rbx", "c"), ("rbx", "d"))])


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[Service, dict[str, Any]]]:
    available, start, keys, reason = SERVERS[str(request.param)]
    if not available():
        pytest.skip(reason)
    with start() as url, tempfile.TemporaryDirectory() as data:
        svc = Service(Settings.load(data))
        svc.start()
        try:
            yield svc, keys(url)
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


def rollup(store: Any, name: str) -> dict[str, list[tuple[int, float]]]:
    return {s.labels["dc"]: list(zip(s.timestamps.tolist(), s.values.round(9).tolist(),
                                     strict=True)) for s in store.select(parse_selector(name))}


def test_rollup_loops_read_and_write_the_server_as_the_embedded_store(
        server: tuple[Service, dict[str, Any]]) -> None:
    svc, keys = server
    flow = "{" + ", ".join(f'{key}: "{value}"' for key, value in keys.items()) + "}"
    connector = "\n    connector: remote"
    svc.deploy(LOOPS % (flow, "remote", connector, "remote", connector), "loops.yml",
               {"rollup.tsl": ROLLUP_TSL}.get)
    svc.deploy(LOOPS % (flow, "local", "", "local", ""), "loops.yml",
               {"rollup.tsl": ROLLUP_TSL}.get)
    remote = svc.connections.of(keys)
    assert remote.write(raw_points()) == svc.store.write(raw_points()) == 4 * 360

    for loop in ("remote-tsl", "remote-short", "local-tsl", "local-short"):
        backfill(svc, loop)

    for name in ("rl_cpu_tsl_1m", "rl_cpu_short_1m"):
        theirs, embedded = rollup(remote, name), rollup(svc.store, name)
        assert sorted(theirs) == ["gra", "rbx"]
        assert theirs == embedded
        assert [t for t, _ in theirs["gra"]] == [int(T0.timestamp()) * S + m * 60 * S
                                                 for m in range(60)]  # each minute once
    assert rollup(remote, "rl_cpu_tsl_1m") == rollup(remote, "rl_cpu_short_1m")
