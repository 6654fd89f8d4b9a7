"""A cluster of `tsq serve` processes on a real nats-server: scheduled and manual runs on the
worker processes, each scheduled time once; deploys live everywhere at once; the time-series
store reached through the api process."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.cluster.processes import Cluster, TsqProcess

pytestmark = pytest.mark.timeout(240)

BEAT = """
export default async function (event) {
  await db.write(`beat,node=n value=1 ${event.scheduledMs}000000`);
  return {scheduled: event.scheduledMs, version: VERSION, token: env.TOKEN.length};
}
"""
COUNT = """
export default async function () {
  const beats = await db.select("beat", {start: 0, end: Date.now() + 1000});
  return {points: beats.length ? beats[0].values.length : 0};
}
"""


def loop_file(version: int) -> dict[str, Any]:
    return {"content": "project: c\nfunctions:\n"
                       "  beat:\n    handler: beat.js\n    catchup: all\n"
                       "    environment: {TOKEN: {secret: sealed-in-the-database}}\n    events:\n"
                       "      - tick: {rate: R/2026-01-01T00:00:00Z/PT1S/ET10S}\n"
                       "  count:\n    handler: count.js\n",
            "files": {"beat.js": BEAT.replace("VERSION", str(version)), "count.js": COUNT}}


def beats(api: httpx.Client) -> list[dict[str, Any]]:
    runs = api.get("/v1/runs", params={"loop": "beat", "limit": 1000}).json()["runs"]
    return sorted(runs, key=lambda run: run["scheduled_ms"])


def wait_until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def exactly_once(runs: list[dict[str, Any]]) -> None:
    """Every scheduled time from the first to the last has one run, and none succeeded
    twice."""
    times = Counter(run["scheduled_ms"] for run in runs)
    assert [t for t, n in times.items() if n > 1] == []
    first, last = min(times), max(times)
    assert sorted(times) == list(range(first, last + 1000, 1000)), "a scheduled time is missing"


def test_a_cluster_runs_each_scheduled_time_once_on_its_workers(cluster: Cluster) -> None:
    api = cluster.start("api", "api")
    cluster.start("scheduler", "scheduler", store_url=api.url)
    workers = [cluster.start(f"worker{i}", "worker", store_url=api.url) for i in (1, 2)]
    with httpx.Client(base_url=api.url, timeout=60) as client:
        assert client.post("/v1/loops", json=loop_file(1)).status_code == 201
        wait_until(lambda: len([r for r in beats(client) if r["status"] == "success"]) >= 6,
                   30, "six scheduled runs succeeded")
        # a run by hand through the api process: run by a worker, its caller woken
        answer = client.post("/v1/loops/count/run")
        assert answer.status_code == 200, answer.text
        done = [r for r in beats(client) if r["status"] == "success"]
        assert answer.json()["result"]["points"] >= len(done)  # each wrote through the api
        # the worker processes opened the loop's sealed secret with the cluster's key
        assert {r["result"]["token"] for r in done} == {len("sealed-in-the-database")}
        runs = beats(client)
    exactly_once(runs)
    assert {r["status"] for r in runs} <= {"success", "queued", "running"}
    for worker in workers:
        assert "Traceback" not in worker.log_text()


def test_a_deploy_is_live_on_every_process_at_once(cluster: Cluster) -> None:
    api = cluster.start("api", "api")
    cluster.start("scheduler", "scheduler", store_url=api.url)
    cluster.start("worker", "worker", store_url=api.url)
    with httpx.Client(base_url=api.url, timeout=60) as client:
        assert client.post("/v1/loops", json=loop_file(1)).status_code == 201
        wait_until(lambda: any(r["status"] == "success" for r in beats(client)), 30,
                   "version 1 ran")
        assert client.post("/v1/loops", json=loop_file(2)).status_code == 201
        deployed_ms = time.time() * 1000
        later = wait_until(lambda: [r for r in beats(client) if r["status"] == "success"
                                    and r["result"]["version"] == 2], 10, "version 2 ran")
        # the scheduler fired version 2 within two ticks of the deploy
        assert later[0]["scheduled_ms"] <= deployed_ms + 2000
        exactly_once(beats(client))


def test_a_cluster_process_that_could_not_work_says_why(cluster: Cluster) -> None:
    worker = TsqProcess("lonely", "worker", cluster.root, cluster.env, store_url=None)
    with pytest.raises(AssertionError, match="--store-url"):
        worker.start()
    worker.stop()
    keyless = {k: v for k, v in cluster.env.items() if k != "TSQ_SECRET_KEY"}
    api = TsqProcess("keyless", "api", cluster.root, keyless, store_url=None)
    with pytest.raises(AssertionError, match="set TSQ_SECRET_KEY to the same key in every"):
        api.start()
    api.stop()


SPIN = """
export default async function () {
  const until = Date.now() + 60000;
  while (Date.now() < until) {}
  return "never";
}
"""


def test_a_run_on_a_worker_process_is_cancelled_from_the_api_process(cluster: Cluster
                                                                      ) -> None:
    api = cluster.start("api", "api")
    cluster.start("worker", "worker", store_url=api.url)
    with httpx.Client(base_url=api.url, timeout=60) as client:
        assert client.post("/v1/loops", json={
            "content": "project: c\nfunctions:\n  spin:\n    handler: spin.js\n    timeout: 120\n",
            "files": {"spin.js": SPIN}}).status_code == 201
        run_id = client.post("/v1/loops/spin/run", params={"async": "true"}).json()["id"]
        wait_until(lambda: client.get(f"/v1/runs/{run_id}").json()["status"] == "running", 30,
                   "the run started on the worker process")
        started = time.monotonic()
        cancelled = client.post(f"/v1/runs/{run_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert time.monotonic() - started < 10
        # the worker process goes on: the next run succeeds there
        assert client.post("/v1/loops", json=loop_file(1)).status_code == 201
        assert client.post("/v1/loops/count/run").status_code == 200


BUSY = """
export default async function (event) {
  const until = Date.now() + 700;
  while (Date.now() < until) {}
  return event.scheduledMs;
}
"""


def test_max_concurrency_holds_across_worker_processes(cluster: Cluster) -> None:
    api = cluster.start("api", "api")
    for i in (1, 2):
        cluster.start(f"worker{i}", "worker", store_url=api.url)
    with httpx.Client(base_url=api.url, timeout=60) as client:
        assert client.post("/v1/loops", json={
            "content": "project: c\nfunctions:\n  lane:\n    handler: lane.js\n"
                       "    max_concurrency: 1\n    events:\n"
                       "      - m: {rate: R/2026-01-01T00:00:00Z/PT1M/ET10S}\n",
            "files": {"lane.js": BUSY}}).status_code == 201, "deploy"
        job = client.post("/v1/backfill", json={
            "loop": "lane", "from": "2026-02-01T00:00:00Z", "to": "2026-02-01T00:06:00Z"})
        assert job.status_code == 202, job.text

        def ended() -> list[dict[str, Any]]:
            runs = client.get("/v1/runs", params={"loop": "lane"}).json()["runs"]
            return runs if len(runs) == 6 and all(r["status"] == "success"
                                                  for r in runs) else []

        runs = wait_until(ended, 60, "the six backfilled minutes ran")
    spans = sorted((r["started_ms"], r["finished_ms"]) for r in runs)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"two runs of a max_concurrency 1 loop overlapped: {spans}"
