"""Scheduling with a clock the tests move: catch-up policies, epsilon, exactly-once keys,
lanes, retries, notifications, `after:` triggers, URL targets and backfill.

The worker pool is scripted (no V8 here; tests/test_api.py runs real workers), and APScheduler
is not started: the tests call what its jobs call, `Scheduler.record_due`, at chosen times.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.scheduling_helpers import (
    JOB,
    RATE,
    FakeClock,
    ScriptedPool,
    deploy,
    http_recorder,
    loop_yaml,
    make_service,
    ms,
    scheduler_of,
    utc,
    wait_until,
)
from tsq import metronome
from tsq.errors import BadRequest, NotFound
from tsq.outcomes import RunResult, RunStatus
from tsq.runstore import RunFilter
from tsq.scheduler import missed_times
from tsq.service import Service


def runs_of(service: Service, loop: str = "roll") -> list[dict[str, Any]]:
    """The loop's runs as the API lists them, by scheduled time."""
    records = [r.to_json() for r in service.runs.find(RunFilter(loop=loop, limit=1000))]
    return sorted(records, key=lambda r: (r["scheduled_ms"] or 0, r["id"]))


def settled(service: Service, count: int, loop: str = "roll") -> list[dict]:
    wait_until(lambda: len(runs_of(service, loop)) >= count and all(
        r["status"] not in ("queued", "running") for r in runs_of(service, loop)))
    return runs_of(service, loop)


def test_a_fire_creates_one_run_with_its_window_and_params(
        service: Service, clock: FakeClock, pool: ScriptedPool, tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml())
    scheduler = scheduler_of(service, clock)
    assert scheduler.next_times("default", "roll")["tick"] == utc("2026-01-01T00:01:00Z")
    clock.set(utc("2026-01-01T00:01:02Z"))
    scheduler.record_due([(JOB, [utc("2026-01-01T00:01:00Z")])])
    [run] = settled(service, 1)
    assert run["key"] == f"roll:tick:{ms('2026-01-01T00:01:00Z')}"
    assert run["status"] == "success"
    assert (run["window_start_ms"], run["window_end_ms"]) == (
        ms("2026-01-01T00:00:00Z"), ms("2026-01-01T00:01:00Z"))
    event = pool.jobs[0].event
    assert event["params"] == {"cell": "a"}
    assert event["window"]["start"] == "2026-01-01T00:00:00.000Z"
    assert event["window"]["endMs"] == ms("2026-01-01T00:01:00Z")
    assert event["epsilon"] == 30


def test_duplicate_fires_and_a_second_scheduler_create_no_second_run(
        service: Service, clock: FakeClock, pool: ScriptedPool, tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml())
    first, second = scheduler_of(service, clock), scheduler_of(service, clock)
    clock.set(utc("2026-01-01T00:01:01Z"))
    due = [(JOB, [utc("2026-01-01T00:01:00Z")])]
    first.record_due(due)
    second.record_due(due)
    first.record_due(due)
    runs = settled(service, 1)
    assert len(runs) == 1
    assert len(pool.jobs) == 1


@pytest.mark.parametrize(("catchup", "expected"), [
    # an outage from 00:01:30 to 00:10:10 misses 00:02 … 00:10 (9 times, ET30S)
    ("none", ["expired"] * 9),
    ("epsilon", ["expired"] * 8 + ["success"]),  # only 00:10 (10 s late) is within epsilon
    ("all", ["success"] * 9),
])
def test_catchup_policy_after_an_outage(service: Service, clock: FakeClock, pool: ScriptedPool,
                                        tmp_path: Path, catchup: str,
                                        expected: list[str]) -> None:
    deploy(service, tmp_path, loop_yaml(f"    catchup: {catchup}\n"))
    before = scheduler_of(service, clock)
    clock.set(utc("2026-01-01T00:01:00Z"))
    before.record_due([(JOB, [utc("2026-01-01T00:01:00Z")])])
    settled(service, 1)
    clock.set(utc("2026-01-01T00:10:10Z"))  # the service was down; now it starts again
    after = scheduler_of(service, clock)
    runs = settled(service, 10)[1:]
    assert [r["scheduled_ms"] for r in runs] == [
        ms(f"2026-01-01T00:{minute:02d}:00Z") for minute in range(2, 11)]
    assert [r["status"] for r in runs] == expected
    assert after.next_times("default", "roll")["tick"] == utc("2026-01-01T00:11:00Z")
    ran = pool.scheduled()[1:]
    assert ran == sorted(ran), "catch-up runs oldest first"
    assert pool.most_running == 1, "max_concurrency 1: catch-up never overlaps windows"


def test_expired_runs_say_why(service: Service, clock: FakeClock, tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml())
    scheduler = scheduler_of(service, clock)
    clock.set(utc("2026-01-01T00:01:45Z"))  # the scheduler itself was 45 s late
    scheduler.record_due([(JOB, [utc("2026-01-01T00:01:00Z")])])
    [run] = settled(service, 1)
    assert run["status"] == "expired"
    assert "45.0 s after its scheduled time" in run["error"]["message"]
    assert "epsilon of 30 s" in run["error"]["message"]
    assert any("epsilon" in line["message"] for line in service.runs.logs(run["id"]))


def test_a_new_schedule_is_not_backfilled_before_its_deploy(
        service: Service, clock: FakeClock, tmp_path: Path) -> None:
    clock.set(utc("2026-01-01T05:00:30Z"))
    deploy(service, tmp_path, loop_yaml("    catchup: all\n"))
    scheduler_of(service, clock)
    assert runs_of(service) == []
    clock.set(utc("2026-01-01T05:03:10Z"))
    scheduler_of(service, clock)  # restarted: only 05:01 … 05:03 were missed
    assert [r["scheduled_ms"] for r in settled(service, 3)] == [
        ms(f"2026-01-01T05:{minute:02d}:00Z") for minute in (1, 2, 3)]


def test_changing_a_schedule_replans_from_now(service: Service, clock: FakeClock,
                                              tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml())
    scheduler = scheduler_of(service, clock)
    service.scheduler = scheduler
    clock.set(utc("2026-01-01T00:07:30Z"))
    deploy(service, tmp_path, loop_yaml(rate="R/2026-01-01T00:00:00Z/PT5M/ET30S"))
    assert scheduler.next_times("default", "roll")["tick"] == utc("2026-01-01T00:10:00Z")
    assert runs_of(service) == [], "the old schedule's missed times are not run"
    service.delete_loop("roll")
    assert scheduler.next_times("default", "roll") == {}


def test_max_concurrency_lets_windows_overlap_when_allowed(
        service: Service, clock: FakeClock, pool: ScriptedPool, tmp_path: Path) -> None:
    pool.delay_s = 0.2
    deploy(service, tmp_path, loop_yaml("    catchup: all\n    max_concurrency: 3\n"))
    clock.set(utc("2026-01-01T00:06:10Z"))
    scheduler_of(service, clock)
    assert [r["status"] for r in settled(service, 6)] == ["success"] * 6  # 00:01 … 00:06
    assert pool.most_running == 3


def test_retries_back_off_then_succeed_in_one_record(
        service: Service, clock: FakeClock, pool: ScriptedPool, tmp_path: Path) -> None:
    attempts: list[int] = []

    def flaky(job):  # type: ignore[no-untyped-def]
        attempts.append(job.event["attempt"])
        if len(attempts) < 3:
            return RunResult.failed("Error", f"boom {len(attempts)}")
        return RunResult(RunStatus.SUCCESS, 42)

    pool.outcome = flaky
    deploy(service, tmp_path, loop_yaml("    retries: {max: 3, backoff: 10ms}\n"))
    scheduler = scheduler_of(service, clock)
    clock.set(utc("2026-01-01T00:01:01Z"))
    scheduler.record_due([(JOB, [utc("2026-01-01T00:01:00Z")])])
    [run] = settled(service, 1)
    assert attempts == [1, 2, 3], run
    assert (run["status"], run["attempt"], run["result"]) == ("success", 3, 42)
    messages = [line["message"] for line in service.runs.logs(run["id"])]
    assert any("boom 1" in m for m in messages) and any("boom 2" in m for m in messages)
    assert any("attempt 2 of 4" in m for m in messages)


def test_failures_and_expiry_are_posted_to_the_webhook_after_the_last_retry(
        service: Service, clock: FakeClock, pool: ScriptedPool, tmp_path: Path) -> None:
    pool.outcome = lambda job: RunResult.failed("Error", "disk full")
    with http_recorder(statuses=[503]) as hook:  # the first delivery fails: it is retried
        service.notifier.backoff_s = 0.01
        deploy(service, tmp_path, loop_yaml(
            f"    retries: {{max: 1, backoff: 10ms}}\n    notify: {{webhook: {hook.url}/h}}\n"))
        scheduler = scheduler_of(service, clock)
        clock.set(utc("2026-01-01T00:01:01Z"))
        scheduler.record_due([(JOB, [utc("2026-01-01T00:01:00Z")])])
        wait_until(lambda: len(pool.jobs) == 1)
        clock.set(utc("2026-01-01T00:02:50Z"))
        scheduler.record_due([(JOB, [utc("2026-01-01T00:02:00Z")])])
        settled(service, 2)
        wait_until(lambda: len(hook.received) == 3)
    kinds = sorted(item["body"]["type"] for item in hook.received[1:])
    assert kinds == ["run.expired", "run.failed"]
    failed = next(i["body"] for i in hook.received[1:] if i["body"]["type"] == "run.failed")
    assert failed["loop"] == "roll" and failed["message"] == "disk full"
    assert failed["run"]["attempt"] == 2, "notified once, after the retry failed too"


def test_after_runs_the_follower_for_the_same_window(
        service: Service, clock: FakeClock, pool: ScriptedPool, tmp_path: Path) -> None:
    text = loop_yaml() + ("  report:\n    handler: h.js\n    events:\n"
                          "      - done:\n          after: roll\n          params: {x: 1}\n")
    deploy(service, tmp_path, text)
    scheduler = scheduler_of(service, clock)
    clock.set(utc("2026-01-01T00:01:01Z"))
    scheduler.record_due([(JOB, [utc("2026-01-01T00:01:00Z")])])
    [source] = settled(service, 1)
    [follower] = settled(service, 1, loop="report")
    assert follower["trigger"] == "after"
    assert follower["key"] == f"report:done:{source['scheduled_ms']}"
    assert (follower["window_start_ms"], follower["window_end_ms"]) == (
        source["window_start_ms"], source["window_end_ms"])
    assert follower["params"] == {"x": 1}


def test_a_failed_run_triggers_no_follower(service: Service, clock: FakeClock,
                                           pool: ScriptedPool, tmp_path: Path) -> None:
    pool.outcome = lambda job: RunResult.failed("Error", "no")
    text = loop_yaml() + "  report:\n    handler: h.js\n    events:\n      - d: {after: roll}\n"
    deploy(service, tmp_path, text)
    scheduler = scheduler_of(service, clock)
    clock.set(utc("2026-01-01T00:01:01Z"))
    scheduler.record_due([(JOB, [utc("2026-01-01T00:01:00Z")])])
    settled(service, 1)
    assert runs_of(service, "report") == []


def test_url_target_gets_metronome_query_and_params(
        service: Service, clock: FakeClock, tmp_path: Path) -> None:
    with http_recorder(statuses=[200, 500]) as target:
        deploy(service, tmp_path, (
            f"functions:\n  ping:\n    target: {target.url}/task\n    events:\n"
            f"      - tick:\n          rate: {RATE}\n          params: {{cell: gra}}\n"))
        scheduler = scheduler_of(service, clock)
        clock.set(utc("2026-01-01T00:01:02Z"))
        scheduler.record_due([("default/ping/tick", [utc("2026-01-01T00:01:00Z")])])
        wait_until(lambda: len(target.received) == 1)
        clock.set(utc("2026-01-01T00:02:02Z"))
        scheduler.record_due([("default/ping/tick", [utc("2026-01-01T00:02:00Z")])])
        ok, failed = settled(service, 2, loop="ping")
    first = target.received[0]
    t = ms("2026-01-01T00:01:00Z") // 1000
    assert first["path"] == f"/task?time={t}&at={t + 2}&epsilon=30"
    assert first["body"] == {"cell": "gra"}
    assert ok["status"] == "success" and ok["result"]["status"] == 200
    assert failed["status"] == "failed"
    assert "answered 500" in failed["error"]["message"]


def test_backfill_skips_what_succeeded_and_reruns_the_rest(
        service: Service, clock: FakeClock, pool: ScriptedPool, tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml(rate="R/2025-12-01T00:00:00Z/PT1H/ET1M"))
    clock.set(utc("2026-01-01T00:00:30Z"))
    start, end = utc("2025-12-31T00:00:00Z"), utc("2026-01-01T00:00:00Z")
    job = service.backfill("roll", start, end)
    assert job["total"] == 24
    wait_until(lambda: service.backfill_status(job["id"])["status"] == "done")
    done = service.backfill_status(job["id"])
    assert (done["success"], done["skipped"]) == (24, 0)
    assert pool.scheduled() == sorted(pool.scheduled())
    again = service.backfill("roll", start, end + timedelta(hours=2))
    wait_until(lambda: service.backfill_status(again["id"])["status"] == "done")
    assert service.backfill_status(again["id"])["skipped"] == 24
    assert service.backfill_status(again["id"])["success"] == 2
    runs = runs_of(service)
    assert len(runs) == 26 and len({r["key"] for r in runs}) == 26


def test_backfill_rejects_bad_ranges(service: Service, clock: FakeClock,
                                     tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml())
    with pytest.raises(BadRequest, match="is empty"):
        service.backfill("roll", utc("2026-01-02T00:00:00Z"), utc("2026-01-01T00:00:00Z"))
    with pytest.raises(NotFound, match="no scheduled event 'nope'"):
        service.backfill("roll", utc("2026-01-01T00:00:00Z"), utc("2026-01-02T00:00:00Z"),
                         event="nope")
    with pytest.raises(BadRequest, match="at most 100000 runs"):
        service.backfill("roll", utc("2026-01-01T00:00:00Z"), utc("2026-06-01T00:00:00Z"))


def test_recovery_reruns_queued_runs_and_marks_running_ones_interrupted(
        clock: FakeClock, pool: ScriptedPool, tmp_path: Path, database_url: str | None) -> None:
    stopped = ScriptedPool(delay_s=3600)  # never ends: the service "dies" with these in flight
    dying = make_service(tmp_path / "data", clock, stopped, database_url)
    deploy(dying, tmp_path, loop_yaml("    catchup: all\n"))
    scheduler = scheduler_of(dying, clock)
    clock.set(utc("2026-01-01T00:02:01Z"))
    scheduler.record_due([(JOB, [utc("2026-01-01T00:01:00Z"), utc("2026-01-01T00:02:00Z")])])
    wait_until(lambda: len(stopped.jobs) == 1)
    restarted = make_service(tmp_path / "data", clock, pool, database_url)
    try:
        assert restarted.dispatcher.recover(restarted.runs.unfinished()) == 2
        first, second = settled(restarted, 2)
    finally:
        restarted.close()
    assert (first["status"], first["error"]["type"]) == ("failed", "Interrupted")
    assert second["status"] == "success"
    assert pool.scheduled() == [second["scheduled_ms"]]
    dying.close()


# -- properties of the pure parts ---------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(period_s=st.integers(1, 7200), offset_s=st.integers(0, 86_400),
       gap_s=st.integers(0, 86_400), last_k=st.one_of(st.none(), st.integers(0, 50)))
def test_missed_times_are_exactly_the_scheduled_times_in_the_gap(
        period_s: int, offset_s: int, gap_s: int, last_k: int | None) -> None:
    schedule = metronome.parse(f"R/2026-01-01T00:00:00Z/PT{period_s}S/ET1S")
    since = schedule.start + timedelta(seconds=offset_s)
    last = None if last_k is None else schedule.time_at(last_k)
    now = since + timedelta(seconds=gap_s)
    missed = list(islice(missed_times(schedule, since, last, now), 100_000))
    lower = since if last is None else max(since, last + timedelta(microseconds=1))
    assert all(lower <= t < now for t in missed)
    assert missed == sorted(set(missed))
    assert all(schedule.time_at(schedule.index_of(t)) == t for t in missed)
    following = schedule.next_at_or_after(missed[-1] + timedelta(microseconds=1) if missed
                                          else lower)
    assert following is None or following >= now, "no scheduled time in the gap is left out"


def test_events_that_fire_at_the_same_times_share_one_job(
        service: Service, clock: FakeClock, tmp_path: Path) -> None:
    """APScheduler's cost is per job: loops due at the same times (the same start, period and
    repetitions; epsilon may differ) are fired by one job, and each still gets its own run."""
    text = (loop_yaml(name="roll") + loop_yaml(name="same").replace("functions:\n", "")
            .replace("ET30S", "ET5S")
            + loop_yaml(name="other", rate="R/2026-01-01T00:00:30Z/PT1M/ET30S").replace(
                "functions:\n", ""))
    deploy(service, tmp_path, text)
    scheduler = scheduler_of(service, clock)
    jobs = {job.id: job for job in scheduler._aps.get_jobs()}
    assert len(jobs) == 2
    shared = next(i for i in jobs if jobs[i].trigger.schedule.start.second == 0)
    assert scheduler.next_times("default", "same")["tick"] == utc("2026-01-01T00:01:00Z")
    clock.set(utc("2026-01-01T00:01:02Z"))
    scheduler.record_due([(shared, [utc("2026-01-01T00:01:00Z")])])
    assert [r["key"] for r in settled(service, 1, "roll")] == [
        f"roll:tick:{ms('2026-01-01T00:01:00Z')}"]
    assert len(settled(service, 1, "same")) == 1
    assert runs_of(service, "other") == []

    service.delete_loop("roll")  # one of the two: the job stays for the other
    scheduler.sync("default", "roll")
    assert shared in {job.id for job in scheduler._aps.get_jobs()}
    service.delete_loop("same")
    scheduler.sync("default", "same")
    assert shared not in {job.id for job in scheduler._aps.get_jobs()}
    scheduler.close()
