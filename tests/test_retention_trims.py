"""Retention never half-feeds a rollup: what a retention run deletes is recorded, and a rollup
run whose window's source was trimmed is skipped with the reason, keeping what earlier runs
wrote, instead of rolling the window up again from what is left. An hourly and a daily rollup
over one source, and a retention covered by both, on the real service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tsq.config import Settings
from tsq.run import Run
from tsq.selector import parse_selector
from tsq.service import Service
from tsq.trims import may_overlap

H = 3_600_000  # ms
DAY = 24 * H
T0 = 1_769_904_000_000  # 2026-02-01T00:00:00Z
LOOPS = """
functions:
  tg-1h:
    rollup: {from: tg_cpu, to: tg_cpu_1h, span: 1h, aggregate: mean}
    events:
      - hourly: {rate: "R/2026-01-01T00:00:00Z/PT1H/ET10M"}
  tg-1d:
    rollup: {from: tg_cpu, to: tg_cpu_1d, span: 1d, aggregate: mean}
    events:
      - daily: {rate: "R/2026-01-01T00:00:00Z/P1D/ET1H"}
  tg-retention:
    retention: {select: tg_cpu, keep: 1d, covered_by: [tg-1h, tg-1d]}
"""


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory,
        module_database_url: str | None) -> Iterator[Service]:
    service = Service(Settings.load(tmp_path_factory.mktemp("trims"), module_database_url))
    service.start()
    yield service
    service.close()


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def backfill(service: Service, loop: str, start_ms: int, end_ms: int) -> None:
    job = service.backfill(loop, dt(start_ms), dt(end_ms))
    deadline = time.monotonic() + 120
    while (status := service.backfill_status(job["id"]))["status"] != "done":
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["success"] == status["total"], status


def rollup(service: Service, loop: str, start_ms: int, end_ms: int) -> Run:
    final = service.run(loop, window=(dt(start_ms), dt(end_ms)))
    assert final.status == "success", final
    return final


def values(service: Service, selector: str, start_ms: int, end_ms: int) -> list[float]:
    found = service.store.select(parse_selector(selector), start_ms * 1_000_000,
                                 end_ms * 1_000_000)
    return [float(v) for s in found for v in s.values]


def test_a_rollup_skips_a_window_whose_source_retention_trimmed(svc: Service) -> None:
    # Three days of a point every 10 minutes whose value is its hour of the day: a day's mean
    # is 11.5, and the mean of any part of a day is something else.
    svc.write_lines("\n".join(
        f"tg_cpu,host=a value={(i // 6) % 24} {(T0 + i * 600_000) * 1_000_000}"
        for i in range(3 * 144)))
    svc.deploy(LOOPS, "loops.yml", lambda name: None)
    backfill(svc, "tg-1h", T0 + H, T0 + 3 * DAY + H)  # 72 hours
    backfill(svc, "tg-1d", T0 + DAY, T0 + 3 * DAY)  # the first two days
    assert values(svc, "tg_cpu_1d", T0, T0 + 3 * DAY) == [11.5, 11.5]

    # Retention at 2.5 days keeps one day: it deletes where both rollups succeeded, up to its
    # horizon in the middle of the second day.
    retention = svc.run("tg-retention", window=(dt(T0 + 2 * DAY + 11 * H),
                                                dt(T0 + 2 * DAY + 12 * H)))
    assert retention.result["covered"] == [["2026-02-01T00:00:00Z", "2026-02-02T12:00:00Z"]]
    assert retention.result["deleted"] == 216
    [trim] = svc.trims.overlapping("default", svc.connections.key_for(
        svc.loops.get("default", "tg-1d").latest.spec), parse_selector("tg_cpu"), T0,
        T0 + 3 * DAY)
    assert (trim.selector, trim.start_ms, trim.end_ms, trim.points, trim.loop, trim.run_id) == (
        "tg_cpu", T0, T0 + DAY + 12 * H, 216, "tg-retention", retention.id)

    # A late point arrives in the second day. Rolling that day up again would make its mean
    # from the afternoon's points and the late one: the run is skipped and says why.
    svc.write_lines(f"tg_cpu,host=a value=100 {(T0 + DAY + 13 * H + 1) * 1_000_000}")
    again = rollup(svc, "tg-1d", T0 + DAY, T0 + 2 * DAY)
    assert again.result["skipped"] == "source trimmed"
    assert again.result["window"] == ["2026-02-02T00:00:00Z", "2026-02-03T00:00:00Z"]
    assert [(t["from"], t["to"], t["run"]) for t in again.result["trimmed"]] == [
        ("2026-02-01T00:00:00Z", "2026-02-02T12:00:00Z", retention.id)]
    [line] = [entry["message"] for entry in svc.run_logs(again.id)["logs"]]
    assert line == (
        f"skipped: retention deleted points of tg_cpu inside this window "
        f"[2026-02-02T00:00:00Z, 2026-02-03T00:00:00Z): [2026-02-01T00:00:00Z, "
        f"2026-02-02T12:00:00Z) by tg-retention (run {retention.id}); rolling the window up "
        f"again would rewrite it from what is left of its source, so what earlier runs wrote "
        f"for it is kept")
    assert values(svc, "tg_cpu_1d", T0, T0 + 3 * DAY) == [11.5, 11.5]

    # The hourly rollup skips an hour that was trimmed, and rolls up one after the horizon.
    assert rollup(svc, "tg-1h", T0 + DAY, T0 + DAY + H).result["skipped"] == "source trimmed"
    assert values(svc, "tg_cpu_1h", T0 + DAY, T0 + DAY + H) == [0.0]
    late_hour = rollup(svc, "tg-1h", T0 + DAY + 13 * H, T0 + DAY + 14 * H)
    assert "skipped" not in late_hour.result and late_hour.result["written"] == 1
    assert values(svc, "tg_cpu_1h", T0 + DAY + 13 * H, T0 + DAY + 14 * H) == [
        (13 * 6 + 100) / 7]
    # The third day was never trimmed: its first rollup runs as ever.
    third = rollup(svc, "tg-1d", T0 + 2 * DAY, T0 + 3 * DAY)
    assert third.result["written"] == 1
    assert values(svc, "tg_cpu_1d", T0 + 2 * DAY, T0 + 3 * DAY) == [11.5]


@pytest.mark.parametrize(("retained", "source", "overlap"), [
    ("cpu", "cpu", True), ("cpu", 'cpu{dc="gra"}', True), ('cpu{dc="gra"}', "cpu", True),
    ('cpu{dc="gra"}', 'cpu{dc="rbx"}', False), ("cpu", "mem", False),
    ('cpu{dc="gra"}', 'cpu{host="a"}', True), ('cpu{dc=~"g.*"}', 'cpu{dc="rbx"}', True),
    ('{dc="gra"}', 'cpu{dc="gra"}', True), ('{dc="gra"}', 'cpu{dc="rbx"}', False),
])
def test_which_sources_a_retention_may_have_trimmed(retained: str, source: str,
                                                    overlap: bool) -> None:
    assert may_overlap(parse_selector(retained), parse_selector(source)) is overlap
    assert may_overlap(parse_selector(source), parse_selector(retained)) is overlap
