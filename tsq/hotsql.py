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

import re
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tsq.db import json_text, run_logs, runs

__all__ = ["finish_runs", "insert_logs", "insert_runs"]

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


def insert_runs(db: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert runs (`Run.row()`s); a duplicate key raises SQLAlchemy's IntegrityError."""
    _execute(db, "insert_runs", [
        {name: json_text(row[name]) if name in JSON_COLUMNS else row[name]
         for name in RUN_COLUMNS} for row in rows])


def finish_runs(db: Connection, ends: Sequence[Mapping[str, Any]]) -> None:
    """Write runs' ends: `{b_id, b_status, b_result, b_error, b_now, b_init}` each."""
    _execute(db, "finish_runs", [
        {**end, "b_result": json_text(end["b_result"]), "b_error": json_text(end["b_error"])}
        for end in ends])


def insert_logs(db: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert log lines: `{run_id, ts_ms, level, message}` each."""
    _execute(db, "insert_logs", rows)


def _execute(db: Connection, statement: str, parameters: Sequence[Mapping[str, Any]]) -> None:
    if not parameters:
        return
    sql = SQL[db.dialect.name][statement]
    cursor = db.connection.cursor()  # the transaction's own driver connection
    driver_error = db.dialect.loaded_dbapi.Error
    try:
        if len(parameters) == 1:  # psycopg's executemany sets up a pipeline, even for one row
            cursor.execute(sql, parameters[0])
        else:
            cursor.executemany(sql, parameters)
    except driver_error as error:  # as SQLAlchemy raises it (IntegrityError for a duplicate)
        raise sa.exc.DBAPIError.instance(sql, parameters, error, driver_error) from error
    finally:
        cursor.close()
