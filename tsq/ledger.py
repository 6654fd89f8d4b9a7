"""The ledger of a loop: every scheduled time of its events in a range, with what happened to it.

The times come from the loop's Metronome schedules (the latest version's events); each is joined
to its run by the run key (`loop:event:scheduled_ms`), which the scheduler, catch-up and backfill
all give the run of that time. A time with no run is told apart by when it lies:

    before    before the event's current schedule took effect (the scheduler never ran it)
    upcoming  not yet due
    due       due, and still within its epsilon: the scheduler is about to record it
    missing   past its epsilon with no run: neither run nor recorded as expired

Every other cell carries its run's status (success, failed, timeout, expired, cancelled, queued,
running) and id.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from tsq import metronome
from tsq.errors import BadRequest
from tsq.loopstore import StoredLoop
from tsq.model import EventSpec
from tsq.run import Run
from tsq.runstore import RunStore, run_key
from tsq.schedulestore import ScheduleStore

__all__ = ["DEFAULT_FUTURE", "DEFAULT_PAST", "MAX_CELLS", "NO_RUN", "LedgerRange", "ledger"]

MAX_CELLS = 5000  # per event: a range holding more is refused, naming the limit
DEFAULT_PAST = 60  # without a range: the latest 60 scheduled times (since it took effect) …
DEFAULT_FUTURE = 5  # … and the next 5
NO_RUN = ("before", "upcoming", "due", "missing")


@dataclass(frozen=True)
class LedgerRange:
    """Scheduled times `t` with `start <= t < end`; either bound None takes the default."""

    start: datetime | None = None
    end: datetime | None = None
    event: str | None = None


def ledger(loop: StoredLoop, runs: RunStore, schedules: ScheduleStore, span: LedgerRange,
           now: datetime) -> dict[str, Any]:
    """`{loop, project, now, events: [{name, rate, from, to, cells, counts}]}`; an event
    without a schedule (`after:`) has no cells of its own, so it is left out."""
    events = [e for e in loop.latest.spec.events
              if e.rate and (span.event is None or e.name == span.event)]
    if span.event is not None and not events:
        raise BadRequest(f"loop {loop.name!r} has no scheduled event {span.event!r}; its "
                         f"scheduled events: {_names(loop)}")
    since = schedules.since_all([(loop.project, loop.name, e.name, e.rate or "")
                                 for e in events])
    return {"loop": loop.name, "project": loop.project, "now": now.isoformat(),
            "events": [_event(loop, event, runs, span, now,
                              since[(loop.project, loop.name, event.name)]) for event in events]}


def _event(loop: StoredLoop, event: EventSpec, runs: RunStore, span: LedgerRange,
           now: datetime, since_ms: int) -> dict[str, Any]:
    schedule = metronome.parse(event.rate or "")
    start, end = _range(schedule, span, now, since_ms)
    times = list(islice(schedule.fire_times(start, end), MAX_CELLS + 1))
    if len(times) > MAX_CELLS:
        raise BadRequest(f"[{start.isoformat()}, {end.isoformat()}) holds more than "
                         f"{MAX_CELLS} scheduled times of event {event.name!r} "
                         f"({schedule.text}); ask for a shorter range with from and to")
    keys = [run_key(loop.name, event.name, _ms(t)) for t in times]
    found = runs.by_keys(loop.project, keys)
    cells = [_cell(t, found.get(key), schedule.epsilon, now, since_ms)
             for t, key in zip(times, keys, strict=True)]
    return {"name": event.name, "rate": event.rate, "from": start.isoformat(),
            "to": end.isoformat(), "cells": cells,
            "counts": dict(Counter(cell["status"] for cell in cells))}


def _range(schedule: metronome.Schedule, span: LedgerRange, now: datetime, since_ms: int
           ) -> tuple[datetime, datetime]:
    """The range asked for; by default the latest DEFAULT_PAST times since the schedule took
    effect (older ones were never due) and the next DEFAULT_FUTURE."""
    latest = schedule.latest_at_or_before(now)
    k = schedule.index_of(latest) if latest is not None else 0
    effective = schedule.next_at_or_after(datetime.fromtimestamp(since_ms / 1000, UTC))
    first = schedule.index_of(effective) if effective is not None else 0
    start = span.start or schedule.time_at(max(0, first, k - DEFAULT_PAST + 1))
    end = span.end or schedule.time_at(k + DEFAULT_FUTURE + 1)
    if start >= end:
        raise BadRequest(f"from {start.isoformat()} must be before to {end.isoformat()}")
    return start, end


def _cell(t: datetime, run: Run | None, epsilon: timedelta, now: datetime,
          since_ms: int) -> dict[str, Any]:
    cell: dict[str, Any] = {"time": t.isoformat(), "ms": _ms(t)}
    if run is not None:
        return {**cell, "status": run.status.value, "run": run.id, "trigger": run.trigger,
                "attempt": run.attempt, "duration_ms": run.duration_ms}
    return {**cell, "status": _no_run(t, epsilon, now, since_ms), "run": None}


def _no_run(t: datetime, epsilon: timedelta, now: datetime, since_ms: int) -> str:
    if t > now:
        return "upcoming"
    if _ms(t) < since_ms:
        return "before"
    return "due" if t + epsilon >= now else "missing"


def _names(loop: StoredLoop) -> str:
    return ", ".join(e.name for e in loop.latest.spec.events if e.rate) or "none"


def _ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)

