"""Backfill jobs as the run database keeps them.

A job is stored once, when it starts; its progress is never written, it is read from its runs
(found by their keys: the job's loop and events, scheduled times in `[from, to)`), so it is as
true after a restart as the runs themselves. `finished_ms` only marks the jobs a restart no longer
needs to look at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tsq.db import backfills, transaction
from tsq.errors import NotFound

__all__ = ["BackfillJob", "BackfillStore"]


@dataclass(frozen=True)
class BackfillJob:
    id: str
    project: str
    loop: str
    events: tuple[str, ...]
    version_id: str  # the version its runs run
    from_ms: int  # it runs the scheduled times in [from_ms, to_ms)
    to_ms: int
    total: int  # scheduled times in the range
    skipped: int  # of them, those that had succeeded before it started
    created_ms: int
    finished_ms: int | None = None

    def row(self) -> dict[str, Any]:
        return {**self.__dict__, "events": list(self.events)}


class BackfillStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, job: BackfillJob) -> None:
        with transaction(self.engine) as db:
            db.execute(backfills.insert().values(**job.row()))

    def get(self, job_id: str) -> BackfillJob:
        with self.engine.connect() as db:
            row = db.execute(sa.select(backfills).where(backfills.c.id == job_id)).first()
        if row is None:
            raise NotFound(f"no backfill with id {job_id!r}")
        return _from_row(row)

    def unfinished(self) -> list[BackfillJob]:
        """The jobs not yet seen done, oldest first."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(backfills).where(backfills.c.finished_ms.is_(None))
                              .order_by(backfills.c.created_ms, backfills.c.id))
            return [_from_row(row) for row in rows]

    def finished(self, job_id: str, at_ms: int) -> None:
        with transaction(self.engine) as db:
            db.execute(backfills.update().where(backfills.c.id == job_id)
                       .values(finished_ms=at_ms))


def _from_row(row: sa.Row[Any]) -> BackfillJob:
    data = dict(row._mapping)
    return BackfillJob(**{**data, "events": tuple(data["events"])})
