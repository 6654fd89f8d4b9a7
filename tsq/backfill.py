"""Backfill: run a loop for every scheduled time in `[from, to)`, with progress.

The runs get the same keys as scheduled runs, so a backfill and the scheduler never both run a
time: a key that already succeeded is skipped, one that failed or expired is queued again (its
next attempt), one that is queued or running is followed to its end. The runs go through the
dispatcher in the loop's lane, oldest first, so a backfill honours `max_concurrency` like a
catch-up does.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tsq import metronome
from tsq.dispatcher import Dispatcher
from tsq.errors import BadRequest, NotFound
from tsq.loopstore import StoredLoop
from tsq.outcomes import RunStatus
from tsq.run import Run
from tsq.runstore import NewRun, RunStore, run_key

__all__ = ["MAX_BACKFILL_RUNS", "Backfills"]

MAX_BACKFILL_RUNS = 100_000


@dataclass
class _Job:
    id: str
    project: str
    loop: str
    events: list[str]
    start: datetime
    end: datetime
    total: int = 0
    skipped: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(map(str, RunStatus.final()), 0))
    pending: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        done = self.skipped + sum(self.counts.values())
        return {
            "id": self.id, "project": self.project, "loop": self.loop, "events": self.events,
            "from": self.start.isoformat(), "to": self.end.isoformat(), "total": self.total,
            "done": done, "skipped": self.skipped, **self.counts,
            "pending": len(self.pending),
            "status": "done" if done >= self.total else "running",
        }


class Backfills:
    def __init__(self, runs: RunStore, dispatcher: Dispatcher) -> None:
        self.runs = runs
        self.dispatcher = dispatcher
        self._jobs: dict[str, _Job] = {}
        self._owner: dict[str, _Job] = {}  # run id → its backfill
        self._lock = threading.Lock()
        dispatcher.on_finished(self._finished)

    def start(self, loop: StoredLoop, start: datetime, end: datetime,
              event: str | None = None) -> dict[str, Any]:
        if start.tzinfo is None or end.tzinfo is None:
            raise BadRequest("backfill times need a UTC offset, e.g. 2026-01-01T00:00:00Z")
        if start >= end:
            raise BadRequest(f"backfill from {start.isoformat()} to {end.isoformat()} is empty; "
                             f"`from` must be before `to`")
        spec = loop.latest.spec
        events = [e for e in spec.events if e.rate and (event is None or e.name == event)]
        if not events:
            scheduled = [e.name for e in spec.events if e.rate]
            raise NotFound(
                f"loop {loop.name!r} has no scheduled event {event!r}; its scheduled events: "
                f"{', '.join(scheduled) or 'none'}" if event else
                f"loop {loop.name!r} has no scheduled events (`rate:`), so there is nothing to "
                f"backfill")
        wanted: list[NewRun] = []
        for item in events:
            schedule = metronome.parse(item.rate or "")
            for t in schedule.fire_times(start, end):
                if len(wanted) >= MAX_BACKFILL_RUNS:
                    raise BadRequest(f"a backfill may create at most {MAX_BACKFILL_RUNS} runs; "
                                     f"split {start.isoformat()} to {end.isoformat()} into "
                                     f"smaller ranges")
                ms = round(t.timestamp() * 1000)
                window = schedule.window(t)
                wanted.append(NewRun(
                    project=loop.project, loop=loop.name, event=item.name,
                    version_id=loop.latest.id, trigger="backfill", params=dict(item.params),
                    key=run_key(loop.name, item.name, ms), scheduled_ms=ms,
                    window=(round(window[0].timestamp() * 1000),
                            round(window[1].timestamp() * 1000)),
                    epsilon_ms=int(schedule.epsilon.total_seconds() * 1000)))
        wanted.sort(key=lambda run: (run.scheduled_ms or 0, run.event))
        job = _Job(os.urandom(8).hex(), loop.project, loop.name, [e.name for e in events],
                   start, end, total=len(wanted))
        with self._lock:
            self._jobs[job.id] = job
        self._queue(job, wanted)
        return self.get(job.id)

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise NotFound(f"no backfill with id {job_id!r} (backfills are kept in memory "
                               f"until the service restarts)")
            return job.to_json()

    def _queue(self, job: _Job, wanted: list[NewRun]) -> None:
        existing = self.runs.by_keys(job.project, [run.key or "" for run in wanted])
        to_offer: list[Run] = []
        fresh = [run for run in wanted if run.key not in existing]
        created = {record.key: record for record in self.runs.create_new(fresh)}
        for run in wanted:
            record = created.get(run.key) or existing.get(run.key or "")
            if record is None:  # created by the scheduler a moment ago: follow it anyway
                record = self.runs.by_keys(job.project, [run.key or ""]).get(run.key or "")
            if record is None:
                self._count(job, skipped=True)
                continue
            status = record.status
            if status is RunStatus.SUCCESS:
                self._count(job, skipped=True)
                continue
            with self._lock:
                job.pending.add(record.id)
                self._owner[record.id] = job
            if status.finished:
                record = self.runs.requeue(record.id, attempt=record.attempt + 1,
                                           not_before_ms=None,
                                           message=f"queued again by backfill {job.id}")
                to_offer.append(record)
            elif record.key in created:
                to_offer.append(record)
        for record in to_offer:
            self.dispatcher.offer(record)

    def _count(self, job: _Job, *, skipped: bool) -> None:
        with self._lock:
            job.skipped += skipped

    def _finished(self, record: Run) -> None:
        with self._lock:
            job = self._owner.pop(record.id, None)
            if job is None:
                return
            job.pending.discard(record.id)
            job.counts[record.status.value] = job.counts.get(record.status.value, 0) + 1
