"""The run store's hottest statements, handed to the database driver as they are.

Every run is inserted once and finished once, with its log lines. Through SQLAlchemy Core each
such statement cost about 80 µs of Python before the driver saw it (parameter processing, the
compiled-statement cache, the result object), more than SQLite takes to run it; at a thousand
runs a second that was a fifth of the service's CPU. These statements are fixed, so they are
written here once per backend and executed on the transaction's own driver connection with
`executemany`; values are converted as the table's types would (JSON columns through the same
serializer, so a row reads back the same whichever path wrote it).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tsq.db import json_text, run_logs, runs
from tsq.outcomes import RunStatus
from tsq.runpolicy import LIMITED_TRIGGERS

__all__ = ["claim_limited", "claim_runs", "finish_runs", "insert_logs", "insert_new_runs",
           "insert_runs"]

RUN_COLUMNS = tuple(column.name for column in runs.columns)
JSON_COLUMNS = frozenset(column.name for column in runs.columns
                         if isinstance(column.type, sa.JSON))
LOG_COLUMNS = tuple(column.name for column in run_logs.columns if column.name != "id")

# A parameter as each driver writes it: `{name}` in the statements below, `{name:json}` for a
# JSON value (PostgreSQL's column is of type json; SQLite's holds the text).
PARAMETER = {"sqlite": (":{}", ":{}"), "postgresql": ("%({})s", "CAST(%({})s AS JSON)")}


def _column_list(names: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


_STATEMENTS = {
    "insert_runs": f"INSERT INTO runs ({_column_list(RUN_COLUMNS)}) VALUES ("
                   + ", ".join(f"{{{name}:json}}" if name in JSON_COLUMNS else f"{{{name}}}"
                               for name in RUN_COLUMNS) + ")",
    # a cancelled run stays cancelled: its end, when it comes, is not written over it
    "finish_runs": "UPDATE runs SET status = {b_status}, result = {b_result:json}, "
                   "error = {b_error:json}, finished_ms = {b_now}, init_ms = {b_init}, "
                   "started_ms = COALESCE(started_ms, {b_now}) "
                   "WHERE id = {b_id} AND status != 'cancelled'",
    "insert_logs": f"INSERT INTO run_logs ({_column_list(LOG_COLUMNS)}) VALUES ("
                   + ", ".join(f"{{{name}}}" for name in LOG_COLUMNS) + ")",
}
_MARKER = re.compile(r"\{(\w+)(:json)?\}")


def _render(statement: str, backend: str) -> str:
    plain, json = PARAMETER[backend]
    return _MARKER.sub(lambda m: (json if m.group(2) else plain).format(m.group(1)), statement)


SQL: Mapping[str, Mapping[str, str]] = {
    backend: {name: _render(text, backend) for name, text in _STATEMENTS.items()}
    for backend in PARAMETER}


# Statements whose text differs by more than the parameter style. A list of run ids is one
# parameter, so a statement's text is the same for any number of runs (the driver prepares it
# once) and an id list never meets SQLite's limit on parameters: a JSON array on SQLite, an
# array on PostgreSQL, where `id = ANY(array)` is a search of the primary key whatever the
# statistics say. Rows made of a JSON array (`IN (SELECT json_array_elements_text(…))`) count
# as a hundred to the planner, and up to some 50,000 runs it read the whole table rather than
# search a hundred times: 2 ms a claim or a settle of 4 runs at 6,000 runs, 0.1 ms by `ANY`.
_BY_BACKEND = {
    # queued → running. `status || ''` keeps the planner on the primary key (runstore says why).
    "claim_runs": {
        # SQLite has one writer at a time: no claim races another.
        "sqlite": "UPDATE runs SET status = 'running', started_ms = :b_now "
                  "WHERE id IN (SELECT value FROM json_each(:b_ids)) "
                  "AND status || '' = 'queued' RETURNING id",
        # Several processes may claim from one PostgreSQL database at once. Each locks the
        # queued runs it claims and skips those another claimer holds (that one is taking
        # them) instead of waiting for it to commit; a run whose claim committed first is no
        # longer queued when it is read, so no run is claimed twice.
        "postgresql": "UPDATE runs SET status = 'running', started_ms = %(b_now)s "
                      "WHERE id IN (SELECT queued.id FROM runs AS queued WHERE queued.id = "
                      "ANY(CAST(%(b_ids)s AS text[])) "
                      "AND queued.status || '' = 'queued' FOR UPDATE SKIP LOCKED) RETURNING id",
    },
    # Runs created whose keys were new (ON CONFLICT DO NOTHING makes a run key unique without
    # a race). SQLite's executemany returns no rows, so the ids of a batch (each one new) are
    # looked up after it. PostgreSQL makes the rows of one JSON parameter and says which it
    # inserted: psycopg parses a long multi-row VALUES afresh each time (500 runs cost 100 ms
    # of the client's CPU, three times the write).
    "insert_new_runs": {
        "sqlite": SQL["sqlite"]["insert_runs"] + " ON CONFLICT DO NOTHING",
        "postgresql": f"INSERT INTO runs ({_column_list(RUN_COLUMNS)}) SELECT "
                      f"{_column_list(RUN_COLUMNS)} FROM json_populate_recordset(NULL::runs, "
                      f"CAST(%(b_rows)s AS json)) ON CONFLICT DO NOTHING RETURNING id",
    },
    # Limited runs' claim in a cluster: of one loop's queued runs `b_ids`, as many as its lane
    # has room for (`b_limit` less its limited runs running anywhere), oldest first. One
    # statement, so SQLite (one writer) counts and claims at once; PostgreSQL first takes a lock
    # per loop for the transaction (`claim_limited`). A negative LIMIT means none to SQLite and
    # is an error to PostgreSQL, so the room is clamped at 0 by each one's own maximum. The
    # lane lock is the claimers' only: a run cancelled while the claim waited for its row is
    # checked again as it is then (PostgreSQL re-reads the updated row for the outer WHERE),
    # so it stays cancelled.
    "claim_limited": {
        backend: f"UPDATE runs SET status = 'running', started_ms = {p('b_now')} "
                 f"WHERE status || '' = 'queued' "
                 f"AND id IN (SELECT mine.id FROM runs AS mine WHERE mine.id {ids} "
                 f"AND mine.status || '' = 'queued' "
                 f"ORDER BY coalesce(mine.scheduled_ms, mine.queued_ms), mine.id "
                 f"LIMIT {greatest}(0, {p('b_limit')} - (SELECT count(*) FROM runs AS others "
                 f"WHERE others.project = {p('b_project')} AND others.loop = {p('b_loop')} "
                 f"AND others.status = '{RunStatus.RUNNING.value}' AND others.\"trigger\" IN "
                 f"({', '.join(repr(trigger) for trigger in sorted(LIMITED_TRIGGERS))})))) "
                 f"RETURNING id"
        for backend, ids, greatest, p in (
            ("sqlite", "IN (SELECT value FROM json_each(:b_ids))", "max", ":{}".format),
            ("postgresql", "= ANY(CAST(%(b_ids)s AS text[]))", "greatest", "%({})s".format))},
    "lane_lock": {"postgresql": "SELECT pg_advisory_xact_lock(hashtext(%(b_lane)s))"},
    # Runs' ends from one JSON parameter: psycopg's executemany sends a statement a run, and
    # its pipeline is driven from Python, where a cluster worker's settles spent a fifth of
    # its time. A result and an error travel as their JSON text, cast as `finish_runs` casts
    # them, so a run reads back the same whichever statement wrote it.
    "finish_runs": {
        "postgresql": "UPDATE runs SET status = e.b_status, result = CAST(e.b_result AS JSON), "
                      "error = CAST(e.b_error AS JSON), finished_ms = e.b_now, "
                      "init_ms = e.b_init, started_ms = COALESCE(runs.started_ms, e.b_now) "
                      "FROM json_to_recordset(CAST(%(b_ends)s AS JSON)) AS e(b_id text, "
                      "b_status text, b_result text, b_error text, b_now bigint, "
                      "b_init double precision) "
                      "WHERE runs.id = e.b_id AND runs.id = ANY(CAST(%(b_ids)s AS text[])) "
                      "AND runs.status != 'cancelled'",
    },
    "runs_present": {
        "sqlite": "SELECT id FROM runs WHERE id IN (SELECT value FROM json_each(:b_ids))",
    },
}


def insert_runs(db: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert runs (`Run.row()`s); a duplicate key raises SQLAlchemy's IntegrityError."""
    _execute(db, "insert_runs", [_run_row(row) for row in rows])


def insert_new_runs(db: Connection, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Insert the runs (`Run.row()`s) whose keys are new; the ids inserted."""
    if not rows:
        return set()
    statements = _BY_BACKEND["insert_new_runs"]
    if db.dialect.name == "postgresql":
        return _ids(db, statements["postgresql"], {"b_rows": orjson.dumps(
            [dict(row) for row in rows], option=orjson.OPT_NON_STR_KEYS).decode()})
    _execute_sql(db, statements["sqlite"], [_run_row(row) for row in rows])
    return _ids(db, _BY_BACKEND["runs_present"]["sqlite"],
                {"b_ids": orjson.dumps([row["id"] for row in rows]).decode()})


def claim_runs(db: Connection, run_ids: Sequence[str], now: int) -> set[str]:
    """queued → running, started at `now`: the ids of `run_ids` this transaction claimed."""
    return _ids(db, _BY_BACKEND["claim_runs"][db.dialect.name],
                {"b_ids": _id_list(db, run_ids), "b_now": now})


def claim_limited(db: Connection, lanes: Mapping[tuple[str, str], tuple[int, Sequence[str]]],
                  clock: Callable[[], int]) -> set[str]:
    """queued → running, started at `clock()` once the lanes are locked, for each loop
    `(project, loop)` of `lanes`: of its runs `ids`, as many as `limit` less its limited runs
    running leaves room for; the ids this transaction claimed. On PostgreSQL each loop's lock is
    held until the transaction ends. The time is read after the locks: a claim that waited for
    another's gets the time it was granted, so a lane's runs never seem to overlap (one run's
    end was recorded after the next one's start when the time was read before the wait)."""
    backend = db.dialect.name
    if backend == "postgresql":  # counts and claims race otherwise
        for project, loop in sorted(lanes):
            _execute_sql(db, _BY_BACKEND["lane_lock"][backend],
                         [{"b_lane": f"tsq lane {project}/{loop}"}])
    now = clock()
    claimed: set[str] = set()
    for (project, loop), (limit, ids) in lanes.items():
        claimed |= _ids(db, _BY_BACKEND["claim_limited"][backend], {
            "b_ids": _id_list(db, ids), "b_project": project, "b_loop": loop,
            "b_limit": limit, "b_now": now})
    return claimed


def _id_list(db: Connection, run_ids: Sequence[str]) -> str | list[str]:
    """Run ids as one parameter: a JSON array on SQLite, an array on PostgreSQL."""
    if db.dialect.name == "postgresql":
        return list(run_ids)
    return orjson.dumps(list(run_ids)).decode()


def _run_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: json_text(row[name]) if name in JSON_COLUMNS else row[name]
            for name in RUN_COLUMNS}


def finish_runs(db: Connection, ends: Sequence[Mapping[str, Any]]) -> None:
    """Write runs' ends: `{b_id, b_status, b_result, b_error, b_now, b_init}` each (of a run
    ended twice, the last)."""
    rows = [{**end, "b_result": json_text(end["b_result"]), "b_error": json_text(end["b_error"])}
            for end in ends]
    if db.dialect.name == "postgresql" and len(rows) > 1:
        # one row a run: of an UPDATE's several matching rows PostgreSQL takes any one
        last = {row["b_id"]: row for row in rows}
        _execute_sql(db, _BY_BACKEND["finish_runs"]["postgresql"],
                     [{"b_ends": orjson.dumps(list(last.values())).decode(),
                       "b_ids": list(last)}])
    else:
        _execute(db, "finish_runs", rows)


def insert_logs(db: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert log lines: `{run_id, ts_ms, level, message}` each."""
    _execute(db, "insert_logs", rows)


def _execute(db: Connection, statement: str, parameters: Sequence[Mapping[str, Any]]) -> None:
    """Run `statement` (a name of SQL) once per parameter set."""
    _execute_sql(db, SQL[db.dialect.name][statement], parameters)


def _execute_sql(db: Connection, sql: str, parameters: Sequence[Mapping[str, Any]]) -> None:
    if not parameters:
        return
    with _cursor(db, sql, parameters) as cursor:
        if len(parameters) == 1:  # psycopg's executemany sets up a pipeline, even for one row
            cursor.execute(sql, parameters[0])
        else:
            cursor.executemany(sql, parameters)


def _ids(db: Connection, sql: str, parameters: Mapping[str, Any]) -> set[str]:
    """The first column of what `sql` returns, as a set."""
    with _cursor(db, sql, parameters) as cursor:
        cursor.execute(sql, parameters)
        return {row[0] for row in cursor.fetchall()}


@contextlib.contextmanager
def _cursor(db: Connection, sql: str, parameters: Any) -> Iterator[Any]:
    """A cursor of the transaction's own driver connection; a driver error is raised as
    SQLAlchemy raises it (IntegrityError for a duplicate key)."""
    cursor = db.connection.cursor()
    driver_error = db.dialect.loaded_dbapi.Error
    try:
        yield cursor
    except driver_error as error:
        raise sa.exc.DBAPIError.instance(sql, parameters, error, driver_error) from error
    finally:
        cursor.close()
