"""The schema's revisions: `connect` skips Alembic when the database is at the newest one, which
it knows from the migration files' names; these tests keep that shortcut honest."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

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
    """A database left at an older revision (here: the init-time column not there yet)."""
    path = tmp_path / "old.db"
    db.connect(f"sqlite:///{path}")
    with sqlite3.connect(path) as raw:
        raw.execute("ALTER TABLE runs DROP COLUMN init_ms")
        raw.execute("UPDATE alembic_version SET version_num = '0004'")
    db._migrated.clear()  # as a new process would find it
    db.connect(f"sqlite:///{path}")
    with sqlite3.connect(path) as raw:
        columns = [row[1] for row in raw.execute("PRAGMA table_info(runs)")]
        assert "init_ms" in columns
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (db.head_revision(),)]
