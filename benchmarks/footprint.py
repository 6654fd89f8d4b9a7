"""Footprint: bytes on disk per point for the rollup benchmark's day of `cpu{host, dc}` every 10 s
(values with two decimals), in tsq's embedded store beside VictoriaMetrics 1.79, InfluxDB 1.6 and
Prometheus 2.42, each started here on 127.0.0.1 in a temporary directory and counted afterwards
(every point must be there). The points reach tsq, VictoriaMetrics and InfluxDB as the ingest
benchmark sends them: line protocol in 5,000-line batches, time-major; Prometheus has no line
protocol, so promtool imports them as blocks. What each size is, once the store has settled:

- tsq: the DuckDB file and its log while the store is open (as a running server holds it),
  the file once the store is closed, which checkpoints, and again after `compact` rewrote it
  in (series, time) order;
- VictoriaMetrics: its data directory after /internal/force_flush and /internal/force_merge;
- InfluxDB: data and WAL directories after the cache was snapshotted to TSM files and fully
  compacted (cold durations of 1 s), the WAL then empty;
- Prometheus: the TSDB directory: the block promtool wrote (the head is empty: no scrapes)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import httpx
import numpy as np

from benchmarks import influxdb, prometheus, victoriametrics
from benchmarks.ingest import batches
from benchmarks.report import Report
from benchmarks.rollup import DAY_NS, START_NS, STEP_NS, make_data
from tsq.connectors.embedded import EmbeddedStore, compact
from tsq.lineprotocol import parse_lines
from tsq.selector import parse_selector

POINTS_PER_HOST = DAY_NS // STEP_NS
# The newest point's time, in seconds: a 1-day window ending there holds the whole day
LAST_S = (START_NS + DAY_NS - STEP_NS) // 10**9
# InfluxDB snapshots its cache and compacts shards after this long without writes
INFLUX_COLD = '  cache-snapshot-write-cold-duration = "1s"\n' \
              '  compact-full-write-cold-duration = "1s"'


def run(report: Report, *, quick: bool) -> None:
    hosts = 10 if quick else 100  # 86,400 or 864,000 points; the rollup benchmark's is 1,000
    points = hosts * POINTS_PER_HOST
    bodies = batches(points)
    measured: dict[str, tuple[Sizes, str]] = {}
    peers: list[tuple[str, Callable[[], bool], Callable[[list[bytes], int, int], Sizes]]] = [
        ("VictoriaMetrics 1.79", victoriametrics.available, _victoriametrics),
        ("InfluxDB 1.6", influxdb.available, _influxdb),
        ("Prometheus 2.42", prometheus.available, _prometheus)]
    live, written, compacted = _tsq(bodies, points)
    measured["tsq embedded, open"] = (live, "file + write-ahead log, before close")
    measured["tsq embedded (DuckDB)"] = (written, "file after close (checkpoint)")
    measured["tsq embedded, compacted"] = (compacted, "file after compact()")
    for name, available, measure in peers:
        if available():
            measured[name] = (measure(bodies, points, hosts), WHAT[name])
    for impl, (size, what) in measured.items():
        report.note("footprint", impl, {
            "points": points, "bytes": size.on_disk, "apparent_bytes": size.apparent,
            "bytes_per_point": round(size.on_disk / points, 2),
            "apparent_bytes_per_point": round(size.apparent / points, 2), "measured": what})


WHAT = {"VictoriaMetrics 1.79": "data dir after force_flush + force_merge",
        "InfluxDB 1.6": "data + wal dirs after snapshot and full compaction",
        "Prometheus 2.42": "TSDB dir: the imported block, empty head"}


def _tsq(bodies: list[bytes], points: int) -> tuple[Sizes, Sizes, Sizes]:
    """The store written as /write writes it: each batch parsed, then stored in one write;
    measured open (its log not yet checkpointed), closed, then compacted."""
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "points.duckdb"
        store = EmbeddedStore(path)
        try:
            for body in bodies:
                store.write(parse_lines(body.decode(), "ns").numbers)
            stored = store.select(parse_selector("cpu")).points
            live = _size(Path(root))
        finally:
            store.close()
        _check("tsq", stored, points)
        written = _size(Path(root))
        compact(path)
        return live, written, _size(Path(root))


def _victoriametrics(bodies: list[bytes], points: int, hosts: int) -> Sizes:
    with tempfile.TemporaryDirectory() as root, \
            victoriametrics.victoriametrics(root=Path(root)) as base, \
            httpx.Client(base_url=base, timeout=600) as client:
        for body in bodies:
            client.post("/write", content=body).raise_for_status()
        client.get("/internal/force_flush").raise_for_status()
        _check("VictoriaMetrics", _promql_count(base, "cpu_value"), points)
        client.get("/internal/force_merge").raise_for_status()
        return _settled(Path(root) / "data")


def _influxdb(bodies: list[bytes], points: int, hosts: int) -> Sizes:
    with tempfile.TemporaryDirectory() as root, \
            influxdb.influxdb("bench", root=Path(root), data_settings=INFLUX_COLD) as base, \
            httpx.Client(base_url=base, timeout=600) as client:
        for body in bodies:
            answer = client.post("/write", params={"db": "bench", "precision": "ns"},
                                 content=body)
            answer.raise_for_status()
        counted = client.get("/query", params={
            "db": "bench", "q": "SELECT count(value) FROM cpu"}).json()
        _check("InfluxDB", counted["results"][0]["series"][0]["values"][0][1], points)
        wal = Path(root) / "wal"
        deadline = time.monotonic() + 120
        while any(f.stat().st_size for f in wal.rglob("*.wal")):  # not yet snapshotted
            if time.monotonic() > deadline:
                raise RuntimeError("InfluxDB did not snapshot its cache within 120 s")
            time.sleep(0.5)
        return _settled(Path(root) / "data") + _size(wal)


def _prometheus(bodies: list[bytes], points: int, hosts: int) -> Sizes:
    data = make_data(hosts)
    per_host = data["per_host"]
    dcs = ("gra", "rbx", "sbg", "bhs")
    seconds = data["timestamps"][:per_host] // 10**9
    text = prometheus.to_openmetrics(
        ("cpu", {"host": f"web{i:03d}", "dc": dcs[i % 4]}, seconds,
         data["values"][i * per_host:(i + 1) * per_host]) for i in range(hosts))
    with tempfile.TemporaryDirectory() as root:
        with prometheus.prometheus(text, root=Path(root)) as base:
            _check("Prometheus", _promql_count(base, "cpu"), points)
        return _size(Path(root) / "data")


def _promql_count(base: str, metric: str) -> int:
    found = prometheus.query(base, f"sum(count_over_time({metric}[1d]))", LAST_S)
    return int(float(found[0]["value"][1])) if found else 0


def _check(store: str, stored: int, points: int) -> None:
    if stored != points:
        raise RuntimeError(f"{store} holds {stored} of {points} points")


def _settled(directory: Path, timeout_s: float = 120) -> Sizes:
    """The directory's sizes once they have not changed for 3 s (merges run in the
    background)."""
    deadline = time.monotonic() + timeout_s
    last, since = Sizes(-1, -1), time.monotonic()
    while time.monotonic() < deadline:
        size = _size(directory)
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= 3:
            return size
        time.sleep(0.5)
    return last


class Sizes(NamedTuple):
    on_disk: int  # the blocks the files take, as `du` counts them: preallocated files are sparse
    apparent: int  # the files' lengths, as `ls` shows them

    def __add__(self, other: object) -> Sizes:
        assert isinstance(other, Sizes)
        return Sizes(self.on_disk + other.on_disk, self.apparent + other.apparent)


def _size(directory: Path) -> Sizes:
    """What the files under `directory` hold now. A store merging in the background makes
    and removes files and folders meanwhile (VictoriaMetrics' `tmp/…`): those that vanish
    during the walk are not counted, and `_settled` waits until nothing changes."""
    found: list[os.stat_result] = []
    for folder, _, files in os.walk(directory):  # a folder gone meanwhile is skipped
        for name in files:
            try:
                found.append(os.stat(os.path.join(folder, name)))
            except FileNotFoundError:
                continue
    return Sizes(int(np.sum([s.st_blocks * 512 for s in found])),
                 int(np.sum([s.st_size for s in found])))
