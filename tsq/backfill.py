"""Backfill: run a loop for every scheduled time in `[from, to)`, with progress.

The runs get the same keys as scheduled runs, so a backfill and the scheduler never both run a
time: a key that already succeeded is skipped, one that failed or expired is queued again (its
next attempt), one that is queued or running is followed to its end. The runs go through the
dispatcher in the loop's lane, oldest first, so a backfill honours `max_concurrency` like a
catch-up does.

A job is stored (`tsq.backfillstore`) and its progress is read from its runs, so `GET
/v1/backfill/{id}` answers after a restart. A job the stop left unfinished resumes when the
service starts again: the run keys make that safe, since no scheduled time can run twice. Its runs
that were queued simply run, the ones that were running run again as their next attempt (they
were interrupted, as a failed time the backfill runs again), and the ones it had not created yet
are created.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from tsq import metronome
from tsq.backfillstore import BackfillJob, BackfillStore
from tsq.clock import now_ms
from tsq.dispatcher import Dispatcher
from tsq.errors import BadRequest, NotFound
from tsq.loopstore import LoopStore, StoredLoop, StoredVersion
from tsq.model import EventSpec
from tsq.outcomes import RunStatus
from tsq.run import Run
from tsq.runstore import NewRun, RunStore, run_key

__all__ = ["MAX_BACKFILL_RUNS", "Backfills"]

MAX_BACKFILL_RUNS = 100_000


class Backfills:
    def __init__(self, runs: RunStore, dispatcher: Dispatcher, jobs: BackfillStore,
                 loops: LoopStore) -> None:
        self.runs = runs
        self.dispatcher = dispatcher
        self.jobs = jobs
        self.loops = loops

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
        job = BackfillJob(os.urandom(8).hex(), loop.project, loop.name,
                          tuple(e.name for e in events), loop.latest.id, _ms(start), _ms(end),
                          total=0, skipped=0, created_ms=now_ms(self.runs.clock))
        wanted = _wanted(job, loop.latest, events)
        existing = self.runs.by_keys(job.project, [run.key or "" for run in wanted])
        skipped = sum(record.status is RunStatus.SUCCESS for record in existing.values())
        job = BackfillJob(**{**job.__dict__, "total": len(wanted), "skipped": skipped})
        self.jobs.add(job)  # before its runs: a restart in between creates them
        self._queue(job, wanted, existing)
        return self.get(job.id)

    def get(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        return _progress(job, self.runs.keyed_statuses(job.project, job.loop, job.events,
                                                       job.from_ms, job.to_ms))

    def resume(self, unfinished: Sequence[Run]) -> set[str]:
        """At start, before the dispatcher takes over `unfinished` (the runs a stopped service
        left): resume the backfills they belong to. The ids of the runs taken over here."""
        taken: set[str] = set()
        for job in self.jobs.unfinished():
            if self.get(job.id)["status"] == "done":
                self.jobs.finished(job.id, now_ms(self.runs.clock))
                continue
            version = self.loops.version(job.version_id)
            events = [e for e in version.spec.events if e.name in job.events and e.rate]
            wanted = _wanted(job, version, events)
            keys = {run.key for run in wanted}
            for record in unfinished:
                if record.key in keys and record.status is RunStatus.RUNNING:
                    taken.add(record.id)
                    self.dispatcher.offer(self.runs.requeue(
                        record.id, attempt=record.attempt + 1, not_before_ms=None,
                        message=f"resumed at restart by backfill {job.id}: the service stopped "
                                f"while this run ran"))
            existing = self.runs.by_keys(job.project, [run.key or "" for run in wanted])
            for record in self.runs.create_new([r for r in wanted if r.key not in existing]):
                self.dispatcher.offer(record)
        return taken

    def in_progress(self) -> set[tuple[str, str]]:
        """The (project, loop)s with a backfill still running. A job its runs show done is
        recorded finished here, so that a restart after its runs were swept (tsq.history) does
        not take them for missing ones and run them again."""
        busy: set[tuple[str, str]] = set()
        for job in self.jobs.unfinished():
            if self.get(job.id)["status"] == "done":
                self.jobs.finished(job.id, now_ms(self.runs.clock))
            else:
                busy.add((job.project, job.loop))
        return busy

    def _queue(self, job: BackfillJob, wanted: list[NewRun], existing: dict[str, Run]) -> None:
        created = {record.key: record for record in self.runs.create_new(
            [run for run in wanted if run.key not in existing])}
        for run in wanted:
            record = created.get(run.key) or existing.get(run.key or "")
            if record is None:
                continue  # created by the scheduler a moment ago: it runs, and counts
            if record.status.finished and record.status is not RunStatus.SUCCESS:
                record = self.runs.requeue(record.id, attempt=record.attempt + 1,
                                           not_before_ms=None,
                                           message=f"queued again by backfill {job.id}")
            elif record.key not in created:
                continue  # succeeded already (skipped), or queued or running: followed
            self.dispatcher.offer(record)


def _wanted(job: BackfillJob, version: StoredVersion, events: Iterable[EventSpec]
            ) -> list[NewRun]:
    """The runs of the job's scheduled times, oldest first."""
    start, end = _dt(job.from_ms), _dt(job.to_ms)
    wanted: list[NewRun] = []
    for item in events:
        schedule = metronome.parse(item.rate or "")
        for t in schedule.fire_times(start, end):
            if len(wanted) >= MAX_BACKFILL_RUNS:
                raise BadRequest(f"a backfill may create at most {MAX_BACKFILL_RUNS} runs; "
                                 f"split {start.isoformat()} to {end.isoformat()} into "
                                 f"smaller ranges")
            window = schedule.window(t)
            wanted.append(NewRun(
                project=job.project, loop=job.loop, event=item.name, version_id=version.id,
                trigger="backfill", params=dict(item.params),
                key=run_key(job.loop, item.name, _ms(t)), scheduled_ms=_ms(t),
                window=(_ms(window[0]), _ms(window[1])),
                epsilon_ms=int(schedule.epsilon.total_seconds() * 1000)))
    wanted.sort(key=lambda run: (run.scheduled_ms or 0, run.event))
    return wanted


def _progress(job: BackfillJob, statuses: dict[str, int]) -> dict[str, Any]:
    """What `GET /v1/backfill/{id}` answers: the job and how its runs stand now. A time that
    had succeeded before the job counts as skipped, not as one of its successes."""
    counts = {status.value: statuses.get(status.value, 0) for status in RunStatus.final()}
    counts[RunStatus.SUCCESS.value] = max(0, counts[RunStatus.SUCCESS.value] - job.skipped)
    done = job.skipped + sum(counts.values())
    return {
        "id": job.id, "project": job.project, "loop": job.loop, "events": list(job.events),
        "from": _dt(job.from_ms).isoformat(), "to": _dt(job.to_ms).isoformat(),
        "total": job.total, "done": done, "skipped": job.skipped, **counts,
        "pending": sum(statuses.get(s.value, 0) for s in RunStatus if not s.finished),
        # A job recorded finished stays done once the history sweep deletes its runs.
        "status": "done" if done >= job.total or job.finished_ms is not None else "running",
    }


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
