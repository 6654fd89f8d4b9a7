"""Run records and their log lines.

A run keeps the version it started with to the end. Scheduled runs carry a key
`loop:event:scheduled_unix_ms`, unique in the table, so the same window can never run twice;
manual runs have no key. Times are epoch milliseconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tsq.db import run_logs, runs
from tsq.errors import NotFound
from tsq.runtimes.base import LogLine, RunResult

__all__ = ["RunFilter", "RunStatus", "RunStore", "new_run_id"]


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass(frozen=True)
class RunFilter:
    project: str | None = None
    loop: str | None = None
    status: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = 50


def new_run_id() -> str:
    """Sortable by creation time: 12 hex digits of milliseconds, then 12 random ones."""
    return f"{int(time.time() * 1000):012x}{os.urandom(6).hex()}"


class RunStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, *, project: str, loop: str, event: str, version_id: str, trigger: str,
               params: dict[str, Any], scheduled_ms: int | None = None, key: str | None = None,
               attempt: int = 1, pipeline_id: str | None = None) -> dict[str, Any]:
        run_id = new_run_id()
        with self.engine.begin() as db:
            db.execute(runs.insert().values(
                id=run_id, key=key, project=project, loop=loop, event=event,
                version_id=version_id, trigger=trigger, status=RunStatus.QUEUED.value,
                params=params, attempt=attempt, pipeline_id=pipeline_id,
                scheduled_ms=scheduled_ms, queued_ms=_now_ms(),
            ))
        return self.get(run_id)

    def mark_running(self, run_id: str) -> None:
        with self.engine.begin() as db:
            db.execute(runs.update().where(runs.c.id == run_id, runs.c.status == "queued")
                       .values(status=RunStatus.RUNNING.value, started_ms=_now_ms()))

    def finish(self, run_id: str, outcome: RunResult) -> dict[str, Any]:
        now = _now_ms()
        with self.engine.begin() as db:
            db.execute(runs.update().where(runs.c.id == run_id).values(
                status=outcome.status, result=outcome.result, error=outcome.error,
                finished_ms=now, started_ms=sa.func.coalesce(runs.c.started_ms, now),
            ))
        return self.get(run_id)

    def append_logs(self, run_id: str, lines: Sequence[LogLine]) -> None:
        if not lines:
            return
        with self.engine.begin() as db:
            db.execute(run_logs.insert(), [
                {"run_id": run_id, "ts_ms": line.ts_ms, "level": line.level,
                 "message": line.message} for line in lines
            ])

    def get(self, run_id: str) -> dict[str, Any]:
        with self.engine.connect() as db:
            row = db.execute(sa.select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(f"no run with id {run_id!r}")
        return _to_json(row)

    def find(self, where: RunFilter) -> list[dict[str, Any]]:
        query = sa.select(runs)
        for column, value in (("project", where.project), ("loop", where.loop),
                              ("status", where.status)):
            if value is not None:
                query = query.where(runs.c[column] == value)
        if where.since_ms is not None:
            query = query.where(runs.c.queued_ms >= where.since_ms)
        if where.until_ms is not None:
            query = query.where(runs.c.queued_ms < where.until_ms)
        query = query.order_by(runs.c.queued_ms.desc(), runs.c.id.desc()).limit(where.limit)
        with self.engine.connect() as db:
            return [_to_json(row) for row in db.execute(query)]

    def logs(self, run_id: str) -> list[dict[str, Any]]:
        self.get(run_id)
        with self.engine.connect() as db:
            rows = db.execute(sa.select(run_logs).where(run_logs.c.run_id == run_id)
                              .order_by(run_logs.c.id)).all()
        return [{"ts": row.ts_ms, "level": row.level, "message": row.message} for row in rows]

    def fail_unfinished(self, message: str) -> int:
        """Mark runs left queued or running by a stopped service as failed; return how many."""
        with self.engine.begin() as db:
            result = db.execute(runs.update().where(runs.c.status.in_(["queued", "running"]))
                                .values(status=RunStatus.FAILED.value, finished_ms=_now_ms(),
                                        error={"type": "Interrupted", "message": message,
                                               "stack": ""}))
        return int(result.rowcount)


def _to_json(row: Any) -> dict[str, Any]:
    data = {str(key): value for key, value in row._mapping.items()}
    started, finished, queued = data["started_ms"], data["finished_ms"], data["queued_ms"]
    data["duration_ms"] = finished - started if finished is not None and started else None
    data["queue_delay_ms"] = started - queued if started is not None else None
    return data


def _now_ms() -> int:
    return int(time.time() * 1000)
