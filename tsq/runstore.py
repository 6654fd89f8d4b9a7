"""Run records and their log lines.

A run keeps the version it started with to the end. Scheduled runs carry a key
`loop:event:scheduled_unix_ms`, unique in the table, so the same window can never run twice;
manual runs have no key. Times are epoch milliseconds.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tsq import hotsql
from tsq.clock import Clock, now_ms, wall
from tsq.db import RUN_TIME, run_logs, runs, transaction
from tsq.errors import Conflict, NotFound
from tsq.groupcommit import GroupCommit, Write
from tsq.outcomes import UNFINISHED, RunError, RunResult, RunStatus
from tsq.planstats import RunStatistics
from tsq.run import Run, RunFilter
from tsq.runlog import LogLine

__all__ = ["SHORT_ID_MIN", "NewRun", "RunFilter", "RunStore", "Settlement",
           "keyed_statuses_query", "new_run_id", "run_key"]

# As git shows commits: the shortest prefix unique among all runs, but never shorter than this,
# so a prefix a user copies today is likely to stay unique as runs accumulate.
SHORT_ID_MIN = 8
AMBIGUOUS_SHOWN = 5  # candidates an ambiguous prefix error lists
_ID_CHARACTERS = "0123456789abcdefg"  # what a run id is made of, in order, and the one after


@dataclass(frozen=True)
class NewRun:
    """A run to create; `key` (scheduled, after and backfill runs) makes it exactly-once."""

    project: str
    loop: str
    event: str
    version_id: str
    trigger: str
    params: dict[str, Any]
    key: str | None = None
    scheduled_ms: int | None = None
    window: tuple[int, int] | None = None  # [start, end) in epoch ms
    epsilon_ms: int | None = None
    status: RunStatus = RunStatus.QUEUED
    error: RunError | None = None
    attempt: int = 1
    pipeline_id: str | None = None  # None: the run starts a pipeline of its own
    parent_id: str | None = None  # the run whose Loop.run started this one
    pipeline_ms: int | None = None  # when the pipeline started (its versions are pinned then)
    not_before_ms: int | None = None  # it waits until then (a rollup's `offset:`)

    def queued(self, run_id: str, now_ms: int) -> Run:
        """The run as it is created (a run created expired ends at once)."""
        return Run(
            id=run_id, key=self.key, project=self.project, loop=self.loop, event=self.event,
            version_id=self.version_id, trigger=self.trigger, status=self.status,
            params=self.params, error=self.error, attempt=self.attempt,
            pipeline_id=self.pipeline_id or run_id, parent_id=self.parent_id,
            pipeline_ms=now_ms if self.pipeline_ms is None else self.pipeline_ms,
            scheduled_ms=self.scheduled_ms, queued_ms=now_ms,
            finished_ms=now_ms if self.status.finished else None,
            window_start_ms=self.window[0] if self.window else None,
            window_end_ms=self.window[1] if self.window else None,
            epsilon_ms=self.epsilon_ms, not_before_ms=self.not_before_ms)


@dataclass(frozen=True)
class Settlement:
    """How one dispatched run ended: its outcome and new log lines, and, for a retry, when its
    next attempt may start."""

    run: Run  # as it was dispatched
    result: RunResult
    logs: Sequence[LogLine] = ()
    retry_at_ms: int | None = None
    followers: Sequence[NewRun] = ()  # runs to create with this outcome (`after:` steps)

    def settled(self, now: int) -> Run:
        """The run after `RunStore.settle_many`, without reading it back."""
        if self.retry_at_ms is not None:
            return self.run.evolve(status=RunStatus.QUEUED, attempt=self.run.attempt + 1,
                                   not_before_ms=self.retry_at_ms, started_ms=None,
                                   finished_ms=None, queued_ms=now)
        return self.run.evolve(status=self.result.status, result=self.result.result,
                               error=self.result.error, finished_ms=now,
                               init_ms=self.result.init_ms, started_ms=self.run.started_ms or now)

# The newest scheduled run of each event of a JSON list of [project, loop, event]: a correlated
# MAX that each backend answers from ix_runs_event_scheduled, newest first. The backends differ
# only in how they make rows of the list and read an item of a row (`json_extract` rather than
# SQLite's `->>`, which only 3.38 and later know).
_JSON_LIST = {"sqlite": ("json_each(:b_events)", "json_extract(k.value, '$[{}]')"),
              "postgresql": ("json_array_elements(CAST(:b_events AS json))", "k.value ->> {}")}
_LAST_SCHEDULED = {
    backend: sa.text(
        f"SELECT {item.format(0)}, {item.format(1)}, {item.format(2)}, "
        f"(SELECT max(r.scheduled_ms) FROM runs AS r WHERE r.project = {item.format(0)} AND "
        f"r.loop = {item.format(1)} AND r.event = {item.format(2)} AND "
        f"r.\"trigger\" = 'schedule') FROM {rows} AS k")
    for backend, (rows, item) in _JSON_LIST.items()}
# The claims (hotsql.claim_runs and hotsql.claim_limited) test `status || ''`: that keeps both
# backends on the primary key. On the bare column they pick the status index and read every
# queued run, so with a backlog of thousands each claim took milliseconds and the backlog grew
# (PostgreSQL does so whenever its statistics predate the backlog: 14 ms a claim of 50 among
# 50 000 queued runs, 2 ms on the primary key).
_RETRY = (runs.update().where(runs.c.id == sa.bindparam("b_id")).values(
    status=RunStatus.QUEUED.value, attempt=sa.bindparam("b_attempt"),
    not_before_ms=sa.bindparam("b_not_before"), started_ms=None, finished_ms=None,
    queued_ms=sa.bindparam("b_now")))


class _Insertion:
    """The write that inserts `run`'s row; the run, as the write's result."""

    __slots__ = ("row", "run")

    def __init__(self, run: Run) -> None:
        self.run = run
        self.row = run.row()

    def __call__(self, db: Connection) -> Run:
        hotsql.insert_runs(db, [self.row])
        return self.run


def run_key(loop: str, event: str, scheduled_ms: int) -> str:
    """The key that makes `(loop, event, scheduled time)` run once (unique per project)."""
    return f"{loop}:{event}:{scheduled_ms}"


def new_run_id(created_ms: int) -> str:
    """Sortable by creation time: 12 hex digits of milliseconds, then 12 random ones."""
    return f"{created_ms:012x}{os.urandom(6).hex()}"


class RunStore:
    def __init__(self, engine: Engine, clock: Clock = wall) -> None:
        self.engine = engine
        self.clock = clock
        # the writes of every run (created, settled): those of runs at the same time commit
        # together
        self.writes = GroupCommit(engine)
        self.statistics = RunStatistics(engine)  # PostgreSQL's, after bursts of new runs

    def close(self) -> None:
        """Commit what waits to be written, then let the engine's connections go."""
        self.writes.close()
        self.statistics.close()
        self.engine.dispose()  # on PostgreSQL each pooled connection is a server process

    def _now_ms(self) -> int:
        return now_ms(self.clock)

    def create(self, new: NewRun, *, running: bool = False) -> Run:
        """Insert a run, queued or, with `running`, created and claimed in one write (a run
        started at once on a free worker); a keyed run whose key exists raises sqlalchemy's
        IntegrityError."""
        return self.writes.write(self._insertion(new, running))

    def create_soon(self, new: NewRun) -> tuple[Run, Write[Run]]:
        """A run created and claimed whose record commits with the next batch of writes (its
        own end, for a short run) or within `groupcommit.SOON_S`: a run by hand whose caller
        waits for its end, so that it costs one commit, not two. A service killed in that time
        leaves no record of it, and its caller no answer. `writes.written` of the handle
        raises what the insert raised."""
        insert = self._insertion(new, running=True)
        return insert.run, self.writes.write_soon(insert)

    def _insertion(self, new: NewRun, running: bool) -> _Insertion:
        now = self._now_ms()
        run = new.queued(new_run_id(now), now)
        return _Insertion(run.started(now) if running else run)

    def create_new(self, batch: Sequence[NewRun]) -> list[Run]:
        """Insert the runs whose keys are new, in one transaction; the records created.

        A key that exists already (a duplicate fire, a second scheduler, a restart) is skipped,
        which is what makes every scheduled time run at most once.
        """
        if not batch:
            return []
        now = self._now_ms()
        created = self.writes.write(lambda db: _insert_new(db, batch, now))
        self.statistics.created(len(created))
        return created

    def claim_many(self, run_ids: Sequence[str]) -> set[str]:
        """queued → running, atomically, in one transaction; the ids this caller got (another
        dispatcher on the same store gets none of them)."""
        if not run_ids:
            return set()
        # the time the claim is made, not asked for: it may wait for the batch before it
        return self.writes.write(lambda db: hotsql.claim_runs(db, run_ids, self._now_ms()))

    def claim_limited(self, wanted: Sequence[tuple[Run, int]]) -> set[str]:
        """queued → running for each `(run, limit)` while fewer than `limit` runs of its loop's
        lane (scheduled, `after:`, backfilled) are running, whichever process runs them: a
        loop's `max_concurrency` across a cluster. The ids claimed; a run not claimed is still
        queued (its lane is full) or was taken by another process. The claim rides the group
        commit with this process's settles (no transaction and connection check of its own: in
        a cluster worker those were most of what a run cost its process); the lane locks are
        held until that batch commits."""
        if not wanted:
            return set()
        lanes: dict[tuple[str, str], tuple[int, list[str]]] = {}
        for run, limit in wanted:
            lanes.setdefault((run.project, run.loop), (limit, []))[1].append(run.id)

        return self.writes.write(lambda db: hotsql.claim_limited(db, lanes, self._now_ms))

    def settle_many(self, outcomes: Sequence[Settlement]) -> tuple[list[Run], list[Run]]:
        """Write the ends of many runs in one transaction: outcomes, log lines, retries (back
        to queued for their next attempt) and the runs that follow them (skipping keys that
        exist). The records as they are now, in order, and the followers created."""
        now = self._now_ms()
        finished = [o for o in outcomes if o.retry_at_ms is None]
        retried = [o for o in outcomes if o.retry_at_ms is not None]
        lines = [(o.run.id, line) for o in outcomes for line in o.logs]

        def settle(db: Connection) -> list[Run]:
            hotsql.insert_logs(db, [_log_row(run_id, line) for run_id, line in lines])
            hotsql.finish_runs(db, [{"b_id": o.run.id, "b_status": o.result.status.value,
                                     "b_result": o.result.result, "b_error": _error(o.result),
                                     "b_now": now, "b_init": o.result.init_ms}
                                    for o in finished])
            if retried:
                db.execute(_RETRY, [{"b_id": o.run.id, "b_attempt": o.run.attempt + 1,
                                     "b_not_before": o.retry_at_ms, "b_now": now}
                                    for o in retried])
            return _insert_new(db, [run for o in finished for run in o.followers], now)
        created = self.writes.write(settle)
        return [o.settled(now) for o in outcomes], created

    def cancel(self, run_id: str, was: RunStatus, result: RunResult) -> Run | None:
        """`was` → cancelled (queued: it will never be claimed), with `result`'s error as a log
        line; the run as it is now, or None if it was not `was`."""
        now = self._now_ms()
        with transaction(self.engine) as db:
            changed = db.execute(runs.update().where(
                runs.c.id == run_id, runs.c.status == was.value).values(
                status=result.status.value, error=_error(result), finished_ms=now))
            if not changed.rowcount:
                return None
            if result.error is not None:
                _insert_logs(db, run_id, [LogLine(now, "warning", result.error.headline)])
        return self.get(run_id)

    def requeue(self, run_id: str, *, attempt: int, not_before_ms: int | None,
                message: str, logs: Sequence[LogLine] = ()) -> Run:
        """Put a run back in the queue for another attempt (a retry, a backfill)."""
        with transaction(self.engine) as db:
            _insert_logs(db, run_id, [*logs, LogLine(self._now_ms(), "info", message)])
            db.execute(runs.update().where(runs.c.id == run_id).values(
                status=RunStatus.QUEUED.value, attempt=attempt, not_before_ms=not_before_ms,
                started_ms=None, finished_ms=None, queued_ms=self._now_ms()))
        return self.get(run_id)

    def take_over(self, run_id: str, attempt: int, message: str) -> Run | None:
        """running attempt `attempt` → queued attempt `attempt + 1`, with `message` as a log
        line: a run whose worker died is run again by another. None if the run is not (or no
        longer) at that attempt and running, so two takers never both get it."""
        now = self._now_ms()
        with transaction(self.engine) as db:
            changed = db.execute(runs.update().where(
                runs.c.id == run_id, runs.c.status == RunStatus.RUNNING.value,
                runs.c.attempt == attempt).values(
                status=RunStatus.QUEUED.value, attempt=attempt + 1, started_ms=None,
                finished_ms=None, queued_ms=now, not_before_ms=None))
            if not changed.rowcount:
                return None
            _insert_logs(db, run_id, [LogLine(now, "warning", message)])
        return self.get(run_id)

    def append_logs(self, run_id: str, lines: Sequence[LogLine]) -> None:
        if lines:
            with transaction(self.engine) as db:
                _insert_logs(db, run_id, lines)

    def by_keys(self, project: str, keys: Sequence[str]) -> dict[str, Run]:
        found: dict[str, Run] = {}
        with self.engine.connect() as db:
            for chunk in range(0, len(keys), 500):
                query = sa.select(runs).where(runs.c.project == project,
                                              runs.c.key.in_(keys[chunk:chunk + 500]))
                found.update((row.key, _from_row(row)) for row in db.execute(query))
        return found

    def last_scheduled(self, events: Sequence[tuple[str, str, str]]
                       ) -> dict[tuple[str, str, str], int]:
        """(project, loop, event) → the newest scheduled time that has a scheduled run, for
        each of `events` that has one. One index search per event, in one statement: a scan
        grouping every run ever recorded took 1.3 s at 1.5 M runs, and grew with them."""
        if not events:
            return {}
        with self.engine.connect() as db:
            found = db.execute(_LAST_SCHEDULED[db.dialect.name],
                               {"b_events": orjson.dumps(list(events)).decode()})
            return {(p, name, e): int(ms) for p, name, e, ms in found if ms is not None}

    def unfinished(self) -> list[Run]:
        """Queued and running runs, oldest first."""
        with self.engine.connect() as db:
            rows = db.execute(
                sa.select(runs).where(runs.c.status.in_([status.value for status in UNFINISHED]))
                .order_by(RUN_TIME, runs.c.id))
            return [_from_row(row) for row in rows]

    def queued_before(self, queued_ms: int) -> list[Run]:
        """Queued runs queued before `queued_ms` (epoch ms), oldest first."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(runs).where(runs.c.status == RunStatus.QUEUED.value,
                                                    runs.c.queued_ms < queued_ms)
                              .order_by(runs.c.queued_ms, runs.c.id))
            return [_from_row(row) for row in rows]

    def pipeline(self, pipeline_id: str) -> list[Run]:
        """Every run of a pipeline, in the order they were created."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(runs).where(runs.c.pipeline_id == pipeline_id)
                              .order_by(runs.c.id))
            return [_from_row(row) for row in rows]

    def succeeded_windows(self, project: str, loop: str, start_ms: int, end_ms: int
                          ) -> list[tuple[int, int]]:
        """The windows of `loop`'s successful runs that overlap [start_ms, end_ms), by start."""
        query = (sa.select(runs.c.window_start_ms, runs.c.window_end_ms)
                 .where(runs.c.project == project, runs.c.loop == loop,
                        runs.c.status == RunStatus.SUCCESS.value,
                        runs.c.window_start_ms < end_ms, runs.c.window_end_ms > start_ms)
                 .order_by(runs.c.window_start_ms))
        with self.engine.connect() as db:
            return [(int(a), int(b)) for a, b in db.execute(query)]

    def keyed_statuses(self, project: str, loop: str, events: Sequence[str], start_ms: int,
                       end_ms: int) -> dict[str, int]:
        """status → how many keyed runs of `loop`'s `events` have a scheduled time in
        [start_ms, end_ms): the runs a backfill of that range stands for."""
        query = keyed_statuses_query(project, loop, events, start_ms, end_ms)
        with self.engine.connect() as db:
            return {str(status): int(count) for status, count in db.execute(query)}

    def keyed_overlapping(self, project: str, loop: str, start_ms: int, end_ms: int
                          ) -> list[Run]:
        """The keyed runs of `loop` whose windows overlap [start_ms, end_ms), by window."""
        query = (sa.select(runs)
                 .where(runs.c.project == project, runs.c.loop == loop,
                        runs.c.key.is_not(None),
                        runs.c.window_start_ms < end_ms, runs.c.window_end_ms > start_ms)
                 .order_by(runs.c.window_start_ms))
        with self.engine.connect() as db:
            return [_from_row(row) for row in db.execute(query)]

    def covered_until(self, loops: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """(project, loop) → the end of the newest window a run of it succeeded for."""
        if not loops:
            return {}
        query = (sa.select(runs.c.project, runs.c.loop, sa.func.max(runs.c.window_end_ms))
                 .where(runs.c.status == RunStatus.SUCCESS.value,
                        runs.c.loop.in_([loop for _, loop in loops]))
                 .group_by(runs.c.project, runs.c.loop))
        wanted = set(loops)
        with self.engine.connect() as db:
            return {(p, name): int(end) for p, name, end in db.execute(query)
                    if (p, name) in wanted and end is not None}

    def callers(self, run_ids: Sequence[str]) -> set[str]:
        """The runs among `run_ids` that started steps of their own (`Loop.run`)."""
        found: set[str] = set()
        with self.engine.connect() as db:
            for chunk in range(0, len(run_ids), 500):
                found.update(db.execute(sa.select(runs.c.parent_id).distinct().where(
                    runs.c.parent_id.in_(run_ids[chunk:chunk + 500]))).scalars())
        return found

    def count(self, *, pipeline: str) -> int:
        with self.engine.connect() as db:
            return int(db.execute(sa.select(sa.func.count()).select_from(runs)
                                  .where(runs.c.pipeline_id == pipeline)).scalar_one())

    def resolve(self, given: str) -> str:
        """The id of the one run whose id is `given` or starts with it; NotFound if none,
        Conflict (listing some candidates) if several."""
        with self.engine.connect() as db:
            exact = db.execute(sa.select(runs.c.id).where(runs.c.id == given)).scalar()
            if exact is not None:
                return str(exact)
            found = [str(i) for i in db.execute(sa.select(runs.c.id).where(_starts(given))
                                                .order_by(runs.c.id)
                                                .limit(AMBIGUOUS_SHOWN + 1)).scalars()]
        if not found:
            raise NotFound(f"no run with id or id prefix {given!r}")
        if len(found) > 1:
            raise Conflict(_ambiguous_message(given, found, self.short_ids(found)),
                           details={"prefix": given, "candidates": found[:AMBIGUOUS_SHOWN]})
        return found[0]

    def short_ids(self, run_ids: Sequence[str]) -> dict[str, str]:
        """Each id's shortest prefix (at least SHORT_ID_MIN characters) that no other run's id
        starts with. The database finds each id's neighbours in id order (two index lookups);
        the longest prefix shared with either, plus one character, is unique."""
        neighbour = runs.alias("neighbour")
        before = (sa.select(sa.func.max(neighbour.c.id)).where(neighbour.c.id < runs.c.id)
                  .scalar_subquery())
        after = (sa.select(sa.func.min(neighbour.c.id)).where(neighbour.c.id > runs.c.id)
                 .scalar_subquery())
        shown: dict[str, str] = {}
        with self.engine.connect() as db:
            for chunk in range(0, len(run_ids), 500):
                query = sa.select(runs.c.id, before, after).where(
                    runs.c.id.in_(run_ids[chunk:chunk + 500]))
                for run_id, lower, upper in db.execute(query):
                    shared = max(_shared_length(run_id, lower), _shared_length(run_id, upper))
                    shown[run_id] = run_id[:max(SHORT_ID_MIN, shared + 1)]
        return shown

    def get(self, run_id: str) -> Run:
        with self.engine.connect() as db:
            row = db.execute(sa.select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(f"no run with id {run_id!r}")
        return _from_row(row)

    def get_many(self, run_ids: Sequence[str]) -> dict[str, Run]:
        """The runs of `run_ids` that exist, by id, in one query."""
        if not run_ids:
            return {}
        with self.engine.connect() as db:
            rows = db.execute(sa.select(runs).where(runs.c.id.in_(list(run_ids))))
            return {row.id: _from_row(row) for row in rows}

    def find(self, where: RunFilter) -> list[Run]:
        query = sa.select(runs)
        for column, value in (("project", where.project), ("loop", where.loop),
                              ("status", where.status), ("event", where.event),
                              ("trigger", where.trigger), ("pipeline_id", where.pipeline)):
            if value is not None:
                query = query.where(runs.c[column] == value)
        if where.since_ms is not None:
            query = query.where(runs.c.queued_ms >= where.since_ms)
        if where.until_ms is not None:
            query = query.where(runs.c.queued_ms < where.until_ms)
        if where.changed_since_ms is not None:
            since = where.changed_since_ms
            query = query.where(sa.or_(runs.c.queued_ms >= since, runs.c.started_ms >= since,
                                       runs.c.finished_ms >= since))
        # Newest first by the time a run stands for: its scheduled time, else when it was
        # queued. A backfill queues all its runs at once and they end in any order; by their
        # scheduled time they read as the history they fill in.
        query = query.order_by(RUN_TIME.desc(), runs.c.id.desc()).limit(where.limit)
        with self.engine.connect() as db:
            return [_from_row(row) for row in db.execute(query)]

    def logs(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        """The run's log lines in order, without the first `after` (lines are only appended, so
        a follower asks for what came after the ones it has)."""
        self.get(run_id)
        with self.engine.connect() as db:
            rows = db.execute(sa.select(run_logs).where(run_logs.c.run_id == run_id)
                              .order_by(run_logs.c.id).offset(after)).all()
        return [{"ts": row.ts_ms, "level": row.level, "message": row.message} for row in rows]


def _starts(given: str) -> sa.ColumnElement[bool]:
    """Ids that start with `given`, case and all (SQLite's LIKE ignores case), found through
    the primary key's index: they sort from `given` up to its last character's successor."""
    if not given:
        return sa.false()
    last = given[-1]
    # The successor among the characters of an id (new_run_id): the next code point of '9' is
    # ':', which a linguistic collation (a PostgreSQL database in en_US, or ICU's) sorts before
    # the digits, so the range would hold nothing.
    following = (_ID_CHARACTERS[_ID_CHARACTERS.index(last) + 1] if last in _ID_CHARACTERS[:-1]
                 else chr(min(ord(last) + 1, sys.maxunicode)))
    successor = given[:-1] + following
    return sa.and_(runs.c.id >= given, runs.c.id < successor,
                   sa.func.substr(runs.c.id, 1, len(given)) == given)


def _shared_length(one: str, other: str | None) -> int:
    """How many leading characters the two strings share."""
    if other is None:
        return 0
    return next((i for i, (a, b) in enumerate(zip(one, other, strict=False)) if a != b),
                min(len(one), len(other)))


def _ambiguous_message(given: str, found: list[str], shown: dict[str, str]) -> str:
    listed = ", ".join(f"{shown.get(i, i)}…" for i in found[:AMBIGUOUS_SHOWN])
    more = ", …" if len(found) > AMBIGUOUS_SHOWN else ""
    return f"run id prefix {given} is ambiguous: {listed}{more}; give more characters"


def _insert_new(db: Connection, batch: Sequence[NewRun], now: int) -> list[Run]:
    """Insert the runs whose keys are new; the runs created."""
    if not batch:
        return []
    created = [new.queued(new_run_id(now), now) for new in batch]
    inserted = hotsql.insert_new_runs(db, [run.row() for run in created])
    return [run for run in created if run.id in inserted]


def _insert_logs(db: Connection, run_id: str, lines: Sequence[LogLine]) -> None:
    hotsql.insert_logs(db, [_log_row(run_id, line) for line in lines])


def _log_row(run_id: str, line: LogLine) -> dict[str, Any]:
    # PostgreSQL's text cannot hold NUL, which a handler may print: it would fail the whole
    # batch of outcomes the line is written with. U+FFFD stands for it on every backend, so a
    # log reads the same on each.
    return {"run_id": run_id, "ts_ms": line.ts_ms, "level": line.level,
            "message": line.message.replace("\x00", "\ufffd")}


def _from_row(row: sa.Row[Any]) -> Run:
    return Run.from_json(dict(row._mapping))


def _error(result: RunResult) -> dict[str, str] | None:
    return None if result.error is None else result.error.to_json()


def keyed_statuses_query(project: str, loop: str, events: Sequence[str], start_ms: int,
                         end_ms: int) -> sa.Select[Any]:
    """`RunStore.keyed_statuses`' statement."""
    return (sa.select(runs.c.status, sa.func.count())
            .where(runs.c.project == project, runs.c.loop == loop,
                   runs.c.event.in_(list(events)), runs.c.key.is_not(None),
                   runs.c.scheduled_ms >= start_ms, runs.c.scheduled_ms < end_ms)
            .group_by(runs.c.status))
