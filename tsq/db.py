"""The database behind the loop and run stores: schema, engine, migrations.

SQLite (one file in the data directory) by default, PostgreSQL by URL; the same SQLAlchemy Core
tables for both. The schema is owned by Alembic (`tsq/migrations`); `connect` upgrades it to the
newest revision, so a new data directory or a newer tsq needs no manual step.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from collections.abc import Iterator
from importlib import resources
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tsq import datafiles
from tsq.errors import ConfigError

__all__ = ["artifacts", "backfills", "connect", "loop_history", "loop_versions", "loops",
           "metadata", "run_logs", "runs", "schedules", "tokens", "transaction", "trims"]

metadata = sa.MetaData()

loops = sa.Table(
    "loops", metadata,
    sa.Column("project", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("latest_version", sa.String(64), nullable=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    sa.Column("deleted_ms", sa.BigInteger, nullable=True),
)

loop_versions = sa.Table(
    "loop_versions", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("runtime", sa.String(16), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("project", "name", "number", name="uq_loop_versions_number"),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(200), nullable=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("loop", sa.String(64), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("version_id", sa.String(64), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("error", sa.JSON, nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("pipeline_id", sa.String(32), nullable=True),  # the id of its first step
    sa.Column("parent_id", sa.String(32), nullable=True),  # the run whose Loop.run started it
    sa.Column("pipeline_ms", sa.BigInteger, nullable=True),  # versions are pinned at this time
    sa.Column("scheduled_ms", sa.BigInteger, nullable=True),
    sa.Column("queued_ms", sa.BigInteger, nullable=False),
    sa.Column("started_ms", sa.BigInteger, nullable=True),
    sa.Column("finished_ms", sa.BigInteger, nullable=True),
    sa.Column("window_start_ms", sa.BigInteger, nullable=True),
    sa.Column("window_end_ms", sa.BigInteger, nullable=True),
    sa.Column("epsilon_ms", sa.BigInteger, nullable=True),
    sa.Column("not_before_ms", sa.BigInteger, nullable=True),  # a retry waits until then
    sa.Column("init_ms", sa.Float, nullable=True),  # of the duration, before the handler ran
    sa.UniqueConstraint("project", "key", name="uq_runs_project_key"),
    sa.Index("ix_runs_loop_queued", "project", "loop", "queued_ms"),
    sa.Index("ix_runs_event_scheduled", "project", "loop", "event", "scheduled_ms"),
    sa.Index("ix_runs_pipeline", "pipeline_id"),
    sa.Index("ix_runs_parent", "parent_id"),
    sa.Index("ix_runs_loop_window", "project", "loop", "window_start_ms"),
)
# When a run stands for (its scheduled time, else when it was queued): listings show the newest
# first, and without an index on it, the newest 50 of 300,000 runs took 400 ms (a sort of all).
RUN_TIME = sa.func.coalesce(runs.c.scheduled_ms, runs.c.queued_ms)
sa.Index("ix_runs_time", RUN_TIME)
sa.Index("ix_runs_loop_time", runs.c.loop, RUN_TIME)
sa.Index("ix_runs_status_time", runs.c.status, RUN_TIME)  # unfinished runs, in order
# A loop's running runs, its lane's count (migration 0010 says why)
_RUNNING = runs.c.status == "running"
sa.Index("ix_runs_running", runs.c.project, runs.c.loop, sqlite_where=_RUNNING,
         postgresql_where=_RUNNING)

loop_history = sa.Table(  # which version each loop's `latest` pointed at, and since when
    "loop_history", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("version_id", sa.String(64), nullable=True),  # None: the loop was deleted
    sa.Column("since_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_loop_history_name", "project", "name", "since_ms"),
)

artifacts = sa.Table(  # files a run produced: reports, charts, exports
    "artifacts", metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)

schedules = sa.Table(  # when each scheduled event's current rate took effect
    "schedules", metadata,
    sa.Column("project", sa.String(64), primary_key=True),
    sa.Column("loop", sa.String(64), primary_key=True),
    sa.Column("event", sa.String(64), primary_key=True),
    sa.Column("rate", sa.String(200), nullable=False),
    sa.Column("since_ms", sa.BigInteger, nullable=False),
)

backfills = sa.Table(  # backfill jobs; their progress is their runs' (found by run key)
    "backfills", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("loop", sa.String(64), nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("version_id", sa.String(64), nullable=False),  # what its runs run
    sa.Column("from_ms", sa.BigInteger, nullable=False),  # scheduled times in [from, to)
    sa.Column("to_ms", sa.BigInteger, nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("skipped", sa.Integer, nullable=False),  # times that had succeeded already
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("finished_ms", sa.BigInteger, nullable=True),  # when it was seen done
    sa.Index("ix_backfills_unfinished", "finished_ms"),
)

trims = sa.Table(  # what retention deleted: a source's points in [start, end)
    "trims", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("connector", sa.Text, nullable=False),  # its instance key, as JSON
    sa.Column("selector", sa.Text, nullable=False),  # the retention's `select:`
    sa.Column("start_ms", sa.BigInteger, nullable=False),
    sa.Column("end_ms", sa.BigInteger, nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("loop", sa.String(64), nullable=False),  # the retention loop
    sa.Column("run_id", sa.String(32), nullable=False),  # and its run that deleted them
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_trims_range", "project", "start_ms"),
)

tokens = sa.Table(  # API tokens (tsq.tokens): only a hash of each secret is kept
    "tokens", metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),  # sha256 of the secret
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("project", sa.String(64), nullable=True),  # NULL: every project
    sa.Column("roles", sa.String(200), nullable=False),  # comma-separated tsq.tokens.Role
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked_ms", sa.BigInteger, nullable=True),
)

run_logs = sa.Table(
    "run_logs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
    sa.Column("level", sa.String(8), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)

_migrated: set[str] = set()
_migrate_lock = threading.Lock()


_write_locks: dict[str, threading.RLock] = {}


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction. SQLite has one writer at a time, and a writer that finds the file
    locked sleeps in growing steps (1, 2, 5 … 100 ms) before it tries again; so this process's
    writers (scheduler, dispatcher, settler, API) queue on a lock instead, and each takes the
    file the moment the one before it commits. PostgreSQL's writers lock rows, not the
    database: they run side by side, with no lock here."""
    with write_lock(engine), engine.begin() as connection:
        yield connection


def write_lock(engine: Engine) -> contextlib.AbstractContextManager[Any]:
    """What this process's writers to `engine` queue on (`transaction`): a lock on SQLite,
    nothing on PostgreSQL."""
    found = _locks_of_engines.get(engine)
    if found is None:  # the engine's URL as text costs more than a small write: once only
        lock = _write_locks.get(str(engine.url)) if engine.dialect.name == "sqlite" else None
        found = _locks_of_engines[engine] = lock or contextlib.nullcontext()
    return found


_locks_of_engines: weakref.WeakKeyDictionary[Engine, contextlib.AbstractContextManager[Any]] = \
    weakref.WeakKeyDictionary()


# The URL forms tsq takes, named in the error of any other.
URL_FORMS = ("sqlite:///PATH (the default: tsq.db in the data directory) or "
             "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (with the `postgres` extra: "
             "pip install 'tsq[postgres]')")
PG_CONNECT_TIMEOUT_S = 10  # an unreachable server is an error in seconds, not minutes
MIGRATION_LOCK = 0x74737100  # "tsq\0": the advisory lock migrations on PostgreSQL take


def connect(url: str) -> Engine:
    """An engine for `url` with the schema at the newest revision."""
    try:
        target = _target(url)
        engine = sa.create_engine(target, **_engine_options(target))
    except ImportError as exc:
        raise ConfigError(f"cannot use database URL {_redact(url)}: its driver is not "
                          f"installed ({exc}); for PostgreSQL install the `postgres` extra: "
                          f"pip install 'tsq[postgres]'") from None
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"cannot use database URL {_redact(url)}: {exc}; the database URL "
                          f"is {URL_FORMS}") from None
    if engine.dialect.name == "sqlite":
        datafiles.private_database(engine.url.database)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        _write_locks.setdefault(str(engine.url), threading.RLock())
    with _migrate_lock:
        if url not in _migrated:
            _upgrade(engine, url)
            _migrated.add(url)
    return engine


def _target(url: str) -> sa.URL:
    """`url` with its driver: a bare `postgresql://` is psycopg 3, the driver the `postgres`
    extra installs (SQLAlchemy's default for it is psycopg2, which tsq does not depend on)."""
    target = sa.make_url(url)
    if target.drivername == "postgresql":
        target = target.set(drivername="postgresql+psycopg")
    return target


def _engine_options(url: sa.URL) -> dict[str, Any]:
    # orjson for the JSON columns (params, results, errors): the stdlib's encoder was a
    # twentieth of the service's time with runs ending a thousand a second.
    json = {"json_serializer": json_text, "json_deserializer": _json_value}
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 30, "check_same_thread": False}, **json}
    connect_args = ({} if "connect_timeout" in url.query or url.get_backend_name() != "postgresql"
                    else {"connect_timeout": PG_CONNECT_TIMEOUT_S})
    return {"pool_pre_ping": True, "connect_args": connect_args, **json}


def json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _json_value(stored: Any) -> Any:
    """A JSON column's value. SQLite gives a column declared JSON numeric affinity, so a result
    that is a bare number comes back as the number, already parsed."""
    return orjson.loads(stored) if isinstance(stored, str | bytes) else stored


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # WAL lets readers (the API, the CLI) work while a writer commits; NORMAL is durable in WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def head_revision() -> str:
    """The newest migration's revision: migrations are files `NNNN_what.py` whose revision is
    `NNNN` (tests/test_migrations.py checks this against Alembic's own view)."""
    versions = resources.files("tsq") / "migrations" / "versions"
    return max(entry.name.partition("_")[0] for entry in versions.iterdir()
               if entry.name[:4].isdigit() and entry.name.endswith(".py"))


def _at_head(engine: Engine) -> bool:
    """Whether the schema is at the newest revision already, read without Alembic (loading it
    and its scripts takes a CLI call a quarter of a second)."""
    try:
        with engine.connect() as connection:
            found = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.DBAPIError:
        return False  # a new database: no table yet
    return [row[0] for row in found] == [head_revision()]


def _upgrade(engine: Engine, url: str) -> None:
    if _at_head(engine):
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("tsq") / "migrations"))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Processes starting together on one database migrate one after the other: the
                # next finds the schema at the head (its DDL is transactional) and does nothing.
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except sa.exc.DBAPIError as exc:  # unreachable, refused, no such database, no rights
        # psycopg's messages run over lines ("…failed: Connection refused\n\tIs the server
        # running…"): one line reads better in a log and a terminal.
        reason = " ".join(str(exc.orig).split())
        raise ConfigError(f"cannot open the database {_redact(url)}: {reason}") from None


def _redact(url: str) -> str:
    """`url` with its password shown as ***, even when SQLAlchemy cannot parse it."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)
