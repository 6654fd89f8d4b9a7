"""When each scheduled event's current schedule took effect.

A new or changed schedule is not backfilled for times before it was deployed (metronome.md), so
after an outage the scheduler catches up from the later of this time and the event's last
scheduled run. Deploy, rollback and delete keep the table in step with the live loops.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tsq.db import schedules
from tsq.model import LoopSpec

__all__ = ["ScheduleStore"]


class ScheduleStore:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def sync(self, project: str, loop: str, spec: LoopSpec | None) -> None:
        """Record the schedules of `loop` now live (`spec`; None once deleted)."""
        rates = {event.name: event.rate for event in spec.events if event.rate} if spec else {}
        now = int(self.clock() * 1000)
        where = (schedules.c.project == project, schedules.c.loop == loop)
        with self.engine.begin() as db:
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

    def since_ms(self, project: str, loop: str, event: str, rate: str) -> int:
        """When `rate` took effect for this event; now, recorded, if nobody recorded it."""
        with self.engine.connect() as db:
            row = db.execute(sa.select(schedules).where(
                schedules.c.project == project, schedules.c.loop == loop,
                schedules.c.event == event)).first()
        if row is not None and row.rate == rate:
            return int(row.since_ms)
        spec_events = {event: rate}
        self._record(project, loop, spec_events)
        return self.since_ms(project, loop, event, rate)

    def _record(self, project: str, loop: str, rates: dict[str, str]) -> None:
        now = int(self.clock() * 1000)
        with self.engine.begin() as db:
            for event, rate in rates.items():
                where = (schedules.c.project == project, schedules.c.loop == loop,
                         schedules.c.event == event)
                db.execute(schedules.delete().where(*where))
                db.execute(schedules.insert().values(project=project, loop=loop, event=event,
                                                     rate=rate, since_ms=now))
