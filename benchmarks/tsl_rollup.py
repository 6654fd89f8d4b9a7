"""Rollup loop end to end (BENCHMARKS.md): the 1-minute mean by dc of the day of `cpu{host, dc}`
as a deployed TSL loop on the embedded store, run over the whole day through the worker path
(`POST /v1/loops/{name}/run` calls the same `Service.submit`) and writing its 1-minute series
back; beside InfluxDB 1.6 (`GROUP BY time(1m), "dc"` and the exact per-host subquery),
VictoriaMetrics 1.79 (`avg by (dc)(avg_over_time(cpu_value[60s]))` at each minute's last
millisecond, cache off) and Prometheus 2.42 (`avg by (dc)(avg_over_time(cpu[59s]))`) holding the
same points. All four are loaded first, every answer is checked against numpy, then they are
timed in turns, round after round, so that a noisy neighbour slows each of them alike. The tsq
run's parts (store read, kernels, the rest: the pipe to the worker) are timed alone afterwards
and noted. Beside the loop, the same minutes by dc as an ad-hoc query: `POST /v1/query` through
HTTP to a `tsq serve` whose store holds the day, as the peers are asked (answered, not stored).

Bucket edges (docs/time.md). A run reads its window [t0, t0 + 1 day), every point of the day,
and its minute t holds the points in [t, t + 1m), t … t + 50 s, labelled t: InfluxDB's
`GROUP BY time(1m)` buckets, so InfluxDB's answer must equal tsq's, times included.
Prometheus' `cpu[59s]` at step t + 59 s holds [t, t + 59 s] (2.42 closes a range on both ends),
the same six points; its steps are compared 59 s earlier. Every host has the same number of
points in each minute, so the mean of all points by dc is also the mean of the host means (what
the subquery computes) and all three agree on numbers.

Through a connector (BENCHMARKS.md): the same loop with an `influxdb` connector reads the day
InfluxDB holds; its sampleBy is pushed down as `GROUP BY time(1m), *` (per host: exact), the
mean by dc runs in tsq, and it writes cpu_1m back to InfluxDB. It is timed beside InfluxDB's own
queries, the inexact `GROUP BY time(1m), "dc"` and the exact subquery.

And with a `prometheus` connector on the day Prometheus holds: the sampleBy and the groupBy are
both pushed down (`avg by (dc)(avg_over_time(cpu[59999ms]))` at each minute's last millisecond,
tsq.connectors.promqlpush), and the run is timed beside Prometheus's own
`avg by (dc)(avg_over_time(cpu[59s]))`. That loop returns its minutes rather than store them:
Prometheus 2.42 cannot delete the out-of-order samples a rollup writes into its past, so a
second run of a storing loop would be refused (docs/connectors.md); its answer is checked
instead. `TSQ_BENCH_HOSTS` sets the number of hosts (1000 by default, 100 with --quick) where the
whole day is too much for the machine."""

from __future__ import annotations

import dataclasses
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np

from benchmarks import influxdb, prometheus, victoriametrics
from benchmarks.influxdb import free_port
from benchmarks.ingest import batches
from benchmarks.report import Report, timed
from benchmarks.rollup import DAY_NS, MINUTE_NS, START_NS, STEP_NS, as_series_set, make_data
from benchmarks.scheduler import _Serve
from tsq import tsl
from tsq.config import Settings
from tsq.connectors.base import Capabilities
from tsq.connectors.embedded import STORE_FILE, EmbeddedStore
from tsq.explain import explaining
from tsq.kernels import Aggregator, Buckets, Grouping
from tsq.selector import Selector, parse_selector
from tsq.series import SeriesSet
from tsq.service import Service

BENCH = "tsl_rollup"
DCS = ("gra", "rbx", "sbg", "bhs")  # dc = host number mod 4
LOOP = "cpu-1m"
HANDLER = ('select("cpu").from(start, end).sampleBy(1m, mean, "none")'
           '.groupBy(["dc"], mean).rename("cpu_1m").store("t")\n')
# The whole day is 8.64 M points (138 MB of columns) in one run: above the default 128 MiB.
LOOP_FILE = (f"functions:\n  {LOOP}:\n    handler: {LOOP}.tsl\n    runtime: tsl\n"
             f"    memory: 2048\n    timeout: 600\n")
START_S, END_S = START_NS // 10**9, (START_NS + DAY_NS) // 10**9
INFLUX_RANGE = f"time >= {START_NS} AND time < {START_NS + DAY_NS}"
INFLUX_GROUP_BY = f'SELECT mean("value") FROM "cpu" WHERE {INFLUX_RANGE} GROUP BY time(1m), "dc"'
# The outer query needs the range too, or its buckets run from the data to now.
INFLUX_SUBQUERY = (f'SELECT mean("m") FROM (SELECT mean("value") AS m FROM "cpu" WHERE '
                   f'{INFLUX_RANGE} GROUP BY time(1m), "host", "dc") WHERE {INFLUX_RANGE} '
                   f'GROUP BY time(1m), "dc"')
PROMQL = "avg by (dc)(avg_over_time(cpu[59s]))"
PROMQL_SHIFT_S = -59  # the step that holds tsq's minute t is t + 59 s
TOOK = re.compile(r" in ([0-9.]+) ms$")  # the TSL run's log line: "… points in 118.2 ms"
TSQ = "tsq TSL loop run (deployed)"
TSQ_QUERY = "tsq TSL query, POST /v1/query"
# The loop's read and buckets as an ad-hoc query: the minutes by dc answered, not stored
QUERY = (f'select("cpu").from({START_NS // 10**6}, {(START_NS + DAY_NS) // 10**6})'
         f'.sampleBy(1m, mean, "none").groupBy(["dc"], mean)')
TSQ_INFLUX = "tsq TSL loop via influxdb connector"
INFLUX_LOOP = "cpu-1m-influx"
INFLUX = "InfluxDB 1.6 GROUP BY time(1m),dc"
INFLUX_EXACT = "InfluxDB 1.6 subquery by host"
PROMETHEUS = "Prometheus 2.42 avg_over_time"
TSQ_PROM = "tsq TSL loop via prometheus connector"
PROM_LOOP = "cpu-1m-prom"
VM = "VictoriaMetrics 1.79 avg_over_time"
# VictoriaMetrics' ranges are open on the left: [60s] at t + 59.999 s holds [t, t + 59.999 s]
VM_PROMQL = "avg by (dc)(avg_over_time(cpu_value[60s]))"
PROM_HANDLER = ('select("cpu").from(start, end).sampleBy(1m, mean, "none")'
                '.groupBy(["dc"], mean).rename("cpu_1m")\n')
SUBQUERY_RUNS = 3  # 10-30 s each

Answer = dict[str, tuple[np.ndarray, np.ndarray]]  # dc → (times in epoch s, values)


def reference(data: dict[str, Any]) -> Answer:
    """numpy: per host minute means, then their mean by dc, over [t0, t0 + 1 day) in buckets
    [t, t + 1m) labelled t."""
    hosts, per_host = data["hosts"], data["per_host"]
    values = data["values"].reshape(hosts, per_host)
    minute = np.nanmean(values.reshape(hosts, -1, MINUTE_NS // STEP_NS), axis=2)
    times = START_S + 60 * np.arange(minute.shape[1], dtype=np.int64)
    return {dc: (times, minute[data["dc"] == i].mean(axis=0)) for i, dc in enumerate(DCS)}


def check(impl: str, got: Answer, expected: Answer, shift_s: int = 0) -> None:
    if sorted(got) != sorted(expected):
        raise RuntimeError(f"{impl}: dcs {sorted(got)}, expected {sorted(expected)}")
    for dc, (times, values) in expected.items():
        got_times, got_values = got[dc]
        if not np.array_equal(got_times + shift_s, times):
            raise RuntimeError(f"{impl}: dc={dc} has {len(got_times)} minutes from "
                               f"{got_times[:2]}…, expected {len(times)} from {times[:2]}…")
        np.testing.assert_allclose(got_values, values, rtol=1e-9, err_msg=f"{impl} dc={dc}")


def run(report: Report, *, quick: bool) -> None:
    data = make_data(int(os.environ.get("TSQ_BENCH_HOSTS") or (100 if quick else 1000)))
    repeat = 1 if quick else 5
    expected = reference(data)
    load_before = os.getloadavg()[0]  # the machine is shared: say how busy it was
    # All three hold the day at once (idle when not queried) and are timed in turns, round by
    # round, so that a noisy neighbour slows each of them alike.
    with ExitStack() as stack:
        tsq_loop = stack.enter_context(_tsq(data, expected))
        calls: dict[str, Callable[[], object]] = {TSQ: tsq_loop.run}
        calls[TSQ_QUERY] = stack.enter_context(_tsq_query(data, expected))
        if influxdb.available():
            calls.update(stack.enter_context(_influx(data, expected, tsq_loop, report)))
        else:
            report.note(BENCH, "InfluxDB 1.6", {"skipped": "influxd is not installed"})
        if victoriametrics.available():
            calls.update(stack.enter_context(_victoriametrics(data, expected, report)))
        else:
            report.note(BENCH, VM, {"skipped": "victoria-metrics is not installed"})
        if prometheus.available():
            calls.update(stack.enter_context(_prometheus(data, expected, tsq_loop, report)))
        else:
            report.note(BENCH, "Prometheus 2.42", {"skipped": "prometheus or promtool is not "
                                                              "installed"})
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for round_ in range(repeat):
            for name, call in calls.items():
                if name != INFLUX_EXACT or round_ < SUBQUERY_RUNS:
                    start = time.perf_counter()
                    call()
                    samples[name].append(time.perf_counter() - start)
        tsq_facts = tsq_loop.breakdown(samples[TSQ], repeat)
    peers = [name for name in samples if name not in (TSQ, TSQ_QUERY, TSQ_INFLUX, TSQ_PROM)]
    for name in peers:
        report.add(BENCH, name, samples[name])
    report.add(BENCH, TSQ, samples[TSQ], peers)
    report.add(BENCH, TSQ_QUERY, samples[TSQ_QUERY], peers)
    if TSQ_INFLUX in samples:  # the same loop through the influxdb connector, beside InfluxDB
        report.add(BENCH, TSQ_INFLUX, samples[TSQ_INFLUX], [INFLUX, INFLUX_EXACT])
    if TSQ_PROM in samples:  # the same loop through the prometheus connector, beside Prometheus
        report.add(BENCH, TSQ_PROM, samples[TSQ_PROM], [PROMETHEUS])
    report.note(BENCH, TSQ, tsq_facts)
    report.note(BENCH, "machine", {"loadavg_1m_before": round(load_before, 2),
                                   "loadavg_1m_after": round(os.getloadavg()[0], 2),
                                   "cores": os.cpu_count()})



# -- tsq ---------------------------------------------------------------------------------------


class _InMemory:
    """A connector holding the selected day: the loop's kernels alone, without store or pipe."""

    capabilities = Capabilities()

    def __init__(self, day: SeriesSet) -> None:
        self.day = day

    def select(self, _selector: Selector, _start: int | None = None,
               _end: int | None = None) -> SeriesSet:
        return self.day

    def write(self, series: SeriesSet) -> int:
        return series.points


class _TsqLoop:
    """The deployed loop on a started service holding the day."""

    WINDOW: ClassVar[dict[str, int]] = {"start": START_NS // 10**6,  # epoch ms
                                        "end": (START_NS + DAY_NS) // 10**6}

    def __init__(self, service: Service, name: str = LOOP) -> None:
        self.service = service
        self.name = name
        self.evaluations: list[float] = []  # the worker's own time, from its log line
        self.runs: list[str] = []  # ids of the runs whose evaluation is not read yet
        self.answer: Answer = {}
        self.result: dict[str, Any] = {}  # the last run's result
        self.cold_s = 0.0  # the first run: starts the worker process, which parses the script

    def run(self) -> None:  # what POST /v1/loops/cpu-1m/run does, without HTTP
        record = self.service.run(self.name, self.WINDOW)
        if record.status != "success":
            raise RuntimeError(f"the loop run failed: {record.error}")
        self.result = dict(record.result or {})
        self.runs.append(record.id)  # its log is read after the timing: see `evaluated`

    def evaluated(self) -> None:
        """The worker's evaluation time of each run so far, from its log line (read here, not
        in `run`: reading a run's log is two queries of the run store, 3 ms of a small day's
        run that neither a user's run nor the peers' queries pay)."""
        for run in self.runs:
            for line in self.service.run_logs(run)["logs"]:
                took = TOOK.search(line["message"])
                if took:
                    self.evaluations.append(float(took.group(1)) / 1e3)
        self.runs.clear()

    def written(self) -> Answer:
        return _by_dc(self.service.store)

    def breakdown(self, runs: list[float], repeat: int) -> dict[str, object]:
        """The parts of a run, each timed alone in the service process on the same day."""
        if len(self.written()[DCS[0]][0]) != len(self.answer[DCS[0]][0]):
            raise RuntimeError("runs over the same window did not replace their points")
        store, selector = self.service.store, parse_selector("cpu")
        read = (START_NS, START_NS + DAY_NS)  # [start, end), as the loop reads it
        # the loop's sampleBy and groupBy are the store's: it buckets and groups the points
        # as it reads them
        sampling: Any = store  # the embedded store, which samples and groups
        by_dc = Grouping(("dc",), Aggregator("mean"))
        grouped_s = statistics.median(timed(lambda: sampling.select_grouped(
            selector, *read, Buckets(MINUTE_NS), Aggregator("mean"), (), by_dc), repeat))
        select_s = statistics.median(timed(lambda: sampling.select_sampled(
            selector, *read, Buckets(MINUTE_NS), Aggregator("mean")), repeat))
        raw_s = statistics.median(timed(lambda: store.select(selector, *read), repeat))
        memory = _InMemory(store.select(selector, *read))
        kernel_s = statistics.median(timed(
            lambda: tsl.evaluate(HANDLER, memory, variables=self.WINDOW), repeat))
        self.evaluated()
        run_s, eval_s = statistics.median(runs), statistics.median(self.evaluations)
        return {"points_read": memory.day.points, "cold_first_run_s": round(self.cold_s, 3),
                "run_p50_s": round(run_s, 3),
                "worker_evaluation_p50_s": round(eval_s, 3),
                "store_grouped_read_p50_s": round(grouped_s, 3),
                "store_sampled_read_p50_s": round(select_s, 3),
                "store_raw_read_p50_s": round(raw_s, 3),
                "kernels_on_raw_points_p50_s": round(kernel_s, 3),
                "rest_in_worker_s": round(eval_s - grouped_s, 3),
                "outside_worker_evaluation_s": round(run_s - eval_s, 3)}


def _by_dc(store: Any) -> Answer:
    """The cpu_1m series a loop wrote to `store` (a connector), by dc."""
    got = {}
    for series in store.select(parse_selector("cpu_1m")):
        if set(series.labels) != {"dc"}:
            raise RuntimeError(f"tsq wrote cpu_1m{dict(series.labels)}, not by dc")
        got[series.labels["dc"]] = (series.timestamps // 10**9, series.values)
    return got


@contextmanager
def _tsq(data: dict[str, Any], expected: Answer) -> Iterator[_TsqLoop]:
    with tempfile.TemporaryDirectory() as root:
        # One worker process: a run uses one, and the warm-up run starts the one every timed
        # run then uses (the pool starts its processes on their first job).
        service = Service(dataclasses.replace(Settings.load(Path(root)), workers=1))
        service.start()
        try:
            service.store.write(as_series_set(data))
            service.deploy(LOOP_FILE, "tsq.yaml", {f"{LOOP}.tsl": HANDLER}.get)
            loop = _TsqLoop(service)
            loop.cold_s = timed(loop.run, 1)[0]
            loop.runs.clear()
            loop.answer = loop.written()
            check("tsq loop", loop.answer, expected)
            yield loop
        finally:
            service.close()


@contextmanager
def _tsq_query(data: dict[str, Any], expected: Answer) -> Iterator[Callable[[], Answer]]:
    """A `tsq serve` whose store holds the day (written into its file before it starts), and
    a call of POST /v1/query for the day's minutes by dc through HTTP, as a client asks."""
    with tempfile.TemporaryDirectory() as root:
        store = EmbeddedStore(Path(root) / STORE_FILE)
        try:
            store.write(as_series_set(data))
        finally:
            store.close()
        port = free_port()
        with _Serve(Path(root), port), httpx.Client(
                base_url=f"http://127.0.0.1:{port}", timeout=600, headers={
                    "Authorization": f"Bearer {(Path(root) / 'admin.token').read_text().strip()}"
                }) as client:

            def query() -> Answer:
                answer = client.post("/v1/query", json={"tsl": QUERY})
                if answer.status_code != 200:
                    raise RuntimeError(f"tsq answered {answer.status_code}: {answer.text[:300]}")
                return {s["labels"]["dc"]: (np.array(s["timestamps"], np.int64) // 1000,
                                            np.array(s["values"], np.float64))
                        for s in answer.json()["series"]}

            check("tsq query", query(), expected)  # the first also opens the store
            yield query


# -- InfluxDB 1.6 ------------------------------------------------------------------------------


@contextmanager
def _influx(data: dict[str, Any], expected: Answer, tsq_loop: _TsqLoop,
            report: Report) -> Iterator[dict[str, Callable[[], object]]]:
    points = data["hosts"] * data["per_host"]
    bodies = batches(points)  # the same day (same seed), as line protocol, time-major
    with influxdb.influxdb("bench") as base, httpx.Client(base_url=base, timeout=600) as client:
        start = time.perf_counter()
        for body in bodies:
            answer = client.post("/write", params={"db": "bench", "precision": "ns"},
                                 content=body)
            if answer.status_code != 204:
                raise RuntimeError(f"InfluxDB /write answered {answer.status_code}: "
                                   f"{answer.text[:200]}")
        load_s = time.perf_counter() - start
        del bodies

        def query(text: str) -> Answer:
            answer = client.get("/query", params={"db": "bench", "q": text, "epoch": "s"})
            result = answer.json()["results"][0]
            if answer.status_code != 200 or "error" in result:
                raise RuntimeError(f"InfluxDB: {result.get('error') or answer.text[:300]}")
            out = {}
            for series in result.get("series", []):
                rows = series["values"]
                out[series["tags"]["dc"]] = (np.array([r[0] for r in rows], np.int64),
                                             np.array([r[1] for r in rows], np.float64))
            return out

        check("InfluxDB GROUP BY", query(INFLUX_GROUP_BY), expected)
        check("InfluxDB subquery", query(INFLUX_SUBQUERY), expected)
        check("InfluxDB GROUP BY against tsq's answer", query(INFLUX_GROUP_BY), tsq_loop.answer)
        report.note(BENCH, "InfluxDB 1.6", {"points": points, "load_s": round(load_s, 1)})
        # The same TSL loop with an influxdb connector: its sampleBy runs in InfluxDB (GROUP BY
        # time(1m), * per host), the mean by dc in tsq, and it writes cpu_1m back to InfluxDB.
        tsq_loop.service.deploy(_influx_loop_file(base), "tsq-influx.yaml",
                                {f"{LOOP}.tsl": HANDLER}.get)
        remote = _TsqLoop(tsq_loop.service, INFLUX_LOOP)
        remote.run()
        connector = tsq_loop.service.connections.of(
            {"type": "influxdb", "url": base, "database": "bench"})
        check("tsq loop through the influxdb connector", _by_dc(connector), expected)
        yield {INFLUX: lambda: query(INFLUX_GROUP_BY),
               INFLUX_EXACT: lambda: query(INFLUX_SUBQUERY), TSQ_INFLUX: remote.run}


def _influx_loop_file(base: str) -> str:
    return (f"connectors:\n  bench: {{type: influxdb, url: '{base}', database: bench}}\n"
            f"functions:\n  {INFLUX_LOOP}:\n    handler: {LOOP}.tsl\n    runtime: tsl\n"
            f"    connector: bench\n    memory: 2048\n    timeout: 600\n")


# -- VictoriaMetrics 1.79 ----------------------------------------------------------------------


@contextmanager
def _victoriametrics(data: dict[str, Any], expected: Answer, report: Report
                     ) -> Iterator[dict[str, Callable[[], object]]]:
    points = data["hosts"] * data["per_host"]
    bodies = batches(points)  # the same day as line protocol, time-major: cpu_value{host, dc}
    with victoriametrics.victoriametrics() as base, \
            httpx.Client(base_url=base, timeout=600) as client:
        start = time.perf_counter()
        for body in bodies:
            client.post("/write", content=body).raise_for_status()
        client.get("/internal/force_flush").raise_for_status()
        load_s = time.perf_counter() - start
        del bodies

        def query() -> Answer:  # steps t0 + 59.999 s … t0 + 1 day - 1 ms: one per minute
            answer = client.post("/api/v1/query_range", data={
                "query": VM_PROMQL, "start": f"{START_S + 59.999:.3f}",
                "end": f"{END_S - 0.001:.3f}", "step": "60"}).json()
            if answer.get("status") != "success":
                raise RuntimeError(f"VictoriaMetrics: {answer.get('error')}")
            return {s["metric"]["dc"]: (
                np.array([round(float(t)) - 60 for t, _ in s["values"]], np.int64),
                np.array([float(v) for _, v in s["values"]])) for s in answer["data"]["result"]}

        check("VictoriaMetrics", query(), expected)
        report.note(BENCH, VM, {"points": points, "load_s": round(load_s, 1)})
        yield {VM: query}


# -- Prometheus 2.42 ---------------------------------------------------------------------------


@contextmanager
def _prometheus(data: dict[str, Any], expected: Answer, tsq_loop: _TsqLoop,
                report: Report) -> Iterator[dict[str, Callable[[], object]]]:
    hosts, per_host = data["hosts"], data["per_host"]
    stamps = data["timestamps"][:per_host] // 10**9
    start = time.perf_counter()
    text = prometheus.to_openmetrics(
        ("cpu", {"host": f"web{i:03d}", "dc": DCS[i % 4]}, stamps,
         data["values"][i * per_host:(i + 1) * per_host]) for i in range(hosts))
    text_s = time.perf_counter() - start
    start = time.perf_counter()
    with prometheus.prometheus(text) as base:
        import_s = time.perf_counter() - start
        del text

        def query() -> Answer:  # steps t0 + 59 s … t0 + 1 day - 1 s: one per minute of the day
            found = prometheus.query_range(base, PROMQL, START_S + 59, END_S - 1, 60)
            return {s["metric"]["dc"]: (np.array([int(t) for t, _ in s["values"]], np.int64),
                                        np.array([float(v) for _, v in s["values"]]))
                    for s in found}

        check("Prometheus", query(), expected, PROMQL_SHIFT_S)
        report.note(BENCH, "Prometheus 2.42", {
            "samples": hosts * per_host, "openmetrics_text_s": round(text_s, 1),
            "promtool_import_and_start_s": round(import_s, 1)})
        # The same TSL loop with a prometheus connector: its sampleBy and groupBy run in
        # Prometheus (one query_range), and its minutes come back as the run's result.
        tsq_loop.service.deploy(_prometheus_loop_file(base), "tsq-prom.yaml",
                                {f"{LOOP}.tsl": PROM_HANDLER}.get)
        remote = _TsqLoop(tsq_loop.service, PROM_LOOP)
        remote.run()
        check("tsq loop through the prometheus connector", _result_by_dc(remote.result),
              expected)
        report.note(BENCH, TSQ_PROM, {"plan": _prometheus_plan(tsq_loop.service, base)})
        yield {PROMETHEUS: query, TSQ_PROM: remote.run}


def _prometheus_loop_file(base: str) -> str:
    return (f"connectors:\n  bench: {{type: prometheus, url: '{base}'}}\n"
            f"functions:\n  {PROM_LOOP}:\n    handler: {LOOP}.tsl\n    runtime: tsl\n"
            f"    connector: bench\n    memory: 2048\n    timeout: 600\n")


def _result_by_dc(result: dict[str, Any]) -> Answer:
    """A run's result series (epoch ms), by dc."""
    return {s["labels"]["dc"]: (np.array(s["timestamps"], np.int64) // 1000,
                                np.array(s["values"], np.float64))
            for s in result.get("series", ())}


def _prometheus_plan(service: Service, base: str) -> list[str]:
    """What the loop's query asks Prometheus and what tsq computes, as `--explain` shows it."""
    connector = service.connections.of({"type": "prometheus", "url": base})
    with explaining() as plan:
        tsl.query(PROM_HANDLER, connector, variables=_TsqLoop.WINDOW)
    return [f"{step['where'].split(' at ')[0]}: {step['step']}" for step in plan]
