"""Ingest: InfluxDB line protocol over HTTP in 5,000-line batches, one client, into `tsq serve`
and into InfluxDB 1.6 `/write` (started here on 127.0.0.1 with a temporary config and data
directory; `apt-get install influxdb`). Both stores are counted afterwards: every point must be
there."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.influxdb import available, free_port, influxdb
from benchmarks.report import Report
from benchmarks.rollup import make_data
from benchmarks.scheduler import _Serve
from tsq.connectors.embedded import EmbeddedStore
from tsq.selector import parse_selector

BATCH = 5000
def batches(points: int) -> list[bytes]:
    data = make_data(max(1, points // 8640))
    hosts, per_host = data["hosts"], data["per_host"]
    dcs = ("gra", "rbx", "sbg", "bhs")
    order = np.argsort(np.tile(np.arange(per_host), hosts), kind="stable")  # time-major
    lines = [f"cpu,host=web{(i // per_host):03d},dc={dcs[(i // per_host) % 4]} "
             f"value={data['values'][i]:.2f} {data['timestamps'][i]}" for i in order[:points]]
    return ["\n".join(lines[i:i + BATCH]).encode() for i in range(0, len(lines), BATCH)]


def _post_all(url: str, params: dict[str, str], bodies: list[bytes],
              headers: dict[str, str] | None = None) -> float:
    with httpx.Client(timeout=120, headers=headers) as client:
        start = time.perf_counter()
        for body in bodies:
            answer = client.post(url, params=params, content=body)
            if answer.status_code != 204:
                raise RuntimeError(f"{url} answered {answer.status_code}: {answer.text[:200]}")
        return time.perf_counter() - start


def run(report: Report, *, quick: bool) -> None:
    bodies = batches(100_000 if quick else 1_000_000)
    points = sum(body.count(b"\n") + 1 for body in bodies)
    rates: dict[str, float] = {}
    if available():
        rates["InfluxDB 1.6 /write"] = points / _influx(bodies, points)
    rates["tsq /write (embedded DuckDB)"] = points / _tsq(bodies, points)
    for impl, rate in rates.items():
        report.add("ingest", impl, [points / rate],
                   None if impl.startswith("InfluxDB") or len(rates) == 1 else
                   "InfluxDB 1.6 /write")
        report.note("ingest", impl, {"points": points, "points_per_s": round(rate)})


def _tsq(bodies: list[bytes], points: int) -> float:
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        with _Serve(Path(data), port):
            # the token Telegraf would send: checking it is part of every write's cost
            token = (Path(data) / "admin.token").read_text().strip()
            elapsed = _post_all(f"http://127.0.0.1:{port}/write", {"precision": "ns"}, bodies,
                                {"Authorization": f"Bearer {token}"})
        store = EmbeddedStore(Path(data) / "points.duckdb")
        try:
            stored = store.select(parse_selector("cpu")).points
        finally:
            store.close()
    if stored != points:
        raise RuntimeError(f"tsq stored {stored} of {points} points")
    return elapsed


def _influx(bodies: list[bytes], points: int) -> float:
    with influxdb("bench") as base:
        elapsed = _post_all(f"{base}/write", {"db": "bench", "precision": "ns"}, bodies)
        answer = httpx.get(f"{base}/query", params={
            "db": "bench", "q": "SELECT count(value) FROM cpu"}, timeout=120).json()
        stored = answer["results"][0]["series"][0]["values"][0][1]
    if stored != points:
        raise RuntimeError(f"InfluxDB stored {stored} of {points} points")
    return elapsed
