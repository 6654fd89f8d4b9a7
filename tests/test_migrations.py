"""The schema's revisions: `connect` skips Alembic when the database is at the newest one, which
it knows from the migration files' names; these tests keep that shortcut honest."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from tsq import db


def test_the_head_read_from_file_names_is_alembics_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(resources.files("tsq") / "migrations"))
    assert ScriptDirectory.from_config(config).get_heads() == [db.head_revision()]


def test_a_new_database_is_created_at_the_head(tmp_path: Path) -> None:
    db.connect(f"sqlite:///{tmp_path / 'new.db'}")
    with sqlite3.connect(tmp_path / "new.db") as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (db.head_revision(),)]
        assert raw.execute("SELECT count(*) FROM runs").fetchone() == (0,)


def test_an_older_database_is_upgraded(tmp_path: Path) -> None:
    """A database one revision behind (as the previous tsq left it) is brought to the head by
    `connect`, to the same schema as a new one."""
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    db.connect(f"sqlite:///{new}")
    engine = db.connect(f"sqlite:///{old}")
    config = Config()
    config.set_main_option("script_location", str(resources.files("tsq") / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
    assert _version(old) != db.head_revision()
    db._migrated.clear()  # as a new process would find it
    db.connect(f"sqlite:///{old}")
    assert _version(old) == db.head_revision()
    assert _schema(old) == _schema(new)


def _version(path: Path) -> str:
    with sqlite3.connect(path) as raw:
        return str(raw.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def _schema(path: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(path) as raw:
        return {(kind, name) for kind, name in raw.execute(
            "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}
