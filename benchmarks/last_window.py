"""Last window (issue: the embedded store at the speed of the fastest TSDB): what a scheduled
rollup loop reads every minute and every hour, the newest window of many series. 10,000 series
`cpu{host, dc}` (1,000 with --quick; `TSQ_BENCH_SERIES` sets it) hold a point every 10 s for the
65 minutes before T, the last whole hour of the wall clock; each store is asked for the mean of
every series over [T - 1m, T) and over [T - 1h, T), one answer per series, over HTTP:

- tsq: `tsq serve` on its embedded store, `POST /v1/query` with
  `select("cpu").from(start, end).sampleBy(1m or 1h, mean, "none")`;
- VictoriaMetrics 1.79 (`/write` of the same line protocol, cache off):
  `avg_over_time(cpu_value[1m])` at T - 1 ms, whose range (T - 60.001 s, T - 0.001 s] holds the
  same points as tsq's [T - 60 s, T);
- Prometheus 2.42 (the points imported with promtool): `avg_over_time(cpu[1m])` at T - 1 ms;
- InfluxDB 1.6: `SELECT mean(value) FROM cpu WHERE time >= T - 1m AND time < T GROUP BY *`.

Every answer is checked against numpy (each series' mean) before timing; then the stores are
timed in turns, round after round, so that a noisy neighbour slows each alike. Each answer is
parsed with orjson, with the client's cycle collector held off while the rounds run: the
standard library's `json` and the collector's pauses took 15 to 55 ms of each answer's time,
whichever store gave it, and hid the stores' own differences."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import numpy as np
import orjson

from benchmarks import influxdb, prometheus, victoriametrics
from benchmarks.influxdb import free_port
from benchmarks.ingest import _post_all
from benchmarks.report import Report
from benchmarks.scheduler import _Serve
from tsq.collector import collector_paused

BENCH = "last_window"
STEP_S = 10
SPAN_S = 65 * 60  # the points held: a little more than the hour read
DCS = ("gra", "rbx", "sbg", "bhs")
WINDOWS = {"1m": 60, "1h": 3600}
BATCH = 5000  # lines per write, as the ingest benchmark sends them
TSQ = "tsq POST /v1/query"
VM = "VictoriaMetrics 1.79"
PROM = "Prometheus 2.42"
INFLUX = "InfluxDB 1.6"

Answer = dict[str, float]  # host → mean


class Day:
    """The points: `values[host, i]` at `T - SPAN_S + i * STEP_S` seconds."""

    def __init__(self, series: int) -> None:
        self.end_s = int(time.time()) // 3600 * 3600  # T: the last whole hour
        self.start_s = self.end_s - SPAN_S
        self.times_s = np.arange(self.start_s, self.end_s, STEP_S, dtype=np.int64)
        rng = np.random.default_rng(20261205)
        walk = np.cumsum(rng.normal(0, 0.5, (series, len(self.times_s))), axis=1)
        self.values = np.round(np.clip(rng.uniform(10, 60, (series, 1)) + walk, 0, 100), 2)
        self.hosts = [f"h{i:05d}" for i in range(series)]

    def expected(self, seconds: int) -> Answer:
        inside = self.times_s >= self.end_s - seconds
        means = self.values[:, inside].mean(axis=1)
        return dict(zip(self.hosts, means.tolist(), strict=True))

    def line_batches(self) -> list[bytes]:
        """Line protocol, time-major (every series' point at one time, then the next), as
        collectors send it."""
        heads = [f"cpu,dc={DCS[i % 4]},host={host} value=" for i, host in enumerate(self.hosts)]
        lines = [f"{head}{value:.2f} {t * 10**9}"
                 for column, t in enumerate(self.times_s.tolist())
                 for head, value in zip(heads, self.values[:, column].tolist(), strict=True)]
        return ["\n".join(lines[i:i + BATCH]).encode() for i in range(0, len(lines), BATCH)]


def run(report: Report, *, quick: bool) -> None:
    day = Day(int(os.environ.get("TSQ_BENCH_SERIES") or (1000 if quick else 10_000)))
    rounds = 3 if quick else 10
    bodies = day.line_batches()
    points = day.values.size
    with ExitStack() as stack:
        queries: dict[str, Callable[[int], Answer]] = {
            TSQ: stack.enter_context(_tsq(bodies, day.end_s))}
        if victoriametrics.available():
            queries[VM] = stack.enter_context(_victoriametrics(bodies, day.end_s))
        if prometheus.available():
            queries[PROM] = stack.enter_context(_prometheus(day))
        if influxdb.available():
            queries[INFLUX] = stack.enter_context(_influxdb(bodies, day.end_s))
        del bodies
        for window, seconds in WINDOWS.items():
            expected = day.expected(seconds)
            for name, query in queries.items():
                _check(f"{name}, {window}", query(seconds), expected)
            samples: dict[str, list[float]] = {name: [] for name in queries}
            # the client's own cycle collector, set off by the 10,000 dicts of each answer,
            # paused for 40 ms in one query of two, whichever store answered: held off here
            with collector_paused():
                for _ in range(rounds):
                    for name, query in queries.items():
                        start = time.perf_counter()
                        query(seconds)
                        samples[name].append(time.perf_counter() - start)
            peers = [f"{name}, {window}" for name in queries if name != TSQ]
            for name in queries:
                if name != TSQ:
                    report.add(BENCH, f"{name}, {window}", samples[name])
            report.add(BENCH, f"{TSQ}, {window}", samples[TSQ], peers)
    report.note(BENCH, "data", {"series": len(day.hosts), "points": points,
                                "points_per_series_1m": 60 // STEP_S,
                                "points_per_series_1h": 3600 // STEP_S})


def _check(impl: str, got: Answer, expected: Answer) -> None:
    if got.keys() != expected.keys():
        missing = sorted(expected.keys() - got.keys())[:3]
        raise RuntimeError(f"{impl}: {len(got)} series, expected {len(expected)} "
                           f"(missing {missing}…)")
    hosts = sorted(expected)
    np.testing.assert_allclose([got[h] for h in hosts], [expected[h] for h in hosts],
                               rtol=1e-9, err_msg=impl)


@contextmanager
def _tsq(bodies: list[bytes], end_s: int) -> Iterator[Callable[[int], Answer]]:
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        with _Serve(Path(data), port):
            token = {"Authorization": f"Bearer {(Path(data) / 'admin.token').read_text().strip()}"}
            base = f"http://127.0.0.1:{port}"
            _post_all(f"{base}/write", {"precision": "ns"}, bodies, token)
            with httpx.Client(base_url=base, timeout=600, headers=token) as client:
                end_ms = end_s * 1000

                def query(seconds: int) -> Answer:
                    tsl = (f'select("cpu").from({end_ms - seconds * 1000}, {end_ms})'
                           f'.sampleBy({seconds}s, mean, "none")')
                    answer = client.post("/v1/query", json={"tsl": tsl})
                    if answer.status_code != 200:
                        raise RuntimeError(f"tsq answered {answer.status_code}: "
                                           f"{answer.text[:300]}")
                    return {s["labels"]["host"]: s["values"][0]
                            for s in orjson.loads(answer.content)["series"]}

                yield query


def _promql_means(base: str, metric: str, client: httpx.Client, end_s: int
                  ) -> Callable[[int], Answer]:

    def query(seconds: int) -> Answer:
        answer = client.post(f"{base}/api/v1/query", data={
            "query": f"avg_over_time({metric}[{seconds}s])", "time": f"{end_s - 0.001:.3f}"})
        body = orjson.loads(answer.content)
        if body.get("status") != "success":
            raise RuntimeError(f"{base}: {body.get('error') or answer.text[:300]}")
        return {s["metric"]["host"]: float(s["value"][1]) for s in body["data"]["result"]}

    return query


@contextmanager
def _victoriametrics(bodies: list[bytes], end_s: int) -> Iterator[Callable[[int], Answer]]:
    with victoriametrics.victoriametrics() as base, \
            httpx.Client(base_url=base, timeout=600) as client:
        _post_all(f"{base}/write", {}, bodies)
        client.get("/internal/force_flush").raise_for_status()
        yield _promql_means(base, "cpu_value", client, end_s)


@contextmanager
def _prometheus(day: Day) -> Iterator[Callable[[int], Answer]]:
    text = prometheus.to_openmetrics(
        ("cpu", {"host": host, "dc": DCS[i % 4]}, day.times_s, day.values[i])
        for i, host in enumerate(day.hosts))
    with prometheus.prometheus(text) as base, httpx.Client(timeout=600) as client:
        del text
        yield _promql_means(base, "cpu", client, day.end_s)


@contextmanager
def _influxdb(bodies: list[bytes], end_s: int) -> Iterator[Callable[[int], Answer]]:
    end_ns = end_s * 10**9
    with influxdb.influxdb("bench") as base, \
            httpx.Client(base_url=base, timeout=600) as client:
        _post_all(f"{base}/write", {"db": "bench", "precision": "ns"}, bodies)

        def query(seconds: int) -> Answer:
            text = (f'SELECT mean("value") FROM "cpu" WHERE time >= {end_ns - seconds * 10**9} '
                    f'AND time < {end_ns} GROUP BY *')
            answer = client.get("/query", params={"db": "bench", "q": text})
            result = orjson.loads(answer.content)["results"][0]
            if answer.status_code != 200 or "error" in result:
                raise RuntimeError(f"InfluxDB: {result.get('error') or answer.text[:300]}")
            return {s["tags"]["host"]: s["values"][0][1] for s in result.get("series", [])}

        yield query
