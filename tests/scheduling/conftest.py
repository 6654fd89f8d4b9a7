"""A service on a clock the tests move, with a scripted worker pool (no V8 here): each test
gets its own. A module sets its start time by defining its own `clock` fixture."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scheduling_helpers import FakeClock, ScriptedPool, make_service, utc
from tsq.service import Service


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc("2026-01-01T00:00:30Z"))


@pytest.fixture
def pool() -> ScriptedPool:
    return ScriptedPool()


@pytest.fixture
def service(tmp_path: Path, clock: FakeClock, pool: ScriptedPool,
            database_url: str | None) -> Iterator[Service]:
    """On SQLite and on PostgreSQL (tests/conftest.py's `database_url`)."""
    svc = make_service(tmp_path / "data", clock, pool, database_url)
    yield svc
    svc.close()
