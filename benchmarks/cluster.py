"""The cluster (docs/scale-out.md) on this machine, with a real nats-server and real `tsq serve`
processes:

- deploy → live on 4 worker processes: from the deploy request to each process's log line
  saying it follows the change, once the processes have settled after their start;
- no-op runs through the work queue, api + 2 worker processes, beside one process with 2
  workers (the single-process run path), the same requests from the same client;
- scheduler failover: a leader killed with SIGKILL, to the next run record the standby creates;
- the parts of the capacity model: JetStream publishes per second, and the leader's planning
  of one minute of 1 million loops on `PT1M` with the store and the queue left out.

Runs are kept in a PostgreSQL 15 of the benchmark's own, with PostgreSQL's durable settings.
"""

from __future__ import annotations

import http.client
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import sqlalchemy as sa

from benchmarks.report import Report, cpu_s
from tests.cluster.processes import Cluster, TsqProcess
from tests.natsserver import NatsServer
from tests.pgserver import PostgresServer, postgres_server

NOOP = "export default async () => 1"
ROUNDS = 3  # alternating rounds of each set-up's runs
CALLERS = 8  # clients asking for runs at once
TICK = ("project: b\nfunctions:\n  tick:\n    handler: tick.js\n    events:\n"
        "      - t: {rate: R/2026-01-01T00:00:00Z/PT1S/ET10S}\n")
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO .*following loop b/(\S+),")


def run(report: Report, *, quick: bool) -> None:
    nats = NatsServer()
    nats.start()
    try:
        with tempfile.TemporaryDirectory() as root, postgres_server(durable=True) as postgres:
            databases = _Databases(postgres)
            _deploys(report, Path(root) / "deploys", nats, databases, 3 if quick else 20)
            _throughput(report, Path(root) / "throughput", nats, databases,
                        40 if quick else 1000)
            _failover(report, Path(root) / "failover", nats, databases, 1 if quick else 10)
            _publishes(report, nats, 1000 if quick else 50_000)
        _planning(report, 10_000 if quick else 1_000_000)
    finally:
        nats.close()


class _Databases:
    """A fresh PostgreSQL database for each part (the server keeps PostgreSQL's own
    durability settings, as a deployment would)."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server

    def new(self) -> str:
        return self.server.url(self.server.create_database(template=None))


def _cluster(root: Path, nats: NatsServer, name: str, database_url: str,
             **settings: Any) -> Cluster:
    root.mkdir(parents=True)
    return Cluster(root, nats.url, name, database_url, **settings)


def _deploys(report: Report, root: Path, nats: NatsServer, databases: _Databases,
             times: int) -> None:
    cluster = _cluster(root, nats, "bdeploy", databases.new())
    try:
        api = cluster.start("api", "api")
        workers = [cluster.start(f"w{i}", "worker", store_url=api.url) for i in range(4)]
        _settled([api, *workers])
        delays: list[float] = []
        with httpx.Client(base_url=api.url, timeout=60) as client:
            for i in range(times):
                name = f"loop{i}"
                started = time.time()
                client.post("/v1/loops", json={
                    "content": f"project: b\nfunctions:\n  {name}:\n    handler: h.js\n",
                    "files": {"h.js": NOOP}}).raise_for_status()
                for worker in workers:
                    seen = _followed(worker, name)
                    delays.append(max(0.0, seen - started))
        report.add("cluster_deploy", "deploy live on 4 worker processes", delays)
    finally:
        cluster.close()


def _settled(processes: list[TsqProcess], quiet_cpu_s: float = 0.05, interval_s: float = 0.5,
             timeout_s: float = 30.0) -> None:
    """Wait until `processes` have finished starting: their imports, compiles and warm-ups in
    threads after they answer (five processes starting on two cores made the first deploys
    wait behind them, 100-250 ms: a measure of the start, not of a deploy). Settled is less
    than `quiet_cpu_s` of CPU over `interval_s`, all together."""
    watched = [psutil.Process(p.process.pid) for p in processes if p.process is not None]
    deadline = time.monotonic() + timeout_s
    before = cpu_s(watched)
    while time.monotonic() < deadline:
        time.sleep(interval_s)
        now = cpu_s(watched)
        if now - before < quiet_cpu_s:
            return
        before = now


def _followed(worker: TsqProcess, loop: str, timeout_s: float = 10.0) -> float:
    """When `worker` logged that it follows the change of `loop` (epoch seconds)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in worker.log_text().splitlines():
            found = LOG_TIME.match(line)
            if found and found.group(2) == loop:
                stamp = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
                return stamp.replace(tzinfo=UTC).timestamp()
        time.sleep(0.005)
    raise AssertionError(f"{worker.name} never followed {loop}")


def _throughput(report: Report, root: Path, nats: NatsServer, databases: _Databases,
                runs: int) -> None:
    """The same no-op runs, two ways each: asked for one by one over HTTP (async), and as one
    backfill (runs created in batches), on one process with 2 workers and on an api process
    with 2 worker processes of 1 worker each.

    Both set-ups run side by side, idle in turn, and are measured in ROUNDS alternating rounds:
    this machine's speed moves by a third within minutes, which one measurement of each, a
    minute apart, took for the ratio (0.49-0.81 by HTTP over four runs of the same code). The
    ratio is the median of the rounds' ratios, each of two measurements seconds apart."""
    single = TsqProcess("single", "api", root / "single",
                        {**_env(), "TSQ_WORKERS": "2", "TSQ_DATABASE_URL": databases.new()}, None)
    cluster = _cluster(root / "cluster", nats, "bthroughput", databases.new())
    took: dict[tuple[str, str], list[float]] = {}
    try:
        single.start()
        api = cluster.start("api", "api")
        _settled([single, api, *(cluster.start(f"w{i}", "worker", store_url=api.url)
                                 for i in (1, 2))])
        for round_ in range(ROUNDS):
            for setup, url in (("alone", single.url), ("queued", api.url)):
                took.setdefault(("http", setup), []).append(_burst(url, runs))
                took.setdefault(("backfill", setup), []).append(
                    _backfilled(url, runs, first=round_ * runs))
    finally:
        cluster.close()
        single.stop()
    for way in ("http", "backfill"):
        alone, queued = took[way, "alone"], took[way, "queued"]
        base = f"one process, 2 workers ({way}, per run)"
        report.add("cluster_runs", base, [s / runs for s in alone])
        report.add("cluster_runs", f"api + 2 worker processes ({way}, per run)",
                   [s / runs for s in queued], baseline=base)
        ratios = [a / q for a, q in zip(alone, queued, strict=True)]
        report.note("cluster_runs", f"runs per second ({way})", {
            "one_process": [round(runs / s, 1) for s in alone],
            "work_queue": [round(runs / s, 1) for s in queued],
            "ratios": [round(r, 3) for r in ratios],
            "ratio": round(statistics.median(ratios), 3)})


def _backfilled(url: str, runs: int, first: int = 0) -> float:
    """Seconds from a backfill of `runs` scheduled times of a no-op loop (64 may run at once),
    from `first` seconds after February 1st, to its last run's end."""
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/v1/loops", json={
            "content": "project: b\nfunctions:\n  filler:\n    handler: noop.js\n"
                       "    max_concurrency: 64\n    catchup: all\n    events:\n"
                       "      - s: {rate: R/2026-01-01T00:00:00Z/PT1S/ET1S}\n",
            "files": {"noop.js": NOOP}}).raise_for_status()
        started = time.perf_counter()
        job = client.post("/v1/backfill", json={
            "loop": "filler", "from": datetime.fromtimestamp(_FEB1 + first, UTC).isoformat(),
            "to": datetime.fromtimestamp(_FEB1 + first + runs, UTC).isoformat()})
        job.raise_for_status()
        job_id = job.json()["id"]
        while client.get(f"/v1/backfill/{job_id}").json()["status"] != "done":
            time.sleep(0.05)
        return time.perf_counter() - started


_FEB1 = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp())


def _env() -> dict[str, str]:
    import os

    env = {**os.environ}
    for key in ("TSQ_URL", "TSQ_CLUSTER", "TSQ_DATABASE_URL"):
        env.pop(key, None)
    return env


def _burst(url: str, runs: int) -> float:
    """Seconds from the first of `runs` async no-op runs asked for to the last one ended."""
    with httpx.Client(base_url=url, timeout=60) as client:
        client.post("/v1/loops", json={"content": "project: b\nfunctions:\n  noop:\n"
                                                  "    handler: noop.js\n",
                                       "files": {"noop.js": NOOP}}).raise_for_status()
        client.post("/v1/loops/noop/run").raise_for_status()  # warm: the workers have it
        before = len(client.get("/v1/runs", params={"loop": "noop", "limit": 1000}
                                ).json()["runs"])
        started = time.perf_counter()
        with ThreadPoolExecutor(CALLERS) as callers:
            list(callers.map(_poster(url), _shares(runs, CALLERS)))
        # Done when nothing is queued or running: two small answers a poll (listing the
        # finished runs instead cost the server as much as a few hundred runs a second).
        while any(client.get("/v1/runs", params={"loop": "noop", "status": status, "limit": 1}
                             ).json()["runs"] for status in ("queued", "running")):
            time.sleep(0.02)
        took = time.perf_counter() - started
        done = client.get("/v1/runs", params={"loop": "noop", "status": "success",
                                              "limit": 1000}).json()["runs"]
        assert len(done) >= min(1000, before + runs), (len(done), before + runs)
        return took


def _shares(runs: int, callers: int) -> list[int]:
    """`runs` split between `callers` as evenly as it goes."""
    return [runs // callers + (i < runs % callers) for i in range(callers)]


def _poster(url: str) -> Callable[[int], None]:
    """A caller asking for `count` async runs of `noop`, one after another on a connection of
    its own, each request in one write as curl sends it. Not httpx: with 8 threads it spent
    1.6 ms of CPU a request on the same two cores as the servers, a sixth of what the cluster
    and its client spent a run, which the cluster, using both cores, lost from its own
    (tsq's CPU a run is the same with either client)."""
    address = httpx.URL(url)

    def post(count: int) -> None:
        connection = http.client.HTTPConnection(address.host, address.port, timeout=60)
        try:
            for _ in range(count):
                connection.request("POST", "/v1/loops/noop/run?async=true")
                answer = connection.getresponse()
                answer.read()
                assert answer.status == 202, answer.status
        finally:
            connection.close()

    return post


def _failover(report: Report, root: Path, nats: NatsServer, databases: _Databases,
              kills: int) -> None:
    database = databases.new()
    cluster = _cluster(root, nats, "bfailover", database, cluster_lease_ttl_s=3)
    try:
        api = cluster.start("api", "api")
        schedulers = [cluster.start(f"s{i}", "scheduler", store_url=api.url) for i in (0, 1)]
        cluster.start("w", "worker", store_url=api.url)
        with httpx.Client(base_url=api.url, timeout=60) as client:
            client.post("/v1/loops", json={"content": TICK, "files": {"tick.js": NOOP}}
                        ).raise_for_status()
        gaps: list[float] = []
        for kill in range(kills):
            leader = cluster.leader(schedulers)
            time.sleep(1.5)
            leader.kill()
            killed_ms = time.time() * 1000
            gaps.append(_next_fire(database, killed_ms) / 1000)
            index = schedulers.index(leader)
            schedulers[index] = cluster.start(f"s{index}-{kill}", "scheduler",
                                              store_url=api.url)
        report.add("cluster_failover", "leader killed → next fire", gaps)
    finally:
        cluster.close()


def _next_fire(database: str, after_ms: float, timeout_s: float = 30.0) -> float:
    """Milliseconds from `after_ms` to the first run record created after it."""
    engine = sa.create_engine(database)
    deadline = time.monotonic() + timeout_s
    try:
        with engine.connect() as db:
            while time.monotonic() < deadline:
                first = db.execute(sa.text("SELECT min(queued_ms) FROM runs WHERE queued_ms > "
                                           ":after"), {"after": after_ms}).scalar()
                db.rollback()  # a new snapshot for the next look
                if first is not None:
                    return float(first) - after_ms
                time.sleep(0.02)
    finally:
        engine.dispose()
    raise AssertionError("the standby never fired")


def _publishes(report: Report, nats: NatsServer, count: int) -> None:
    from tsq.cluster.bus import Bus, BusNames

    bus = Bus(nats.url, BusNames("bpublish"))
    try:
        batch = 1000
        started = time.perf_counter()
        for start in range(0, count, batch):
            bus.publish_runs([(f"r{i}", f"b/r{i}", 1, b"") for i in range(start,
                                                                           start + batch)])
        elapsed = time.perf_counter() - started
        pulled, pull_started = 0, time.perf_counter()
        while pulled < count:
            got = bus.pull(256, 1.0)
            for delivery in got:
                delivery.ack()
            pulled += len(got)
        pull_elapsed = time.perf_counter() - pull_started
    finally:
        bus.close()
    report.note("cluster_jetstream", "work-queue messages per second", {
        "published": round(count / elapsed), "pulled_and_acked": round(count / pull_elapsed),
        "messages": count})


def _planning(report: Report, loops: int) -> None:
    """The leader's own work for one minute of `loops` loops on PT1M, spread over the minute's
    seconds: due times → run records to create (the store's insert and the queue's publish are
    measured apart)."""
    from tsq import metronome
    from tsq.scheduler import Scheduler, _Event, _times_id

    made: list[int] = []

    class Store:
        def create_new(self, batch: list[Any]) -> list[Any]:
            made.append(len(batch))
            return []

    scheduler = Scheduler(Store(), None, None, None)  # type: ignore[arg-type]
    for i in range(loops):
        second = i % 60
        schedule = metronome.parse(f"R/2026-01-01T00:00:{second:02d}Z/PT1M/ET10S")
        event = _Event("p", f"loop{i}", "e", "v1", schedule, {})
        scheduler._events[event.job_id] = event
        scheduler._fired_with.setdefault(_times_id(schedule), set()).add(event.job_id)
    minute = datetime(2026, 6, 1, tzinfo=UTC)
    started = time.process_time()
    for second in range(60):
        schedule = metronome.parse(f"R/2026-01-01T00:00:{second:02d}Z/PT1M/ET10S")
        scheduler.record_due([(_times_id(schedule), [minute.replace(second=second)])])
    cpu = time.process_time() - started
    assert sum(made) == loops, (sum(made), loops)
    report.note("cluster_planning", f"{loops:,} loops on PT1M, one minute", {
        "cpu_s": round(cpu, 2), "runs_per_cpu_s": round(loops / cpu),
        "share_of_one_core": round(cpu / 60, 3)})
