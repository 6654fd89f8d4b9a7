"""Ingest: InfluxDB line protocol over HTTP in 5,000-line batches into `tsq serve`, beside
VictoriaMetrics 1.79 `/write` and InfluxDB 1.6 `/write` (each started here on 127.0.0.1 with a
temporary data directory; `apt-get install victoria-metrics influxdb`), from one client and from
four clients at once (each sending its share of the batches in turn). Every store is counted
afterwards: every point must be there. Each store takes one batch of another measurement
before the clock starts, its first write's loads out of the rate. Each store's CPU (its process
and children, from the OS) is noted beside its rate: per point, and the cores it kept busy.

The points are sent twice over, to fresh stores: as a past day (the rollup benchmark's
2026-01-01, which tsq keeps in its DuckDB table) and as the newest 72 minutes (the same points
every 0.5 s, ending a minute ago, as collectors send them: tsq keeps these in its head,
docs/store.md).

Each case is run REPEATS times, the stores taking turns (each repetition begun by another,
so that a slower spell of the machine falls on each in turn), and the median taken: one
store's rate moved by a fifth from one run to the next within an hour here (VictoriaMetrics
from four clients: 1,344-1,743 k points a second), more than the differences the ratios are
read for. A run is of POINTS points, 1-2 s for tsq and VictoriaMetrics: runs of a million
points lasted under half a second, as long as a store's start-up work (the first writes of a
series, the head's first chunks) and the four clients' ramp at each end, and four clients'
ratios moved 0.77 -> 1.01 -> 0.80 over an afternoon with the same code."""

from __future__ import annotations

import http.client
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import numpy as np
import psutil

from benchmarks import victoriametrics
from benchmarks.influxdb import available, free_port, influxdb
from benchmarks.report import Report, cpu_s
from benchmarks.rollup import DAY_NS, START_NS, make_data
from benchmarks.scheduler import _Serve

BATCH = 5000
CLIENTS = (1, 4)
REPEATS = 5  # runs of each case and store, alternating; the median reported (quick: one)
POINTS = 3_000_000  # a run's (quick: QUICK_POINTS)
QUICK_POINTS = 100_000
TSQ = "tsq /write (embedded)"
PAST, NEWEST = "a past day", "the newest 72 minutes"
NEWEST_STEP_DIVISOR = 20  # the day's 10 s step becomes 0.5 s: 8,640 points in 72 minutes
VM = "VictoriaMetrics 1.79 /write"
INFLUX = "InfluxDB 1.6 /write"

# A store to write into: (url, params, headers) while it runs, then how many points it holds
Target = tuple[str, dict[str, str], dict[str, str]]


def batches(points: int, newest: bool = False) -> list[bytes]:
    data = make_data(max(1, points // 8640))
    hosts, per_host = data["hosts"], data["per_host"]
    if newest:
        # a minute ago: VictoriaMetrics leaves the newest 30 s out of queries (latencyOffset)
        end = (time.time_ns() // 10**9 - 60) * 10**9
        start = end - DAY_NS // NEWEST_STEP_DIVISOR
        data["timestamps"] = start + (data["timestamps"] - START_NS) // NEWEST_STEP_DIVISOR
    dcs = ("gra", "rbx", "sbg", "bhs")
    order = np.argsort(np.tile(np.arange(per_host), hosts), kind="stable")  # time-major
    lines = [f"cpu,host=web{(i // per_host):03d},dc={dcs[(i // per_host) % 4]} "
             f"value={data['values'][i]:.2f} {data['timestamps'][i]}" for i in order[:points]]
    return ["\n".join(lines[i:i + BATCH]).encode() for i in range(0, len(lines), BATCH)]


def _server_cpu(url: str) -> Callable[[], float]:
    """The CPU seconds used so far by the server listening at `url`'s port and its child
    processes: how much of the machine a rate took."""
    port = urlsplit(url).port
    pid = next((c.pid for c in psutil.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port), None)
    if pid is None:
        raise RuntimeError(f"no process of this machine listens on {url}'s port")
    server = psutil.Process(pid)
    return lambda: cpu_s([server, *server.children(recursive=True)])


def _warmup(body: bytes) -> bytes:
    """A batch like `body` of another measurement (the counts leave it out): every store's
    first write loads or creates what the later ones find (tsq: pyarrow and pandas, if its
    start has not loaded them yet), and the rate is that of a store taking writes."""
    return body.replace(b"cpu,", b"warmup,")


def _post_all(url: str, params: dict[str, str], bodies: list[bytes],
              headers: dict[str, str] | None = None, clients: int = 1) -> float:
    """Seconds to send every body, `clients` at once (client k sends bodies k, k + clients, …),
    each body's answer awaited before its next, on a connection of its own. Not httpx: it
    spends about a millisecond of CPU and of latency a request more than `http.client` (one
    client's median request to a server that only reads the body, 1.3-1.5 ms against 0.3-0.4),
    on the two cores the servers share and in one client's chain of waits; Telegraf, the
    usual sender of these writes, is a Go program."""
    address = urlsplit(url)
    path = f"{address.path}?{urlencode(params)}" if params else address.path

    def send(share: list[bytes]) -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
        try:
            for body in share:
                connection.request("POST", path, body=body, headers=headers or {})
                answer = connection.getresponse()
                said = answer.read()
                if answer.status != 204:
                    raise RuntimeError(f"{url} answered {answer.status}: {said[:200]!r}")
        finally:
            connection.close()

    shares = [bodies[k::clients] for k in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        start = time.perf_counter()
        for done in [pool.submit(send, share) for share in shares]:
            done.result()
        return time.perf_counter() - start


def run(report: Report, *, quick: bool) -> None:
    stores: dict[str, Callable[[], Iterator[tuple[Target, Callable[[], int]]]]] = {TSQ: _tsq}
    if victoriametrics.available():
        stores[VM] = _victoriametrics
    if available():
        stores[INFLUX] = _influx
    for when in (PAST, NEWEST):
        bodies = batches(QUICK_POINTS if quick else POINTS, newest=when == NEWEST)
        points = sum(body.count(b"\n") + 1 for body in bodies)
        for clients in CLIENTS:
            elapsed: dict[str, list[float]] = {impl: [] for impl in stores}
            used_s: dict[str, float] = dict.fromkeys(stores, 0.0)  # CPU seconds, every run
            names = list(stores)
            for turn in range(1 if quick else REPEATS):
                for impl in names[turn % len(names):] + names[:turn % len(names)]:
                    took, used = _run(stores[impl], bodies, points, clients, impl)
                    elapsed[impl].append(took)
                    used_s[impl] += used
            peers = [f"{impl}, {when}, {clients} client(s)" for impl in stores if impl != TSQ]
            for impl in sorted(stores, key=lambda impl: impl == TSQ):  # peers first
                name = f"{impl}, {when}, {clients} client(s)"
                report.add("ingest", name, elapsed[impl], None if impl != TSQ else peers)
                rates = sorted(round(points / took) for took in elapsed[impl])
                report.note("ingest", name, {
                    "points": points, "points_per_s": rates[len(rates) // 2],
                    "points_per_s_each_run": rates,
                    "server_cpu_us_per_point": round(
                        used_s[impl] / (points * len(rates)) * 1e6, 3),
                    "server_cores": round(used_s[impl] / sum(elapsed[impl]), 2)})


def _run(store: Callable[[], Iterator[tuple[Target, Callable[[], int]]]], bodies: list[bytes],
         points: int, clients: int, impl: str) -> tuple[float, float]:
    """One run into a fresh `store`: the seconds the batches took, and the server's CPU
    seconds meanwhile; all the bodies' `points` must be there afterwards."""
    with contextmanager(store)() as ((url, params, headers), counted):
        _post_all(url, params, [_warmup(bodies[0])], headers)  # not timed
        used = _server_cpu(url)
        before = used()
        took = _post_all(url, params, bodies, headers, clients)
        spent = used() - before
        stored = counted()
    if stored != points:
        raise RuntimeError(f"{impl} stored {stored} of {points} points")
    return took, spent


def _tsq() -> Iterator[tuple[Target, Callable[[], int]]]:
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        with _Serve(Path(data), port):
            # the token Telegraf would send: checking it is part of every write's cost
            token = {"Authorization": f"Bearer {(Path(data) / 'admin.token').read_text().strip()}"}
            base = f"http://127.0.0.1:{port}"

            def counted() -> int:
                answer = httpx.post(f"{base}/v1/query", headers=token, timeout=120, json={
                    "tsl": 'select("cpu").from(0, 4102444800000).sampleBy(1h, count, "none")'})
                answer.raise_for_status()
                return int(sum(sum(s["values"]) for s in answer.json()["series"]))

            yield (f"{base}/write", {"precision": "ns"}, token), counted


def _victoriametrics() -> Iterator[tuple[Target, Callable[[], int]]]:
    with victoriametrics.victoriametrics() as base:
        def counted() -> int:
            httpx.get(f"{base}/internal/force_flush", timeout=60).raise_for_status()
            answer = httpx.get(f"{base}/api/v1/query", params={
                "query": "sum(count_over_time(cpu_value[10y]))"}, timeout=120).json()
            return int(float(answer["data"]["result"][0]["value"][1]))

        yield (f"{base}/write", {}, {}), counted


def _influx() -> Iterator[tuple[Target, Callable[[], int]]]:
    with influxdb("bench") as base:
        def counted() -> int:
            answer = httpx.get(f"{base}/query", params={
                "db": "bench", "q": "SELECT count(value) FROM cpu"}, timeout=120).json()
            return int(answer["results"][0]["series"][0]["values"][0][1])

        yield (f"{base}/write", {"db": "bench", "precision": "ns"}, {}), counted
