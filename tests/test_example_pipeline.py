"""The example pipeline of examples/pipeline, driven by its own schedules on a clock the test
moves, with real workers on the embedded store: raw cpu → 1-minute rollup → 1-hour rollup →
daily report with a chart → deletion of raw points older than 7 days."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.scheduling_helpers import FakeClock
from tsq.config import Settings
from tsq.runstore import RunFilter
from tsq.scheduler import Scheduler
from tsq.selector import parse_selector
from tsq.service import Service

EXAMPLE = ROOT / "examples" / "pipeline"
DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
HOSTS = {"web01": "gra", "web02": "gra", "db01": "rbx"}


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(DAY0)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, clock: FakeClock) -> Iterator[Service]:
    # Not started: its own scheduler would follow the real time. The test's scheduler does the
    # firing, on the test's clock.
    service = Service(Settings.load(tmp_path_factory.mktemp("example")), clock=clock)
    yield service
    service.close()


def seed(service: Service, start: datetime, days: int) -> None:
    """One point a minute per host, a daily wave plus noise."""
    minutes = np.arange(days * 1440)
    stamps = int(start.timestamp()) * 10**9 + minutes * 60 * 10**9
    rng = np.random.default_rng(7)
    lines = []
    for host, dc in HOSTS.items():
        values = 50 + 30 * np.sin(minutes / 1440 * 2 * np.pi) + rng.normal(0, 5, minutes.size)
        lines += [f"cpu,dc={dc},host={host} value={v:.3f} {t}" for v, t in zip(values, stamps,
                                                                               strict=True)]
    service.write_lines("\n".join(lines))


def fire(service: Service, clock: FakeClock, scheduler: Scheduler, job: str,
         at: datetime) -> None:
    clock.set(at + timedelta(seconds=1))
    scheduler.record_due([(job, [at])])


def runs(service: Service, loop: str) -> list[dict[str, Any]]:
    return sorted((r.to_json() for r in service.runs.find(RunFilter(loop=loop, limit=10_000))),
                  key=lambda r: (r["scheduled_ms"] or 0))


def until_settled(service: Service, loop: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120
    while True:
        found = runs(service, loop)
        if len(found) >= count and all(r["status"] not in ("queued", "running") for r in found):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def raw_points(service: Service, start: datetime, end: datetime) -> int:
    found = service.store.select(parse_selector("cpu"), int(start.timestamp()) * 10**9,
                                 int(end.timestamp()) * 10**9)
    return int(sum(len(s.timestamps) for s in found))


@pytest.mark.timeout(600)
def test_the_example_pipeline_runs_on_its_schedule(svc: Service, clock: FakeClock) -> None:
    first = DAY0 - timedelta(days=9)
    seed(svc, first, 9)
    files = {p.name: p.read_text() for p in EXAMPLE.iterdir()}
    clock.set(first)  # deployed before the first fire: a pipeline runs the versions of its start
    svc.deploy(files["loops.yml"], "loops.yml", files.get)
    scheduler = Scheduler(svc.runs, svc.loops, svc.schedules, svc.dispatcher, clock)
    scheduler.plan_all()

    # Hourly fires of cpu-1m (cpu-1h follows each) for two days around the retention horizon
    # and for the day the report covers, then the daily report at 00:30 (the retention follows
    # it). The first week has no rollups at all: its raw points must survive.
    covered_from = DAY0 - timedelta(days=8)
    hours = [covered_from + timedelta(hours=h + 1) for h in range(48)]
    hours += [DAY0 - timedelta(hours=23 - h) for h in range(24)]
    for at in hours:
        fire(svc, clock, scheduler, "demo/cpu-1m/hourly", at)
    rollups = until_settled(svc, "cpu-1m", len(hours))
    assert {r["status"] for r in rollups} == {"success"}
    hourly = until_settled(svc, "cpu-1h", len(hours))
    assert {r["status"] for r in hourly} == {"success"}
    assert all(r["trigger"] == "after" for r in hourly)

    fire(svc, clock, scheduler, "demo/cpu-report/daily", DAY0 + timedelta(minutes=30))
    [report] = until_settled(svc, "cpu-report", 1)
    assert report["status"] == "success", report
    assert report["result"]["day"] == "2026-02-28"
    assert {s["dc"] for s in report["result"]["summary"]} == {"gra", "rbx"}
    listed = {a.name: a for a in svc.artifacts.list(report["id"])}
    assert set(listed) == {"cpu-hourly.csv", "cpu-hourly.png", "report.html"}
    chart, png = svc.artifacts.get(report["id"], "cpu-hourly.png")
    assert chart.content_type == "image/png" and png.startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.image

    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100

    [retention] = until_settled(svc, "cpu-retention", 1)
    assert retention["status"] == "success" and retention["pipeline_id"] == report["id"]
    horizon = DAY0 + timedelta(minutes=30) - timedelta(days=7)
    assert retention["result"]["horizon"] == "2026-02-22T00:30:00Z"
    assert "skipped" not in retention["result"]
    assert retention["result"]["covered"] == [["2026-02-21T00:00:00Z", "2026-02-22T00:30:00Z"]]
    assert retention["result"]["notCovered"] == [["2026-01-25T00:30:00Z", "2026-02-21T00:00:00Z"]]
    # Raw points older than 7 days are gone where both rollups covered them, the ones no rollup
    # covered are all there, and so is every point younger than 7 days.
    assert raw_points(svc, covered_from, horizon) == 0
    assert raw_points(svc, first, covered_from) == len(HOSTS) * (
        (covered_from - first).total_seconds() // 60)
    assert raw_points(svc, horizon, DAY0) == len(HOSTS) * (DAY0 - horizon).total_seconds() // 60
    # [02-21T00:00, 02-22T00:30): the point at 00:00 opens the first covered window, the one at
    # the horizon is not older than 7 days.
    assert retention["result"]["deleted"] == len(HOSTS) * (
        (horizon - covered_from).total_seconds() // 60)


def test_late_points_re_roll_the_example_hours_within_two_days(svc: Service,
                                                               clock: FakeClock) -> None:
    # After the test above: cpu-1m and cpu-1h covered the day before DAY0 and two days a week
    # earlier (whose raw points retention has deleted since).
    hour = DAY0 - timedelta(hours=6)
    at = int(hour.timestamp() * 1000) + 30_000  # between two of web01's minute points
    before = minute_value(svc, "cpu_1m", 'host="web01"', hour)
    svc.write_lines(f"cpu,dc=gra,host=web01 value=1000 {at * 10**6}")
    reroll(svc)  # the service's re-roll thread, driven here, as the scheduler is
    until_attempt(svc, "cpu-1m", hour, 2)
    assert minute_value(svc, "cpu_1m", 'host="web01"', hour) == pytest.approx((before + 1000) / 2)
    reroll(svc)  # the re-rolled minutes were a late write into cpu-1h's source
    until_attempt(svc, "cpu-1h", hour, 2)
    assert minute_value(svc, "cpu_1h", 'dc="gra"', hour) == pytest.approx(mean_of_minutes(
        svc, hour))

    old = DAY0 - timedelta(days=8)  # past the 2-day horizon: left as it is, and said
    svc.write_lines(f"cpu,dc=gra,host=web01 value=1000 {int(old.timestamp()) * 10**9 + 30 * 10**9}")
    reroll(svc)
    [run] = [r for r in runs(svc, "cpu-1m") if r["window_start_ms"] == old.timestamp() * 1000]
    assert run["attempt"] == 1
    assert any("not re-rolled" in line["message"] and "(late.within 2d)" in line["message"]
               for line in svc.runs.logs(run["id"]))


def reroll(service: Service) -> None:
    for (project, loop), ranges in service.late.take().items():
        assert service.rerolls.reroll(project, loop, ranges) == []


def until_attempt(service: Service, loop: str, window_start: datetime, attempt: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        [run] = [r for r in runs(service, loop)
                 if r["window_start_ms"] == window_start.timestamp() * 1000]
        if run["attempt"] == attempt and run["status"] == "success":
            return
        assert time.monotonic() < deadline, run
        time.sleep(0.05)


def minute_value(service: Service, name: str, matcher: str, start: datetime) -> float:
    ns = int(start.timestamp()) * 10**9
    [found] = service.store.select(parse_selector(f"{name}{{{matcher}}}"), ns, ns + 60 * 10**9)
    return float(found.values[0])


def mean_of_minutes(service: Service, hour: datetime) -> float:
    """cpu_1h's mean for gra: the mean of its hosts' hourly means of cpu_1m."""
    ns = int(hour.timestamp()) * 10**9
    found = service.store.select(parse_selector('cpu_1m{dc="gra"}'), ns, ns + 3600 * 10**9)
    return float(np.mean([s.values.mean() for s in found]))
