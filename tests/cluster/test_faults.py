"""The cluster through crashes, with real processes and a real nats-server: after each, every
scheduled time has exactly one run record, no run succeeded twice, and the cluster fires again
within 5 s."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from tests.cluster.processes import Cluster
from tests.cluster.test_cluster import beats, exactly_once, loop_file, wait_until
from tests.natsserver import NatsServer
from tests.pgserver import postgres_server
from tsq.db import connect
from tsq.runstore import NewRun, RunStore

pytestmark = pytest.mark.timeout(300)

SLOW = """
export default async function (event) {
  const until = Date.now() + 3000;
  while (Date.now() < until) {}  // busy for three seconds
  return {attempt: event.attempt};
}
"""


def run_record(client: httpx.Client, run_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v1/runs/{run_id}").json())


def test_a_run_whose_worker_is_killed_runs_again_on_another(cluster: Cluster) -> None:
    api = cluster.start("api", "api")
    first = cluster.start("worker1", "worker", store_url=api.url)
    with httpx.Client(base_url=api.url, timeout=60) as client:
        deployed = client.post("/v1/loops", json={
            "content": "project: c\nfunctions:\n  slow:\n    handler: slow.js\n    timeout: 30\n",
            "files": {"slow.js": SLOW}})
        assert deployed.status_code == 201, deployed.text
        started = client.post("/v1/loops/slow/run", params={"async": "true"})
        assert started.status_code == 202
        run_id = started.json()["id"]
        wait_until(lambda: run_record(client, run_id)["status"] == "running", 30,
                   "the run started on worker1")
        first.kill()
        cluster.start("worker2", "worker", store_url=api.url)
        final = wait_until(lambda: (r := run_record(client, run_id))["status"] == "success"
                           and r, 60, "the run ended on worker2")
        assert final["attempt"] == 2
        assert final["result"] == {"attempt": 2}
        logs = client.get(f"/v1/runs/{run_id}/logs").json()["logs"]
        assert any("attempt 1 was interrupted: the worker process running it stopped answering"
                   in line["message"] for line in logs), logs
        runs = client.get("/v1/runs", params={"loop": "slow"}).json()["runs"]
        assert [r["id"] for r in runs] == [run_id]  # one record, run twice, succeeded once


def test_a_standby_scheduler_takes_over_from_a_killed_leader(cluster: Cluster) -> None:
    api = cluster.start("api", "api")
    schedulers = [cluster.start(f"scheduler{i}", "scheduler", store_url=api.url)
                  for i in (1, 2)]
    cluster.start("worker", "worker", store_url=api.url)
    with httpx.Client(base_url=api.url, timeout=60) as client:
        assert client.post("/v1/loops", json=loop_file(1)).status_code == 201
        wait_until(lambda: len(beats(client)) >= 3, 30, "the leader fired")
        leader = cluster.leader(schedulers)
        leader.kill()
        killed_ms = time.time() * 1000
        standby = next(s for s in schedulers if s is not leader)
        standby.wait_for_log("leads the schedulers now", 10)
        # firing again: a time after the kill has its run within 5 s of the kill
        wait_until(lambda: any(r["scheduled_ms"] > killed_ms for r in beats(client)), 5.5,
                   "a time after the kill fired")
        time.sleep(2)
        runs = beats(client)
    exactly_once(runs)  # the times around the kill were caught up, none twice
    assert all(r["status"] in ("success", "queued", "running") for r in runs), [
        (r["scheduled_ms"], r["status"]) for r in runs if r["status"] != "success"]


class Restartable(Protocol):
    def stop(self) -> None: ...

    def start(self) -> None: ...


def ride_out(cluster: Cluster, server: Restartable, what: str) -> list[dict[str, Any]]:
    """A cluster firing every second while `server` stops for 2 s and starts again: its runs,
    once every time before the restart has ended (firing must resume within 5 s of it)."""
    api = cluster.start("api", "api")
    cluster.start("scheduler", "scheduler", store_url=api.url)
    cluster.start("worker", "worker", store_url=api.url)
    with httpx.Client(base_url=api.url, timeout=60) as client:
        assert client.post("/v1/loops", json=loop_file(1)).status_code == 201
        wait_until(lambda: len(beats(client)) >= 3, 30, "the leader fired")
        server.stop()
        time.sleep(2)
        server.start()
        back_ms = time.time() * 1000
        wait_until(lambda: any(r["scheduled_ms"] > back_ms and r["status"] == "success"
                               for r in beats(client)), 5.5, f"firing within 5 s of {what}")
        wait_until(lambda: all(r["status"] in ("success", "failure") for r in beats(client)
                               if r["scheduled_ms"] < back_ms), 30,
                   f"every time of the {what} outage ended")
        return beats(client)


def test_the_cluster_rides_out_a_nats_restart(cluster: Cluster, nats_server: NatsServer
                                              ) -> None:
    runs = ride_out(cluster, nats_server, "NATS")
    exactly_once(runs)
    assert all(r["status"] == "success" for r in runs if not _unfinished(r))


def test_a_run_whose_message_was_lost_is_published_again_by_the_leader(cluster: Cluster
                                                                       ) -> None:
    api = cluster.start("api", "api")
    cluster.start("worker", "worker", store_url=api.url)
    with httpx.Client(base_url=api.url, timeout=60) as client:
        deployed = client.post("/v1/loops", json=loop_file(1))
        assert deployed.status_code == 201, deployed.text
        version = client.get("/v1/loops/count").json()["version"]["id"]
        # A process created this run a minute ago and died before publishing it.
        store = RunStore(connect(cluster.database_url), clock=lambda: time.time() - 60)
        lost = store.create(NewRun(
            project="c", loop="count", event="manual", version_id=version, trigger="manual",
            params={}))
        store.close()
        time.sleep(2)
        assert run_record(client, lost.id)["status"] == "queued"  # nobody knows of it
        cluster.start("scheduler", "scheduler", store_url=api.url)
        wait_until(lambda: run_record(client, lost.id)["status"] == "success", 20,
                   "the leader published it again and a worker ran it")


def test_the_cluster_rides_out_a_postgresql_restart(tmp_path: Path, nats_server: NatsServer,
                                                    cluster_name: str) -> None:
    with postgres_server() as database:  # a server of the test's own, to restart
        database.create_database(template=None, name="runs")
        cluster = Cluster(tmp_path, nats_server.url, cluster_name, database.url("runs"))
        try:
            runs = ride_out(cluster, database, "PostgreSQL")
        finally:
            cluster.close()
    exactly_once(runs)
    assert all(r["status"] == "success" for r in runs if not _unfinished(r)), [
        (r["scheduled_ms"], r["status"], r["error"]) for r in runs if r["status"] != "success"]


def _unfinished(run: dict[str, Any]) -> bool:
    return run["status"] in ("queued", "running")
