"""Runs by hand with the window of a scheduled time (`tsq run --at/--window`), on a clock the
tests move and a scripted worker pool: which window a run gets, that it never takes the key of
the scheduled run of that time, and the order the run list shows backfilled runs in."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.scheduling_helpers import (
    JOB,
    RATE,
    FakeClock,
    ScriptedPool,
    deploy,
    loop_yaml,
    ms,
    scheduler_of,
    utc,
    wait_until,
)
from tsq import metronome
from tsq.errors import BadRequest
from tsq.run import Run
from tsq.runstore import RunFilter
from tsq.service import Service, run_window, time_field


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc("2026-01-01T00:10:30Z"))


def window_of(record: Run) -> tuple[int | None, int | None]:
    return record.window_start_ms, record.window_end_ms


def all_runs(service: Service, loop: str | None = None) -> list[Run]:
    return service.runs.find(RunFilter(loop=loop, limit=1000))


def test_at_runs_the_window_the_scheduler_gives_that_time(
        service: Service, clock: FakeClock, pool: ScriptedPool, tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml())
    record = service.run("roll", at=utc("2026-01-01T00:05:00Z"))
    assert record.status == "success" and record.key is None
    assert record.scheduled_ms == ms("2026-01-01T00:05:00Z")
    assert window_of(record) == (ms("2026-01-01T00:04:00Z"), ms("2026-01-01T00:05:00Z"))
    event = pool.jobs[0].event
    assert event["window"]["start"] == "2026-01-01T00:04:00.000Z"
    assert event["window"]["end"] == "2026-01-01T00:05:00.000Z"
    assert event["scheduled"] == "2026-01-01T00:05:00.000Z"

    # the scheduler still runs 00:05, with the very same window, under its own key
    clock.set(utc("2026-01-01T00:05:01Z"))
    scheduler_of(service, clock).record_due([(JOB, [utc("2026-01-01T00:05:00Z")])])
    wait_until(lambda: len(all_runs(service)) == 2 and all(
        r.status == "success" for r in all_runs(service)))
    fired = next(r for r in all_runs(service) if r.trigger == "schedule")
    assert fired.key == f"roll:tick:{ms('2026-01-01T00:05:00Z')}"
    assert window_of(fired) == window_of(record)


def test_a_backfill_still_runs_a_time_that_was_run_by_hand(
        service: Service, tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml())
    assert service.run("roll", event="tick", at=utc("2026-01-01T00:06:00Z")).status == \
        "success"
    job = service.backfill("roll", utc("2026-01-01T00:06:00Z"), utc("2026-01-01T00:07:00Z"))
    wait_until(lambda: service.backfill_status(job["id"])["status"] == "done")
    done = service.backfill_status(job["id"])
    assert (done["total"], done["success"], done["skipped"]) == (1, 1, 0)
    backfilled = [r for r in all_runs(service) if r.trigger == "backfill"]
    assert [(r.status, r.scheduled_ms) for r in backfilled] == [
        ("success", ms("2026-01-01T00:06:00Z"))]


def test_without_at_or_window_a_scheduled_loop_gets_its_latest_complete_period(
        service: Service, clock: FakeClock, pool: ScriptedPool, tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml())
    record = service.run("roll")  # the clock says 00:10:30
    assert record.scheduled_ms == ms("2026-01-01T00:10:00Z")
    assert window_of(record) == (ms("2026-01-01T00:09:00Z"), ms("2026-01-01T00:10:00Z"))
    clock.set(utc("2026-01-01T00:11:00Z"))  # a scheduled time itself: its period is complete
    assert window_of(service.run("roll")) == (ms("2026-01-01T00:10:00Z"),
                                              ms("2026-01-01T00:11:00Z"))
    assert [job.event["window"]["endMs"] for job in pool.jobs] == [
        ms("2026-01-01T00:10:00Z"), ms("2026-01-01T00:11:00Z")]


def test_window_is_run_as_given(service: Service, pool: ScriptedPool, tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml())
    record = service.run("roll", window=(utc("2026-01-01T00:02:30Z"),
                                         utc("2026-01-01T00:03:30Z")))
    assert window_of(record) == (ms("2026-01-01T00:02:30Z"), ms("2026-01-01T00:03:30Z"))
    assert record.scheduled_ms is None and record.key is None
    assert pool.jobs[0].event["window"]["startMs"] == ms("2026-01-01T00:02:30Z")


def test_a_loop_without_schedule_runs_without_window_unless_given_one(
        service: Service, pool: ScriptedPool, tmp_path: Path) -> None:
    deploy(service, tmp_path, "functions:\n  plain:\n    handler: h.js\n")
    bare = service.run("plain")
    assert window_of(bare) == (None, None) and pool.jobs[0].event["window"] is None
    given = service.run("plain", window=(utc("2026-01-01T00:00:00Z"),
                                         utc("2026-01-01T01:00:00Z")))
    assert window_of(given) == (ms("2026-01-01T00:00:00Z"), ms("2026-01-01T01:00:00Z"))
    with pytest.raises(BadRequest, match=r"loop 'plain' has no schedule \(`rate:`\), so --at "
                                         r"\(`at`\) names no scheduled time; give the window "
                                         r"itself with --window START/END"):
        service.run("plain", at=utc("2026-01-01T00:00:00Z"))


def test_bad_at_and_window_say_what_would_be_right(service: Service, tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml())
    with pytest.raises(BadRequest) as between:
        service.run("roll", at=utc("2026-01-01T00:05:30Z"))
    assert between.value.message == (
        "--at (`at`) 2026-01-01T00:05:30+00:00 is not a scheduled time of " + RATE +
        "; the nearest ones are 2026-01-01T00:05:00+00:00 and 2026-01-01T00:06:00+00:00")
    with pytest.raises(BadRequest, match="the nearest one is 2026-01-01T00:00:00"):
        service.run("roll", at=utc("2025-12-31T23:59:00Z"))  # before the schedule began
    with pytest.raises(BadRequest, match="not both"):
        service.run("roll", at=utc("2026-01-01T00:05:00Z"),
                    window=(utc("2026-01-01T00:00:00Z"), utc("2026-01-01T00:01:00Z")))
    with pytest.raises(BadRequest, match="is empty; its start must be before its end"):
        service.run("roll", window=(utc("2026-01-01T00:01:00Z"), utc("2026-01-01T00:01:00Z")))
    assert all_runs(service) == []


def test_events_with_different_schedules_need_event_for_at(
        service: Service, tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml(more_events=
        "      - slow:\n          rate: R/2026-01-01T00:00:00Z/PT5M/ET30S\n"))
    assert window_of(service.run("roll")) == (None, None)  # which period? none is guessed
    with pytest.raises(BadRequest, match=r"different schedules \(tick, slow\); say which one "
                                         r"with --event"):
        service.run("roll", at=utc("2026-01-01T00:05:00Z"))
    slow = service.run("roll", event="slow", at=utc("2026-01-01T00:05:00Z"))
    assert window_of(slow) == (ms("2026-01-01T00:00:00Z"), ms("2026-01-01T00:05:00Z"))
    assert slow.event == "slow"
    assert window_of(service.run("roll", event="slow")) == (ms("2026-01-01T00:05:00Z"),
                                                            ms("2026-01-01T00:10:00Z"))


def test_a_run_by_hand_sets_off_no_follower_and_takes_no_key(
        service: Service, clock: FakeClock, tmp_path: Path) -> None:
    clock.set(utc("2026-01-01T00:05:01Z"))  # before the deploy: a pipeline pins the versions
    deploy(service, tmp_path, loop_yaml() + "  next:\n    handler: h.js\n    events:\n"
                                            "      - go:\n          after: roll\n")
    service.run("roll", at=utc("2026-01-01T00:05:00Z"))
    assert all_runs(service, "next") == []
    scheduler_of(service, clock).record_due([(JOB, [utc("2026-01-01T00:05:00Z")])])
    wait_until(lambda: [r.status for r in all_runs(service, "next")] == ["success"])
    [follower] = all_runs(service, "next")
    assert follower.key == f"next:go:{ms('2026-01-01T00:05:00Z')}"
    assert window_of(follower) == (ms("2026-01-01T00:04:00Z"), ms("2026-01-01T00:05:00Z"))


def test_the_run_list_shows_backfilled_runs_newest_scheduled_time_first(
        service: Service, tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml())

    def backfill(start: str, end: str) -> None:
        job = service.backfill("roll", utc(start), utc(end))
        wait_until(lambda: service.backfill_status(job["id"])["status"] == "done")

    # the three newest first, then all six: the three oldest are queued (and end) last
    backfill("2026-01-01T00:03:00Z", "2026-01-01T00:06:00Z")
    backfill("2026-01-01T00:00:00Z", "2026-01-01T00:06:00Z")
    listed = service.list_runs(RunFilter(loop="roll"))["runs"]
    assert [r["scheduled_ms"] for r in listed] == [
        ms(f"2026-01-01T00:0{minute}:00Z") for minute in (5, 4, 3, 2, 1, 0)]
    assert {r["status"] for r in listed} == {"success"}


def test_backfill_bounds_the_scheduled_times_not_the_windows(
        service: Service, tmp_path: Path) -> None:
    """As `tsq backfill --help` and docs/scheduling.md say: FROM <= t < TO, and each run covers
    [t - period, t), so the first window begins one period before the first scheduled time."""
    deploy(service, tmp_path, loop_yaml())
    job = service.backfill("roll", utc("2026-01-01T00:00:30Z"), utc("2026-01-01T00:03:00Z"))
    wait_until(lambda: service.backfill_status(job["id"])["status"] == "done")
    ran = sorted((r.scheduled_ms, window_of(r)) for r in all_runs(service))
    assert ran == [(ms(t), (ms(start), ms(t))) for start, t in (
        ("2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"),
        ("2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"))]


def test_latest_complete_period_and_neighbours_of_a_schedule() -> None:
    schedule = metronome.parse("R2/2026-01-31T00:00:00Z/P1M/ET1M")  # Jan 31, Feb 28, Mar 31
    assert schedule.latest_at_or_before(utc("2026-01-30T00:00:00Z")) is None
    assert schedule.latest_at_or_before(utc("2026-03-01T00:00:00Z")) == utc("2026-02-28T00:00:00Z")
    assert schedule.latest_at_or_before(utc("2027-01-01T00:00:00Z")) == utc("2026-03-31T00:00:00Z")
    assert schedule.neighbours(utc("2026-02-28T00:00:00Z")) == (
        utc("2026-01-31T00:00:00Z"), utc("2026-03-31T00:00:00Z"))
    assert schedule.neighbours(utc("2026-05-01T00:00:00Z")) == (utc("2026-03-31T00:00:00Z"), None)
    assert schedule.neighbours(utc("2026-01-01T00:00:00Z")) == (None, utc("2026-01-31T00:00:00Z"))


@pytest.mark.parametrize(("body", "message"), [
    ("2026-01-01T00:00:00Z/2026-01-01T00:05:00Z",
     'window must be an object {"start": "2026-01-01T00:00:00Z", "end": '
     '"2026-01-01T00:05:00Z"}, not "2026-01-01T00:00:00Z/2026-01-01T00:05:00Z"'),
    ({"start": "2026-01-01T00:00:00Z"}, "window must be an object"),
    ({"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:05:00Z", "stop": 1},
     "unknown key window.stop"),
    ({"start": 1767225600000, "end": "2026-01-01T00:05:00Z"},
     "window.start must be an ISO-8601 time string like 2026-01-01T00:00:00Z, not 1767225600000"),
    ({"start": "2026-01-01T00:00:00Z", "end": "soon"}, "window.end 'soon' is not an ISO-8601"),
    ({"start": "2026-01-01T00:00:00 CET", "end": "2026-01-01T00:05:00Z"},
     "window.start '2026-01-01T00:00:00 CET' is not an ISO-8601 time like 2026-01-01T00:00:00Z"),
])
def test_a_bad_window_in_a_request_names_the_field(body: Any, message: str) -> None:
    with pytest.raises(BadRequest) as bad:
        run_window(body)
    assert message in bad.value.message


def test_a_good_window_and_at_in_a_request() -> None:
    assert run_window({"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:05:00+00:00"}) == (
        utc("2026-01-01T00:00:00Z"), utc("2026-01-01T00:05:00Z"))
    assert run_window(None) is None
    # one rule for every time in tsq (tsq.isotime): without an offset, a time is UTC
    assert run_window({"start": "2026-01-01T00:00:00", "end": "2026-01-01T00:05:00Z"}) == (
        utc("2026-01-01T00:00:00Z"), utc("2026-01-01T00:05:00Z"))
    assert time_field("2026-01-01T01:00:00+01:00", "at") == datetime.fromisoformat(
        "2026-01-01T00:00:00+00:00")
    with pytest.raises(BadRequest, match="at must be an ISO-8601 time string"):
        time_field(5, "at")
