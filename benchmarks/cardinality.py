"""Cardinality: the embedded store's one-point write and one-series select with 0, 100 k and
1 M other series stored (issue 20, item 5), and how long the store takes to open them. Each
count's cost is also given as a ratio to the empty store's, measured in the same run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import Report, timed
from tsq.connectors.embedded import EmbeddedStore
from tsq.selector import parse_selector
from tsq.series import SeriesSet

S = 10**9
START_NS = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
BATCH = 100_000  # series per populating write
DCS = ("gra", "rbx", "sbg", "bhs")


def population(first: int, count: int) -> SeriesSet:
    """`count` series `load{host, dc}` from number `first` on, one point each."""
    hosts = range(first, first + count)
    return SeriesSet(tuple(["load"] * count),
                     tuple({"host": f"h{i:07d}", "dc": DCS[i % 4]} for i in hosts),
                     np.full(count, START_NS, np.int64), np.ones(count),
                     np.arange(count + 1, dtype=np.int64))


def populated(path: Path, series: int) -> None:
    store = EmbeddedStore(path)
    try:
        for first in range(0, series, BATCH):
            store.write(population(first, min(BATCH, series - first)))
    finally:
        store.close()


def measure(report: Report, series: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "points.duckdb"
        populated(path, series)
        opened = time.perf_counter()
        store = EmbeddedStore(path)
        open_s = time.perf_counter() - opened
        try:
            clock = iter(range(1, 10**9))
            probe = {"host": "probe", "dc": "gra"}

            def write_one() -> None:
                at = START_NS + next(clock) * S
                assert store.write(SeriesSet.from_series([("load", probe, [at], [2.0])])) == 1

            write_one()  # creates the probe series: what follows are appends
            wanted = parse_selector('load{host="probe"}')

            def select_one() -> None:
                found = store.select(wanted)
                assert len(found) == 1 and found.points >= 1

            report.add("cardinality", f"one-point write, {series} series",
                       timed(write_one, repeat, warm=2))
            report.add("cardinality", f"one-series select, {series} series",
                       timed(select_one, repeat, warm=2))
            assert len(store.describe(parse_selector("load"))) == series + 1
        finally:
            store.close()
    report.note("cardinality", f"open, {series} series", {"open_s": round(open_s, 3)})


def run(report: Report, *, quick: bool) -> None:
    counts = (0, 1_000, 10_000) if quick else (0, 100_000, 1_000_000)
    repeat = 5 if quick else 30
    for series in counts:
        measure(report, series, repeat)
    rows = {str(r["impl"]): float(r["median_s"]) for r in report.rows  # type: ignore[arg-type]
            if r["bench"] == "cardinality"}
    for series in counts:
        write, select = (rows[f"{what}, {series} series"]
                         for what in ("one-point write", "one-series select"))
        report.note("cardinality", f"{series} series vs 0", {
            "write_ms": round(write * 1e3, 2), "select_ms": round(select * 1e3, 2),
            "write_ratio": round(write / rows["one-point write, 0 series"], 2),
            "select_ratio": round(select / rows["one-series select, 0 series"], 2)})
