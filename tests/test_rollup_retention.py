"""Rollups and retention on the embedded store: a rollup replaces its window when run again, and a
retention step deletes raw points only where every rollup it depends on succeeded, so a failing
rollup keeps its window's raw data until the rollup is resumed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsq.config import Settings
from tsq.errors import InvalidLoopFile
from tsq.retention import intersect, merge, subtract
from tsq.run import Run
from tsq.selector import parse_selector
from tsq.service import Service
from tsq.shorthands import RollupSpec, rollup_tsl

H = 3_600_000  # ms
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PIPELINE = """
functions:
  cpu-1m:
    rollup: {from: rr_cpu, to: rr_cpu_1m, span: 1m, aggregate: mean, by: [dc]}
    events:
      - hourly: {rate: "R/2026-01-01T00:00:00Z/PT1H/ET10M"}
  cpu-1h:
    rollup: {from: rr_cpu_1m, to: rr_cpu_1h, span: 1h, aggregate: max}
    events:
      - after-1m: {after: cpu-1m}
  cpu-retention:
    retention: {select: rr_cpu, keep: 1h, covered_by: [cpu-1m, cpu-1h]}
    events:
      - after-1h: {after: cpu-1h}
"""


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(Settings.load(tmp_path_factory.mktemp("rollups")))
    service.start()
    yield service
    service.close()


def points(service: Service, selector: str, start_ms: int | None = None,
           end_ms: int | None = None) -> int:
    found = service.store.select(parse_selector(selector),
                                 None if start_ms is None else start_ms * 1_000_000,
                                 None if end_ms is None else end_ms * 1_000_000)
    return int(sum(len(s.timestamps) for s in found))


def backfill(service: Service, loop: str, start_ms: int, end_ms: int) -> None:
    job = service.backfill(loop, _dt(start_ms), _dt(end_ms))
    deadline = time.monotonic() + 60
    while service.backfill_status(job["id"])["status"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def settled(service: Service, loop: str, count: int) -> list[dict[str, Any]]:
    """The runs of `loop`, oldest first, once `count` of them have ended."""
    deadline = time.monotonic() + 60
    while True:
        runs = service.list_runs(_filter(loop))["runs"]
        ended = [r for r in runs if r["status"] not in ("queued", "running")]
        if len(ended) >= count:
            return sorted(ended, key=lambda r: r["scheduled_ms"])
        assert time.monotonic() < deadline, runs
        time.sleep(0.05)


def test_a_failing_rollup_keeps_its_raw_window_until_it_is_resumed(svc: Service) -> None:
    # Three hours of raw points every 10 s from four hosts in two data centres; in the second
    # hour a fifth host sends text, which makes the 1-minute rollup of that hour fail.
    lines = [f"rr_cpu,dc={'gra' if h < 2 else 'rbx'},host=h{h} value={h + i % 7} "
             f"{(T0 + i * 10_000) * 1_000_000}" for h in range(4) for i in range(3 * 360)]
    lines.append(f'rr_cpu,dc=gra,host=h9 value="oops" {(T0 + H + 30_000) * 1_000_000}')
    svc.write_lines("\n".join(lines))
    svc.deploy(PIPELINE, "loops.yml", lambda name: None)
    backfill(svc, "cpu-1m", T0 + H, T0 + 4 * H)  # scheduled times; windows end there

    rollups = settled(svc, "cpu-1m", 3)
    assert [r["status"] for r in rollups] == ["success", "failed", "success"]
    assert rollups[1]["error"]["message"] == (
        'sampleBy needs numbers, and the selection has series holding text: '
        'rr_cpu{dc=gra,host=h9}')
    retentions = settled(svc, "cpu-retention", 2)
    # Window [02:00, 03:00) has horizon 02:00: only the first hour is covered by both rollups.
    last = retentions[-1]["result"]
    assert last["skipped"] == "not covered"
    assert last["covered"] == [["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"]]
    assert ["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"] in last["notCovered"]
    # The raw points of the failed hour [01:00, 02:00) are all still there, the one at 01:00
    # included; the covered hour's are gone.
    assert points(svc, "rr_cpu", T0 + H, T0 + 2 * H) == 4 * 360 + 1
    assert points(svc, "rr_cpu", T0, T0 + H) == 0
    assert points(svc, "rr_cpu_1m") == 2 * 60 * 2  # two hours of two data centres
    assert points(svc, "rr_cpu_1h") == 2 * 2

    # Running a rolled-up window again replaces its output, never duplicates it; and once
    # retention has deleted a window's raw points, running it again keeps what it made.
    assert rerun(svc, rollups[2]).result["replaced"] == rerun(svc, rollups[2]).result[
        "written"] == 120
    assert rerun(svc, rollups[0]).result["skipped"] == "source trimmed"
    assert points(svc, "rr_cpu_1m", T0, T0 + H) == 120   # labelled 00:00 … 00:59

    # Fix the source and resume the failed rollup: its followers run, and the next retention
    # run deletes the hour that is now covered.
    svc.store.delete(parse_selector('rr_cpu{host="h9"}'))
    svc.resume(rollups[1]["id"])
    assert settled(svc, "cpu-1m", 3)[1]["status"] == "success"
    settled(svc, "cpu-retention", 3)
    backfill(svc, "cpu-1m", T0 + 4 * H, T0 + 5 * H)
    retentions = settled(svc, "cpu-retention", 4)
    assert "skipped" not in retentions[-1]["result"]
    assert points(svc, "rr_cpu", T0 + H, T0 + 3 * H) == 0  # covered and old enough
    assert points(svc, "rr_cpu_1m") == 3 * 60 * 2


def test_rollup_shorthand_becomes_tsl() -> None:
    spec = RollupSpec('cpu{dc="gra",host=~"web.*"}', "cpu_1m", "1m", "mean", ("dc",))
    assert rollup_tsl(spec).splitlines()[1] == (
        'select("cpu").where("dc=gra", "host~web.*").from(start, end).sampleBy(1m, mean)'
        '.groupBy(["dc"], mean).rename("cpu_1m")')
    assert ".group(sum)" in rollup_tsl(RollupSpec("cpu", "n", "5m", "count", ()))


def test_shorthand_mistakes_are_deploy_errors(svc: Service) -> None:
    bad = """
functions:
  r1:
    rollup: {from: 'cpu{', to: x, span: 1m}
  r2:
    rollup: {from: cpu, to: x, span: 1y, aggregate: median, by: [dc]}
  r3:
    retention: {select: cpu, keep: 7d}
  r4:
    retention: {select: cpu, keep: 7d, covered_by: [nope]}
  r5:
    handler: r5.js
    rollup: {from: cpu, to: x, span: 1m}
"""
    with pytest.raises(InvalidLoopFile) as caught:
        svc.deploy(bad, "bad.yml", lambda name: "export default () => 1")
    text = str(caught.value)
    for expected in ("functions.r1.rollup.from", "functions.r2.rollup.span",
                     "functions.r2.rollup.aggregate: median cannot be combined",
                     "functions.r3.retention: a retention deletes only what rollups cover",
                     "functions.r4.retention.covered_by: unknown loop 'nope'",
                     "functions.r5.rollup: a loop has one of"):
        assert expected in text, (expected, text)
    assert svc.list_loops()["loops"] == [] or all(
        loop["name"] not in {"r1", "r2", "r3", "r4", "r5"} for loop in svc.list_loops()["loops"])


intervals = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=8)


@given(intervals, intervals)
def test_interval_math_matches_a_brute_force_grid(left: list[tuple[int, int]],
                                                  right: list[tuple[int, int]]) -> None:
    def grid(parts: list[tuple[int, int]]) -> np.ndarray:
        cells = np.zeros(61, bool)
        for start, end in parts:
            cells[start:end] = True
        return cells

    a, b = merge(left), merge(right)
    assert np.array_equal(grid(a), grid(left))
    assert all(x[1] < y[0] for x, y in zip(a, a[1:], strict=False))  # disjoint, not touching
    assert np.array_equal(grid(intersect(a, b)), grid(left) & grid(right))
    assert np.array_equal(grid(subtract((5, 50), a)), grid([(5, 50)]) & ~grid(left))


def rerun(service: Service, listed: dict[str, Any]) -> Run:
    """Run a listed run again, as `tsq resume` would a failed one."""
    current = service.runs.get(listed["id"])
    again = service.runs.requeue(current.id, attempt=current.attempt + 1,
                                 not_before_ms=None, message="again")
    done = service.dispatcher.wait(again.id)
    service.dispatcher.offer(again)
    final = done.result(timeout=60)
    assert final.status == "success", final
    return final


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _filter(loop: str) -> Any:
    from tsq.runstore import RunFilter
    return RunFilter(loop=loop, limit=1000)
