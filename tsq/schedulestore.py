"""When each scheduled event's current schedule took effect.

A new or changed schedule is not backfilled for times before it was deployed (metronome.md), so
after an outage the scheduler catches up from the later of this time and the event's last
scheduled run. Deploy, rollback and delete keep the table in step with the live loops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from tsq.db import schedules, transaction
from tsq.model import LoopSpec

__all__ = ["ScheduleStore"]

_INSERT: dict[str, Callable[[sa.Table], Any]] = {
    "sqlite": sqlite.insert, "postgresql": postgresql.insert}


class ScheduleStore:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def sync(self, project: str, loop: str, spec: LoopSpec | None) -> None:
        """Record the schedules of `loop` now live (`spec`; None once deleted)."""
        with transaction(self.engine) as db:
            self.sync_in(db, project, loop, spec)

    def deployed(self, db: Connection, spec: LoopSpec) -> None:
        """`sync` for a loop being deployed, inside the deploy's transaction."""
        self.sync_in(db, spec.project, spec.name, spec)

    def sync_in(self, db: Connection, project: str, loop: str, spec: LoopSpec | None) -> None:
        """`sync` inside the caller's transaction `db`."""
        rates = {event.name: event.rate for event in spec.events if event.rate} if spec else {}
        now = int(self.clock() * 1000)
        where = (schedules.c.project == project, schedules.c.loop == loop)
        known = {row.event: row.rate for row in db.execute(sa.select(schedules).where(*where))}
        for event in known.keys() - rates.keys():
            db.execute(schedules.delete().where(*where, schedules.c.event == event))
        for event, rate in rates.items():
            if event not in known:
                db.execute(schedules.insert().values(project=project, loop=loop,
                                                     event=event, rate=rate, since_ms=now))
            elif known[event] != rate:
                db.execute(schedules.update().where(*where, schedules.c.event == event)
                           .values(rate=rate, since_ms=now))

    def since_all(self, events: list[tuple[str, str, str, str]]
                  ) -> dict[tuple[str, str, str], int]:
        """(project, loop, event) → when its rate took effect, for `(project, loop, event,
        rate)`; an event nobody recorded, or recorded with another rate, starts now."""
        with self.engine.connect() as db:
            known = {(r.project, r.loop, r.event): (r.rate, int(r.since_ms))
                     for r in db.execute(sa.select(schedules))}
        now = int(self.clock() * 1000)
        since: dict[tuple[str, str, str], int] = {}
        fresh = []
        for project, loop, event, rate in events:
            recorded = known.get((project, loop, event))
            if recorded is not None and recorded[0] == rate:
                since[(project, loop, event)] = recorded[1]
            else:
                since[(project, loop, event)] = now
                fresh.append({"project": project, "loop": loop, "event": event, "rate": rate,
                              "since_ms": now})
        if fresh:
            with transaction(self.engine) as db:
                # An upsert, not a delete and an insert: a process starting beside another on
                # one PostgreSQL database would find no row to delete while the other's insert
                # is uncommitted, then fail on the key when it commits.
                insert = _INSERT[db.dialect.name](schedules)
                db.execute(insert.on_conflict_do_update(
                    index_elements=[schedules.c.project, schedules.c.loop, schedules.c.event],
                    set_={"rate": insert.excluded.rate, "since_ms": insert.excluded.since_ms}),
                    fresh)
        return since
