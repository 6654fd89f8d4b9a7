"""The example pipeline (examples/pipeline) on a cluster of three processes: raw points written
to the api process, the rollups run by the worker process through it, `after:` steps followed
across processes."""

from __future__ import annotations

import time
from datetime import UTC, datetime

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
DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
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
            "loop": "cpu-1m", "from": "2026-03-01T01:00:00Z", "to": "2026-03-01T04:00:00Z"})
        assert job.status_code == 202, job.text

        def settled(loop: str) -> bool:
            runs = client.get("/v1/runs", params={"loop": loop}).json()["runs"]
            return len(runs) == HOURS and all(r["status"] == "success" for r in runs)

        wait_until(lambda: settled("cpu-1m") and settled("cpu-1h"), 120,
                   "cpu-1m and, after it, cpu-1h succeeded for each hour")
    cluster.close()
    time.sleep(0.5)
    store = Connections(api.data).default
    try:
        end_ns = start_ns + HOURS * 3600 * NS
        minutes = store.select(parse_selector("cpu_1m"), start_ns, end_ns)
        hours = store.select(parse_selector("cpu_1h"), start_ns, end_ns)
    finally:
        store.close()
    assert len(minutes) == len(HOSTS)
    for series in minutes:
        host = series.labels["host"]
        expected = values[host].reshape(-1, 6).mean(axis=1)
        np.testing.assert_allclose(series.values, expected, rtol=1e-9)
    by_dc = {s.labels["dc"]: s.values for s in hours}
    gra = np.mean([values[h].reshape(HOURS, -1).mean(axis=1) for h in ("web01", "web02")],
                  axis=0)
    np.testing.assert_allclose(by_dc["gra"], gra, rtol=1e-9)
    np.testing.assert_allclose(by_dc["rbx"], values["db01"].reshape(HOURS, -1).mean(axis=1),
                               rtol=1e-9)
