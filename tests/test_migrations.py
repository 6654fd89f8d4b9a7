"""The schema's revisions: `connect` skips Alembic when the database is at the newest one, which
it knows from the migration files' names; these tests keep that shortcut honest, and take every
migration on each backend (SQLite and PostgreSQL) from an empty database, with data in it."""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from unittest.mock import patch

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from tests import pgserver
from tests.conftest import BACKENDS
from tsq import db


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tsq.db'}"
        return
    server = request.getfixturevalue("postgres")
    name = server.create_database(template=None)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


def alembic() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("tsq") / "migrations"))
    return config


def migrate(engine: sa.Engine, verb: str, revision: str) -> None:
    """`alembic upgrade|downgrade revision` on `engine`'s database."""
    config = alembic()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, verb)(config, revision)


def version(engine: sa.Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(sa.text("SELECT version_num FROM alembic_version"))
                   .scalar_one())


def differences(engine: sa.Engine) -> list[object]:
    """How the database's schema differs from tsq.db's tables (nothing, at the head)."""
    with engine.connect() as connection, warnings.catch_warnings():
        # SQLAlchemy does not reflect SQLite's indexes on expressions (when a run stands for):
        # it says so, and Alembic then leaves them out of the comparison
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based "
                                "index", sa.exc.SAWarning)
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified "
                                "expression-based index", UserWarning)
        return list(compare_metadata(MigrationContext.configure(connection), db.metadata))


def test_the_head_read_from_file_names_is_alembics_head() -> None:
    assert ScriptDirectory.from_config(alembic()).get_heads() == [db.head_revision()]


def test_a_new_database_is_created_at_the_head(empty_url: str) -> None:
    engine = db.connect(empty_url)
    try:
        assert version(engine) == db.head_revision()
        assert differences(engine) == []
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM runs")).scalar_one() == 0
    finally:
        engine.dispose()


def test_an_older_database_is_upgraded(empty_url: str) -> None:
    """A database one revision behind (as the previous tsq left it) is brought to the head by
    `connect`, to the same schema as a new one."""
    engine = db.connect(empty_url)
    try:
        migrate(engine, "downgrade", "-1")
        assert version(engine) != db.head_revision()
        db._migrated.clear()  # as a new process would find it
        db.connect(empty_url).dispose()
        assert version(engine) == db.head_revision()
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_the_first_revisions_data_is_carried_through_every_migration(empty_url: str) -> None:
    """A database the first tsq made, with a loop and a keyed run in it, upgraded by `connect`
    through every migration: the run keeps its key (now unique per project), becomes the first
    step of its own pipeline, and the loop's latest version starts its history."""
    engine = sa.create_engine(empty_url)
    try:
        migrate(engine, "upgrade", "0001")
        with engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO loops VALUES ('default', 'roll', 'v1', 1000, 2000, NULL)"))
            connection.execute(sa.text(
                "INSERT INTO runs (id, key, project, loop, event, version_id, trigger, status, "
                "params, result, attempt, queued_ms) VALUES ('r1', 'roll:tick:60000', "
                "'default', 'roll', 'tick', 'v1', 'schedule', 'success', '{\"cell\": \"gra\"}', "
                "'42', 1, 3000)"))
        db.connect(empty_url).dispose()
        assert version(engine) == db.head_revision()
        assert differences(engine) == []
        with engine.connect() as connection:
            run = connection.execute(sa.select(db.runs)).one()
            history = connection.execute(sa.select(db.loop_history)).one()
        assert (run.key, run.pipeline_id, run.pipeline_ms) == ("roll:tick:60000", "r1", 3000)
        assert (run.params, run.result) == ({"cell": "gra"}, 42)
        assert (history.name, history.version_id, history.since_ms) == ("roll", "v1", 2000)
    finally:
        engine.dispose()



@pytest.mark.postgres
def test_processes_starting_together_on_a_new_database_migrate_it_once(
        postgres: pgserver.PostgresServer) -> None:
    """Services opening an empty PostgreSQL database at once, each as its own process would
    (none has seen it migrated, no lock of the process orders them), all start."""
    url = postgres.url(postgres.create_database(template=None))
    opened: list[sa.Engine] = []
    failed: list[BaseException] = []

    def open_it() -> None:
        try:
            opened.append(db.connect(url))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    with patch.object(db, "_migrated", set()), \
            patch.object(db, "_migrate_lock", contextlib.nullcontext()):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    try:
        assert not failed, failed
        assert len(opened) == 3
        assert version(opened[0]) == db.head_revision()
        assert differences(opened[0]) == []
    finally:
        for engine in opened:
            engine.dispose()


def test_run_listings_read_the_newest_runs_by_index(empty_url: str) -> None:
    """The indexes on when a run stands for exist after the migrations (SQLite's cannot be
    compared above) and the listing's query reads them: without, the newest 50 of 300,000
    runs took 400 ms, a sort of every run."""
    engine = db.connect(empty_url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                names = set(connection.execute(sa.text(
                    "SELECT name FROM sqlite_master WHERE type = 'index'")).scalars())
            else:
                names = set(connection.execute(sa.text(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'runs'")).scalars())
            assert {"ix_runs_time", "ix_runs_loop_time", "ix_runs_status_time"} <= names
            assert "ix_runs_status" not in names  # the status one leads the new index
            if engine.dialect.name == "sqlite":
                query = (sa.select(db.runs).where(db.runs.c.loop == "roll")
                         .order_by(db.RUN_TIME.desc(), db.runs.c.id.desc()).limit(50))
                plan = " ".join(str(row[-1]) for row in connection.execute(
                    sa.text("EXPLAIN QUERY PLAN " + str(query.compile(
                        engine, compile_kwargs={"literal_binds": True})))))
                assert "ix_runs_loop_time" in plan, plan
    finally:
        engine.dispose()
