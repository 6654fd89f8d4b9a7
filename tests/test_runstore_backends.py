"""The run store on each backend (SQLite and PostgreSQL, tests/conftest.py's `database_url`):
the unique run key, claims racing each other, settling with every shape of result, id prefixes;
what the stores beside it keep alike on both; and what a wrong PostgreSQL URL says."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
import sqlalchemy as sa

from tests import pgserver
from tests.conftest import free_port, tsq
from tsq import db, hotsql, planstats
from tsq.artifacts import ArtifactStore
from tsq.db import schedules
from tsq.errors import BadRequest, ConfigError
from tsq.outcomes import RunError, RunResult, RunStatus
from tsq.runlog import LogLine
from tsq.runstore import NewRun, RunStore, Settlement, keyed_statuses_query, run_key
from tsq.schedulestore import ScheduleStore
from tsq.selector import parse_selector
from tsq.trims import TrimStore


@pytest.fixture
def url(database_url: str | None, tmp_path: Path) -> str:
    return database_url or f"sqlite:///{tmp_path / 'tsq.db'}"


@pytest.fixture
def store(url: str) -> Iterator[RunStore]:
    made = RunStore(db.connect(url))
    yield made
    made.close()


@pytest.fixture
def pg_url(postgres: pgserver.PostgresServer) -> Iterator[str]:
    """A PostgreSQL database of the test's own, dropped after it."""
    with postgres.own_database() as made:
        yield made


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[RunStore]:
    """A run store on the test's own PostgreSQL database."""
    made = RunStore(db.connect(pg_url))
    yield made
    made.close()


def scheduled(at_ms: int, loop: str = "roll") -> NewRun:
    return NewRun(project="default", loop=loop, event="tick", version_id="v1",
                  trigger="schedule", params={"cell": "gra"},
                  key=run_key(loop, "tick", at_ms), scheduled_ms=at_ms,
                  window=(at_ms - 60_000, at_ms))


def side_by_side(claimer: Callable[[int], None]) -> None:
    """`claimer(0)` and `claimer(1)` on two threads let go at once (as two processes would
    claim); what either raised fails the test."""
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(which: int) -> None:
        try:
            start.wait(timeout=30)
            claimer(which)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(which,)) for which in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


def test_a_run_key_makes_a_scheduled_time_run_once(store: RunStore) -> None:
    first = store.create_new([scheduled(60_000), scheduled(120_000)])
    again = store.create_new([scheduled(120_000), scheduled(180_000), scheduled(180_000)])
    assert [r.scheduled_ms for r in first] == [60_000, 120_000]
    assert [r.scheduled_ms for r in again] == [180_000]  # a duplicate in one batch too
    with pytest.raises(sa.exc.IntegrityError):
        store.create(scheduled(60_000))
    keys = store.by_keys("default", [run_key("roll", "tick", ms)
                                     for ms in (60_000, 120_000, 180_000)])
    assert sorted(run.scheduled_ms or 0 for run in keys.values()) == [60_000, 120_000, 180_000]
    # The key is unique per project: another project's same time is a run of its own.
    other = store.create_new([NewRun(**{**scheduled(60_000).__dict__, "project": "other"})])
    assert len(other) == 1
    # a later time run by a backfill is not the schedule's newest
    store.create_new([NewRun(**{**scheduled(240_000).__dict__, "trigger": "backfill",
                                "key": "backfill:roll:tick:240000"})])
    events = [("default", "roll", "tick"), ("other", "roll", "tick"), ("other", "none", "tick")]
    assert store.last_scheduled(events) == {("default", "roll", "tick"): 180_000,
                                            ("other", "roll", "tick"): 60_000}


def test_concurrent_claimers_never_claim_a_run_twice(url: str) -> None:
    """Two stores on engines of their own (as two processes would be) claim the same runs at
    once, in batches taken in opposite orders: every run is claimed by exactly one of them."""
    stores = [RunStore(db.connect(url)) for _ in range(2)]
    try:
        made = stores[0].create_new([scheduled(60_000 * (i + 1)) for i in range(400)])
        ids = [run.id for run in made]
        got: list[list[str]] = [[], []]

        def claim(which: int) -> None:
            order = ids if which == 0 else ids[::-1]
            for at in range(0, len(order), 20):
                got[which].extend(stores[which].claim_many(order[at:at + 40]))

        side_by_side(claim)
        assert not set(got[0]) & set(got[1]), "a run was claimed by both"
        assert len(got[0]) == len(set(got[0])) and len(got[1]) == len(set(got[1]))
        assert sorted(got[0] + got[1]) == sorted(ids)
        assert {run.status for run in stores[0].unfinished()} == {RunStatus.RUNNING}
        assert stores[1].claim_many(ids) == set()  # none is queued any more
    finally:
        for made_store in stores:
            made_store.close()


def test_a_limited_claim_takes_the_oldest_runs_its_loops_lane_has_room_for(
        store: RunStore) -> None:
    roll = store.create_new([scheduled(60_000 * i) for i in (3, 1, 2, 4)])
    other = store.create_new([scheduled(60_000 * i, loop="other") for i in (1, 2)])
    by_time = {run.scheduled_ms: run for run in roll}
    assert store.claim_many([by_time[60_000 * 4].id]) == {by_time[60_000 * 4].id}  # running
    wanted = [(run, 3) for run in roll] + [(run, 1) for run in other]
    claimed = store.claim_limited(wanted)
    # 3 less the one running: the two oldest queued; the other loop's lane has its own room
    assert claimed == {by_time[60_000].id, by_time[120_000].id, other[0].id}
    assert store.claim_limited(wanted) == set()  # both lanes are full now
    manual = NewRun(**{**scheduled(0).__dict__, "trigger": "manual", "key": None})
    assert store.claim_many([store.create(manual).id])  # a run by hand takes no lane room
    store.settle_many([Settlement(store.get(by_time[60_000].id), RunResult(RunStatus.SUCCESS),
                                  [])])
    assert store.claim_limited(wanted) == {by_time[180_000].id}


def test_concurrent_limited_claimers_never_run_more_than_the_limit(url: str) -> None:
    """Two stores (as two worker processes) claim one loop's runs with a limit of 5, each in
    batches, settling what they claimed: never more than 5 run at once, and each run once."""
    stores = [RunStore(db.connect(url)) for _ in range(2)]
    try:
        made = stores[0].create_new([scheduled(60_000 * (i + 1)) for i in range(60)])
        got: list[list[str]] = [[], []]
        most_running: list[int] = []

        def claim(which: int) -> None:
            mine = stores[which]
            order = made if which == 0 else made[::-1]
            for _ in range(200):
                claimed = mine.claim_limited([(run, 5) for run in order])
                most_running.append(sum(run.status == RunStatus.RUNNING
                                        for run in mine.unfinished()))
                got[which].extend(claimed)
                mine.settle_many([Settlement(mine.get(run_id), RunResult(RunStatus.SUCCESS), [])
                                  for run_id in claimed])
                if len(got[0]) + len(got[1]) == len(made):
                    return

        side_by_side(claim)
        assert sorted(got[0] + got[1]) == sorted(run.id for run in made)
        assert max(most_running) <= 5
    finally:
        for made_store in stores:
            made_store.close()


@pytest.mark.postgres
def test_a_run_cancelled_while_a_limited_claim_waits_for_it_stays_cancelled(
        pg_store: RunStore) -> None:
    """A cancel holds a queued run's row when a worker process's limited claim reaches it;
    once the cancel commits, the claim takes the others and leaves that one cancelled."""
    store = pg_store
    runs = store.create_new([scheduled(60_000 * i) for i in (1, 2)])
    answer: list[set[str]] = []
    with store.engine.connect() as cancelling:
        cancelling.execute(sa.text("UPDATE runs SET status = 'cancelled' WHERE id = :id"),
                           {"id": runs[0].id})
        claimer = threading.Thread(target=lambda: answer.append(
            store.claim_limited([(run, 5) for run in runs])))
        claimer.start()
        claimer.join(timeout=1.0)
        assert answer == [], "the claim did not wait for the cancel's row"
        cancelling.commit()
    claimer.join(timeout=10)
    assert answer == [{runs[1].id}]
    assert store.get(runs[0].id).status == RunStatus.CANCELLED


@pytest.mark.postgres
def test_a_claim_skips_the_runs_another_claimer_is_taking_without_waiting(
        pg_store: RunStore, pg_url: str) -> None:
    """While one process's claim of some runs is not yet committed, another's claim of the
    same runs returns at once with the others; when the first rolls back, they are queued."""
    store = pg_store
    ids = [run.id for run in store.create_new([scheduled(60_000 * i) for i in (1, 2, 3)])]
    other = db.connect(pg_url)
    try:
        with other.connect() as held:
            taking = hotsql.claim_runs(held, ids[:2], 1)
            assert taking == set(ids[:2])  # locked, not committed
            answer: list[set[str]] = []
            claimer = threading.Thread(target=lambda: answer.append(store.claim_many(ids)))
            claimer.start()
            claimer.join(timeout=10)
            assert answer == [{ids[2]}], "the claim waited for the other, or took its runs"
            held.rollback()
    finally:
        other.dispose()
    assert store.claim_many(ids) == set(ids[:2])


RUNS_BEFORE_STATISTICS = 6000  # a backlog or a history the planner's statistics predate


@pytest.mark.postgres
@pytest.mark.parametrize("plans", ["auto", "force_generic_plan"])
def test_claims_and_settles_search_runs_by_key_however_many_runs_there_are(
        pg_url: str, plans: str) -> None:
    """A cluster's claims and settles of a few runs among thousands read those runs, by the
    primary key, and the lane's count reads its running runs alone: before the ids went as an
    array, each read the whole table (2 ms at 6,000 runs, growing with them), as PostgreSQL
    plans them until its statistics catch up with the table, and as its generic plan does."""
    engine = db.connect(pg_url)
    try:
        with engine.begin() as made:
            # no statistics meanwhile, as between a burst of runs and autovacuum's next look
            made.execute(sa.text("ALTER TABLE runs SET (autovacuum_enabled = false)"))
            made.execute(sa.text(
                "INSERT INTO runs (id, key, project, loop, event, version_id, \"trigger\", "
                "status, params, attempt, queued_ms, scheduled_ms) SELECT 'r' || i, 'k' || i, "
                "'p', 'l', 'e', 'v', 'backfill', CASE WHEN i % 100 = 0 THEN 'queued' "
                "ELSE 'success' END, '{}', 1, i, i FROM generate_series(1, :n) AS i"),
                {"n": RUNS_BEFORE_STATISTICS})
        ids = ["r100", "r200", "r300", "r400"]
        ends = [{"b_id": run_id, "b_status": "success", "b_result": "1", "b_error": None,
                 "b_now": 5, "b_init": None} for run_id in ids]
        with engine.connect() as conn:
            conn.execute(sa.text(f"SET plan_cache_mode = {plans}"))
            plans_of = {
                "claim": _plan(conn, lambda c: hotsql.claim_runs(c, ids, 1)),
                "limited claim": _plan(conn, lambda c: hotsql.claim_limited(
                    c, {("p", "l"): (2, ids)}, lambda: 1)),
                "settle": _plan(conn, lambda c: hotsql.finish_runs(c, ends))}
        for what, plan in plans_of.items():
            assert "Seq Scan on runs" not in plan, f"the {what} reads every run:\n{plan}"
            assert "runs_pkey" in plan, f"the {what} does not search by id:\n{plan}"
        assert "ix_runs_running" in plans_of["limited claim"], plans_of["limited claim"]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_backfills_progress_reads_its_range_right_after_its_runs_are_made(
        pg_store: RunStore) -> None:
    """The progress of a backfill (`keyed_statuses`) searches its event's runs in its range,
    not the loop's whole history, from the moment its thousands of runs are made: before the
    run store renewed PostgreSQL's statistics after such a burst, the planner took the loop's
    window index (all of its runs) until autovacuum's next look."""
    store, engine = pg_store, pg_store.engine
    with engine.begin() as made:  # no statistics but those the run store renews itself
        made.execute(sa.text("ALTER TABLE runs SET (autovacuum_enabled = false)"))
    store.create_new([scheduled(60_000 * i) for i in range(1, RUNS_BEFORE_STATISTICS)])
    assert store.statistics.wait_renewed(1, timeout_s=30)
    progress = keyed_statuses_query("default", "roll", ["tick"], 60_000 * 3000,
                                    60_000 * 3100).compile(
        dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    with engine.connect() as conn:
        plan = _plan(conn, lambda c: c.connection.cursor().execute(str(progress),
                                                                    progress.params))
    assert "ix_runs_event_scheduled" in plan, plan
    assert store.keyed_statuses("default", "roll", ["tick"], 60_000 * 3000,
                                60_000 * 3100) == {"queued": 100}


def _analyzes(engine: sa.Engine) -> list[str]:
    """The ANALYZE statements `engine` sends from now on, as they are sent."""
    sent: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("ANALYZE"):
            sent.append(statement)

    return sent


def test_the_statistics_are_renewed_once_a_minute_at_most(store: RunStore) -> None:
    """A scheduler creating runs all the time would otherwise sample the table at every batch
    of a thousand (and SQLite needs none of it)."""
    sent = _analyzes(store.engine)
    store.create_new([scheduled(60_000 * i) for i in range(1, 1501)])
    on = store.engine.dialect.name == "postgresql"
    assert store.statistics.wait_renewed(1, timeout_s=30) is on
    store.create_new([scheduled(60_000 * i) for i in range(1501, 3001)])
    assert not store.statistics.wait_renewed(2, timeout_s=0.5)
    assert sent == (["ANALYZE runs"] if on else [])
    assert store.keyed_statuses("default", "roll", ["tick"], 0, 10**12) == {"queued": 3000}


@pytest.mark.postgres
def test_a_burst_soon_after_a_renewal_is_renewed_once_it_is_due(
        pg_store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planstats, "ANALYZE_EVERY_S", 0.5)
    pg_store.create_new([scheduled(60_000 * i) for i in range(1, 1501)])
    assert pg_store.statistics.wait_renewed(1, timeout_s=30)
    pg_store.create_new([scheduled(60_000 * i) for i in range(1501, 3001)])
    assert pg_store.statistics.wait_renewed(2, timeout_s=30)  # with no third create


@pytest.mark.postgres
def test_renewing_the_statistics_waits_for_no_one(pg_store: RunStore, pg_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """While autovacuum (here: another session) holds the table's maintenance lock, a burst
    of runs is created without waiting for it, and the statistics are renewed once it is
    let go."""
    monkeypatch.setattr(planstats, "ANALYZE_EVERY_S", 0.5)
    store = pg_store
    holder = db.connect(pg_url)
    try:
        with holder.begin() as held:
            held.execute(sa.text("LOCK TABLE runs IN SHARE UPDATE EXCLUSIVE MODE"))
            started = time.monotonic()
            made = store.create_new([scheduled(60_000 * i) for i in range(1, 1501)])
            assert time.monotonic() - started < 10 and len(made) == 1500
            assert not store.statistics.wait_renewed(1, timeout_s=1)  # tried, and left be
        assert store.statistics.wait_renewed(1, timeout_s=30)
    finally:
        holder.dispose()


def _plan(conn: sa.Connection, statement: Callable[[sa.Connection], object]) -> str:
    """The plans PostgreSQL chose for what `statement` executes (each EXPLAINed, not run)."""
    found: list[str] = []
    cursor_of = conn.connection.cursor

    class Explaining:
        def __init__(self) -> None:
            self.cursor = cursor_of()

        def execute(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
            self.cursor.execute(f"EXPLAIN {sql}", parameters)
            found.append("\n".join(row[0] for row in self.cursor.fetchall()))

        def fetchall(self) -> list[tuple[object, ...]]:
            return []

        def close(self) -> None:
            self.cursor.close()

    with patch.object(conn.connection, "cursor", Explaining):
        statement(conn)
    return "\n".join(found)


@pytest.mark.parametrize("result", [42, 2.5, "text with a \x00 in it", None, [1, "a"],
                                    {"nested": {"ok": True, "n": None}}])
def test_settled_results_and_log_lines_read_back_as_written(store: RunStore,
                                                            result: object) -> None:
    [run] = store.create_new([scheduled(60_000)])
    assert store.claim_many([run.id]) == {run.id}
    lines = [LogLine(1, "info", "plain"), LogLine(2, "warning", "a \x00 from the handler")]
    [settled], _ = store.settle_many([Settlement(store.get(run.id),
                                                 RunResult(RunStatus.SUCCESS, result=result),
                                                 logs=lines)])
    stored = store.get(run.id)
    assert (stored.status, stored.result) == (RunStatus.SUCCESS, result)
    assert stored.result == settled.result
    # PostgreSQL's text cannot hold NUL: the store writes it as U+FFFD there and in SQLite.
    assert [line["message"] for line in store.logs(run.id)] == ["plain",
                                                                "a \ufffd from the handler"]


def test_many_runs_settled_at_once_read_back_as_each_alone(store: RunStore) -> None:
    """One settle of many runs (one statement for them all on PostgreSQL): every shape of
    result, an error, the set-up time, and a cancelled run that stays cancelled."""
    shapes: list[object] = [42, 2.5, "text with a \x00 in it", None, [1, "a"],
                            {"nested": {"ok": True, "n": None}}, "", {"k": "caf\u00e9 \"q\""}]
    made = store.create_new([scheduled(60_000 * (i + 1)) for i in range(len(shapes) + 3)])
    assert store.claim_many([run.id for run in made]) == {run.id for run in made}
    *succeeded, failing, cancelled, twice = made
    assert store.cancel(cancelled.id, RunStatus.RUNNING, RunResult.cancelled("in a test"))
    failure = RunResult.failed("TypeError", "x is undefined", "at h.js:1")
    outcomes = [Settlement(store.get(run.id), RunResult(RunStatus.SUCCESS, result=shape,
                                                        init_ms=1.5 * i))
                for i, (run, shape) in enumerate(zip(succeeded, shapes, strict=True))]
    outcomes += [Settlement(store.get(failing.id), failure),
                 Settlement(store.get(cancelled.id), RunResult(RunStatus.SUCCESS, result=1)),
                 *(Settlement(store.get(twice.id), RunResult(RunStatus.SUCCESS, result=n))
                   for n in range(5))]  # ended twice in one batch: the last stays
    store.settle_many(outcomes)
    for i, (run, shape) in enumerate(zip(succeeded, shapes, strict=True)):
        stored = store.get(run.id)
        assert (stored.status, stored.result, stored.init_ms) == (RunStatus.SUCCESS, shape,
                                                                  1.5 * i)
        assert stored.started_ms is not None and stored.finished_ms is not None
    stored_failure = store.get(failing.id)
    assert (stored_failure.status, stored_failure.error) == (RunStatus.FAILED, failure.error)
    assert store.get(cancelled.id).status == RunStatus.CANCELLED
    assert store.get(twice.id).result == 4


def test_a_failure_a_retry_and_a_cancel_are_recorded(store: RunStore) -> None:
    one, two, three = store.create_new([scheduled(60_000 * i) for i in (1, 2, 3)])
    assert store.claim_many([one.id, two.id]) == {one.id, two.id}
    failed = RunResult.failed("TypeError", "x is undefined", "at h.js:1")
    store.settle_many([Settlement(store.get(one.id), failed),
                       Settlement(store.get(two.id), failed, retry_at_ms=10**12)])
    assert store.get(one.id).error == RunError("TypeError", "x is undefined", "at h.js:1")
    retried = store.get(two.id)
    assert (retried.status, retried.attempt, retried.not_before_ms) == (
        RunStatus.QUEUED, 2, 10**12)
    cancelled = store.cancel(three.id, RunStatus.QUEUED, RunResult.cancelled("while queued"))
    assert cancelled is not None and cancelled.status == RunStatus.CANCELLED
    assert store.claim_many([three.id]) == set()
    assert store.keyed_statuses("default", "roll", ["tick"], 0, 10**6) == {
        "failed": 1, "queued": 1, "cancelled": 1}


def test_an_id_prefix_finds_its_run_whatever_its_last_character(store: RunStore) -> None:
    made = [run.id for run in store.create_new([scheduled(60_000 * i) for i in range(1, 60)])]
    assert checked_prefixes(store, made) > 0


def checked_prefixes(store: RunStore, ids: list[str]) -> int:
    """Resolve every prefix of `ids` that ends in '9' (the character whose successor, ':',
    sorts apart from it in some collations) and names one run, and each run's short id; how
    many prefixes ending in '9' were checked."""
    checked = 0
    for run_id in ids:
        for end in range(13, len(run_id)):
            prefix = run_id[:end]
            if prefix[-1] == "9" and sum(other.startswith(prefix) for other in ids) == 1:
                assert store.resolve(prefix) == run_id
                checked += 1
    for run_id, short in store.short_ids(ids).items():
        assert store.resolve(short) == run_id
    return checked


@pytest.mark.postgres
def test_an_id_prefix_ending_in_9_is_found_under_a_linguistic_collation(
        postgres: pgserver.PostgresServer) -> None:
    """Under an ICU (or glibc) collation ':' (the character after '9') sorts before the
    digits, so a prefix's range must not end at it."""
    name = postgres.create_database(template=None, name="icu_collation", icu_locale="en-US")
    store = RunStore(db.connect(postgres.url(name)))
    try:
        made = [run.id for run in store.create_new([scheduled(60_000 * i)
                                                    for i in range(1, 60)])]
        assert checked_prefixes(store, made) > 0
    finally:
        store.close()
        postgres.drop_database(name)


def test_a_trim_of_a_long_selector_and_connector_is_recorded(url: str) -> None:
    """Text of any length, as SQLite always kept it (VARCHAR(400) on PostgreSQL refused it)."""
    engine = db.connect(url)
    try:
        store = TrimStore(engine)
        selector = "cpu{" + ",".join(f'label_{i}="{"v" * 20}"' for i in range(20)) + "}"
        connector = ("influxdb", "http://" + "h" * 300 + ":8086", "telegraf")
        store.record("default", connector, selector, [((0, 60_000), 12)], "retain", "r1")
        [trim] = store.overlapping("default", connector, parse_selector("cpu"), 0, 60_000)
        assert (trim.selector, trim.points, trim.run_id) == (selector, 12, "r1")
    finally:
        engine.dispose()


def test_an_artifact_content_type_must_be_a_media_type_on_both(url: str) -> None:
    engine = db.connect(url)
    try:
        store = ArtifactStore(engine)
        saved = store.put("r1", "data.txt", "text/plain; charset=utf-8", b"x")
        assert store.get("r1", "data.txt")[0].content_type == saved.content_type
        for wrong in ("text/" + "x" * 100, "text/html\r\nSet-Cookie: a=b", "csv", 42):
            with pytest.raises(BadRequest, match="is not a media type like text/csv"):
                store.put("r1", "other.txt", wrong, b"x")  # type: ignore[arg-type]
        assert [a.name for a in store.list("r1")] == ["data.txt"]
    finally:
        engine.dispose()


def test_schedules_recorded_at_once_by_two_processes_are_both_taken(url: str) -> None:
    """A service starting records when each event's schedule took effect; one starting beside
    another (its insert not yet committed) waits for it and then starts too."""
    now = [1.0]
    stores = [ScheduleStore(db.connect(url), clock=lambda: now[0]) for _ in range(2)]
    events = [("default", "roll", "tick", "R/2026-01-01T00:00:00Z/PT1M")]
    try:
        with stores[0].engine.connect() as first:
            if first.dialect.name == "postgresql":  # SQLite has one writer at a time
                first.execute(schedules.insert().values(
                    project="default", loop="roll", event="tick", rate=events[0][3],
                    since_ms=500))
            answers: list[object] = []

            def start() -> None:
                try:
                    answers.append(stores[1].since_all(events))
                except Exception as exc:
                    answers.append(exc)

            second = threading.Thread(target=start)
            second.start()
            second.join(timeout=0.5)  # it waits for the first on PostgreSQL
            first.commit()
            second.join(timeout=30)
        assert answers == [{("default", "roll", "tick"): 1000}]
        now[0] = 2.0
        assert stores[0].since_all(events) == {("default", "roll", "tick"): 1000}
        changed = [(*events[0][:3], "R/2026-01-01T00:00:00Z/PT5M")]
        assert stores[0].since_all(changed) == {("default", "roll", "tick"): 2000}
        assert stores[1].since_all(changed) == {("default", "roll", "tick"): 2000}
    finally:
        for store in stores:
            store.engine.dispose()


# -- a wrong PostgreSQL URL ----------------------------------------------------------------------


@pytest.mark.postgres
def test_a_wrong_password_is_a_config_error_with_the_password_hidden(
        postgres: pgserver.PostgresServer) -> None:
    with pytest.raises(ConfigError) as raised:
        db.connect(postgres.url(pgserver.TEMPLATE, password="not-the-password"))
    message = str(raised.value)
    assert "not-the-password" not in message and "***" in message
    assert "password authentication failed" in message
    assert f"127.0.0.1:{postgres.port}/{pgserver.TEMPLATE}" in message


@pytest.mark.postgres
def test_a_missing_database_is_a_config_error_naming_it(
        postgres: pgserver.PostgresServer) -> None:
    with pytest.raises(ConfigError, match='database "nowhere" does not exist') as raised:
        db.connect(postgres.url("nowhere"))
    assert pgserver.PASSWORD not in str(raised.value)


def test_an_unreachable_server_is_a_config_error_naming_it() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(ConfigError) as raised:
        db.connect(f"postgresql://tsq:secret-word@127.0.0.1:{port}/tsq")
    message = str(raised.value)
    assert "secret-word" not in message
    assert f"postgresql://tsq:***@127.0.0.1:{port}/tsq" in message
    assert "Connection refused" in message


def test_a_url_of_an_unknown_backend_says_what_would_be_right() -> None:
    with pytest.raises(ConfigError) as raised:
        db.connect("postgres://tsq:secret-word@127.0.0.1/tsq")
    message = str(raised.value)
    assert "secret-word" not in message
    assert "postgresql://" in message and "sqlite:///" in message


def test_the_cli_says_what_a_database_url_should_be(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TSQ_DATABASE_URL", "postgres://tsq:secret-word@127.0.0.1/tsq")
    done = tsq(tmp_path, "runs")
    assert done.returncode != 0
    assert "secret-word" not in done.stderr
    assert "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in done.stderr
    assert "pip install 'tsq[postgres]'" in done.stderr  # brackets and all


@pytest.mark.postgres
def test_a_plain_postgresql_url_uses_psycopg_3(pg_url: str) -> None:
    """`postgresql://` would be psycopg2 to SQLAlchemy, which the `postgres` extra does not
    install: tsq reads it as psycopg 3's."""
    store = RunStore(db.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")))
    try:
        assert store.engine.dialect.driver == "psycopg"
        assert store.create_new([scheduled(60_000)])
    finally:
        store.close()
