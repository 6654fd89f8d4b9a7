"""The example pipeline (examples/pipeline) on a cluster of three processes: raw points written
to the api process, the rollups run by the worker process through it, `after:` steps followed
across processes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from tests.cluster.processes import Cluster
from tests.cluster.test_cluster import wait_until
from tests.conftest import ROOT
from tsq.connections import Connections
from tsq.selector import parse_selector

pytestmark = pytest.mark.timeout(300)

EXAMPLE = ROOT / "examples" / "pipeline"
# Recent hours: cpu-1m re-rolls late points only within 2 days (`late: {within: 2d}`).
DAY0 = (datetime.now(UTC) - timedelta(hours=4)).replace(minute=0, second=0, microsecond=0)
HOSTS = {"web01": "gra", "web02": "gra", "db01": "rbx"}
HOURS = 3
NS = 10**9


def points() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {host: 50 + rng.normal(0, 10, HOURS * 60 * 6) for host in HOSTS}  # every 10 s


def test_the_example_pipeline_runs_on_three_processes(cluster: Cluster) -> None:
    api = cluster.start("api", "api")
    cluster.start("scheduler", "scheduler", store_url=api.url)
    cluster.start("worker", "worker", store_url=api.url)
    start_ns = int(DAY0.timestamp()) * NS
    end_ms = int(DAY0.timestamp() + HOURS * 3600) * 1000 + 3600_000  # the last scheduled time
    values = points()
    stamps = start_ns + np.arange(HOURS * 360) * 10 * NS
    lines = [f"cpu,dc={HOSTS[host]},host={host} value={float(v)!r} {t}"
             for host, vs in values.items() for v, t in zip(vs, stamps, strict=True)]
    with httpx.Client(base_url=api.url, timeout=60) as client:
        assert client.post("/write", content="\n".join(lines)).status_code == 204
        files = {"report.js": (EXAMPLE / "report.js").read_text()}
        deployed = client.post("/v1/loops", json={
            "content": (EXAMPLE / "loops.yml").read_text(), "files": files})
        assert deployed.status_code == 201, deployed.text
        job = client.post("/v1/backfill", json={
            "loop": "cpu-1m", "from": (DAY0 + timedelta(hours=1)).isoformat(),
            "to": (DAY0 + timedelta(hours=HOURS + 1)).isoformat()})
        assert job.status_code == 202, job.text

        def backfilled(loop: str) -> list[dict[str, Any]]:
            """The runs of the backfilled hours (the schedule may fire the hour now ending)."""
            runs = client.get("/v1/runs", params={"loop": loop}).json()["runs"]
            return [r for r in runs if r["scheduled_ms"] <= end_ms]

        def settled(loop: str) -> bool:
            runs = backfilled(loop)
            return len(runs) == HOURS and all(r["status"] == "success" for r in runs)

        wait_until(lambda: settled("cpu-1m") and settled("cpu-1h"), 120,
                   "cpu-1m and, after it, cpu-1h succeeded for each hour")
        # A late point into the first hour: the api process, which owns the store, re-rolls
        # the hour that a worker process's rollup covered.
        late_t = start_ns + 5 * NS  # 00:00:05, in the first minute of the first window
        assert client.post("/write", content=f"cpu,dc=gra,host=web01 value=1000.0 {late_t}"
                           ).status_code == 204
        for loop in ("cpu-1m", "cpu-1h"):  # cpu-1h follows: its source got a late write
            first = min(backfilled(loop), key=lambda r: r["scheduled_ms"])["id"]

            def rolled_again(run_id: str = first) -> bool:
                run = client.get(f"/v1/runs/{run_id}").json()
                return bool(run["attempt"] == 2 and run["status"] == "success")

            wait_until(rolled_again, 30, f"{loop} rolled the first hour up again")
    cluster.close()
    time.sleep(0.5)
    store = Connections(api.data).default
    try:
        end_ns = start_ns + HOURS * 3600 * NS
        minutes = store.select(parse_selector("cpu_1m"), start_ns, end_ns)
        hours = store.select(parse_selector("cpu_1h"), start_ns, end_ns)
    finally:
        store.close()
    expected = {host: vs.reshape(-1, 6).mean(axis=1) for host, vs in values.items()}
    expected["web01"][0] = (values["web01"][:6].sum() + 1000.0) / 7  # with the late point
    assert len(minutes) == len(HOSTS)
    for series in minutes:
        np.testing.assert_allclose(series.values, expected[series.labels["host"]], rtol=1e-9)
    by_dc = {s.labels["dc"]: s.values for s in hours}
    for dc in ("gra", "rbx"):
        hosts = [h for h, d in HOSTS.items() if d == dc]
        hourly = np.concatenate([expected[h].reshape(HOURS, 60) for h in hosts], axis=1)
        np.testing.assert_allclose(by_dc[dc], hourly.mean(axis=1), rtol=1e-9)
