"""The scheduler: APScheduler 3 fires Metronome times; each fire only creates keyed runs.

The scheduled events of live loops that fire at the same times (the same start, period and
repetitions: Metronome's granularity is one second, so ten thousand loops on `PT1M` have at most
sixty phases) share one APScheduler job with a `MetronomeTrigger`. The job's executor does no
work of its own: it hands the due times to the recorder thread, which creates the runs
`loop:event:scheduled_ms` of every event of the job in one transaction per batch (a key that
exists is skipped: a duplicate fire, a restart or a second scheduler never creates a second run)
and passes the new runs to the dispatcher. User code never runs here. APScheduler's own guards
against busy jobs (`max_instances`, misfire grace) would drop times, so the executor bypasses
them: every due time is recorded, and the dispatcher applies epsilon when the run would start.

At start (and when a loop changes) each event is planned from the later of its last scheduled
run and the time its schedule took effect (a schedule is never backfilled before it was
deployed). The times missed meanwhile are recorded here, before APScheduler takes over from the
next time at or after now, per the loop's `catchup` policy: `none` records them `expired` at
once; `epsilon` and `all` queue them, oldest first, and the dispatcher expires (epsilon) or runs
(all) them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.job import Job as ApsJob
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from tsq import metronome
from tsq.clock import Clock
from tsq.dispatcher import Dispatcher
from tsq.draining import drain
from tsq.isotime import format_ms
from tsq.loopstore import LoopStore, StoredLoop
from tsq.outcomes import FailureKind, RunError, RunStatus
from tsq.run import Run
from tsq.runstore import NewRun, RunStore, run_key
from tsq.schedulestore import ScheduleStore

__all__ = ["MetronomeTrigger", "Scheduler", "missed_times"]

log = logging.getLogger(__name__)

RECORD_BATCH = 1000  # due times the recorder takes from its queue at once
# Runs created per transaction: a thousand loops due at one second are created a chunk at a
# time, each offered to the dispatcher once committed, so the first start within milliseconds
# rather than after the whole thousand (40 ms) is written.
RECORD_CHUNK = 100
RECORD_RETRY_S = 0.5  # how often due times are tried again while the store is down
MISSED_BATCH = 5000  # expired times recorded per transaction after an outage
ONE_MICROSECOND = timedelta(microseconds=1)


class MetronomeTrigger(BaseTrigger):  # type: ignore[misc]
    """APScheduler trigger yielding a Metronome schedule's times."""

    def __init__(self, schedule: metronome.Schedule) -> None:
        self.schedule = schedule

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        if previous_fire_time is None:
            return self.schedule.next_at_or_after(now)
        return self.schedule.next_at_or_after(previous_fire_time + ONE_MICROSECOND)

    def __str__(self) -> str:
        return f"metronome[{self.schedule.text}]"


@dataclass(frozen=True)
class _Event:
    """One scheduled event of a live loop, as its job fires it."""

    project: str
    loop: str
    event: str
    version_id: str
    schedule: metronome.Schedule
    params: dict[str, Any]
    offset_ms: int = 0  # a rollup's `offset:`: its run waits this long after its window ends

    @property
    def job_id(self) -> str:
        return job_id(self.project, self.loop, self.event)

    def run(self, t: datetime, status: RunStatus = RunStatus.QUEUED,
            error: RunError | None = None) -> NewRun:
        ms = _ms(t)
        start, end = self.schedule.window(t)
        return NewRun(project=self.project, loop=self.loop, event=self.event,
                      version_id=self.version_id, trigger="schedule", params=self.params,
                      key=run_key(self.loop, self.event, ms), scheduled_ms=ms,
                      window=(_ms(start), _ms(end)),
                      # epsilon counts from the time the offset lets the run start
                      epsilon_ms=int(self.schedule.epsilon.total_seconds() * 1000)
                      + self.offset_ms,
                      not_before_ms=_ms(end) + self.offset_ms if self.offset_ms else None,
                      status=status, error=error)


def job_id(project: str, loop: str, event: str) -> str:
    return f"{project}/{loop}/{event}"


def _times_id(schedule: metronome.Schedule) -> str:
    """The APScheduler job of every event whose schedule gives these times (epsilon aside)."""
    period = schedule.period
    return (f"times:{schedule.start.isoformat()}/{period.months}M{period.days}D"
            f"{period.seconds}S{'T' if period.time_mode else ''}/R{schedule.repeat}")


def missed_times(schedule: metronome.Schedule, since: datetime, last: datetime | None,
                 now: datetime) -> Iterator[datetime]:
    """The scheduled times an outage skipped: after `last` (and from `since`), before `now`."""
    lower = since if last is None else max(since, last + ONE_MICROSECOND)
    return schedule.fire_times(lower, now)


def _caught_up(event: _Event, catchup: str, missed: Iterator[datetime],
               now: datetime) -> Iterator[NewRun]:
    """The runs of missed times: queued when the policy runs them, else `expired` at once.

    `all` queues every time; `epsilon` queues those still within epsilon (the dispatcher
    checks again when each starts); `none` queues nothing.
    """
    if catchup == "all":
        yield from (event.run(t) for t in missed)
        return
    error = FailureKind.EXPIRED.error(f"missed while tsq was not running (catchup: {catchup})")
    for t in missed:
        if catchup == "epsilon" and now - t <= event.schedule.epsilon:
            yield event.run(t)
        else:
            yield event.run(t, RunStatus.EXPIRED, error)


class _HandOff(BaseExecutor):  # type: ignore[misc]
    """An APScheduler executor that passes every due time on and never refuses one."""

    def __init__(self, hand_off: Any) -> None:
        super().__init__()
        self._hand_off = hand_off

    def submit_job(self, job: ApsJob, run_times: list[datetime]) -> None:
        self._hand_off(job.id, run_times)

    def _do_submit_job(self, job: ApsJob, run_times: list[datetime]) -> None:
        self._hand_off(job.id, run_times)


def _never_called() -> None:
    """The APScheduler job function; `_HandOff` runs instead of it."""


class Scheduler:
    def __init__(self, runs: RunStore, loops: LoopStore, schedules: ScheduleStore,
                 dispatcher: Dispatcher, clock: Clock = time.time) -> None:
        self.runs = runs
        self.loops = loops
        self.schedules = schedules
        self.dispatcher = dispatcher
        self.clock = clock
        self.fired = 0
        self.missed = 0
        self._events: dict[str, _Event] = {}  # by event key (`job_id`)
        # An APScheduler job per set of times: its id → the events it fires. APScheduler's own
        # cost is per job, so a thousand events due in the same second cost one job, not 1,000.
        self._fired_with: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, list[datetime]] | None] = queue.Queue()
        self._aps = BackgroundScheduler(
            timezone=UTC, executors={"default": _HandOff(self._due)},
            job_defaults={"coalesce": False, "misfire_grace_time": None, "max_instances": 1})
        self._recorder = threading.Thread(target=self._record_loop, daemon=True,
                                          name="tsq-recorder")
        self._closing = threading.Event()

    def start(self) -> None:
        """Catch up on what was missed, then fire on time."""
        self._recorder.start()
        self.plan_all()
        self._aps.start()

    def plan_all(self) -> None:
        """Record the times missed since each event last fired and queue its next fire."""
        self._plan(self.loops.live())

    def close(self) -> None:
        self._closing.set()
        if self._aps.running:
            self._aps.shutdown(wait=False)
        self._queue.put(None)
        if self._recorder.is_alive():
            self._recorder.join(timeout=10)

    def sync(self, project: str, name: str) -> None:
        """Make the jobs of loop `name` match what is live now (after deploy/rollback/delete)."""
        try:
            loop: StoredLoop | None = self.loops.get(project, name)
        except Exception:
            loop = None
        prefix = job_id(project, name, "")
        with self._lock:
            stale = [key for key in self._events if key.startswith(prefix)]
        for key in stale:
            self._unschedule(key)
        if loop is not None:
            self._plan([loop])

    def scheduled_loops(self) -> set[tuple[str, str]]:
        """(project, loop) of every loop with an event scheduled here."""
        with self._lock:
            return {(event.project, event.loop) for event in self._events.values()}

    def next_times(self, project: str, name: str) -> dict[str, datetime | None]:
        """The next fire time of each scheduled event of a loop, as APScheduler holds it."""
        with self._lock:
            keys = [k for k in self._events if k.startswith(job_id(project, name, ""))]
        times = {}
        for key in keys:
            event = self._events[key]
            job = self._aps.get_job(_times_id(event.schedule))
            times[event.event] = getattr(job, "next_run_time", None)
        return times

    # -- planning --------------------------------------------------------------------------

    def _plan(self, loops: list[StoredLoop]) -> None:
        """Catch up on the events of `loops` (in a few large transactions), then queue each
        event's next time."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        self.dispatcher.remember(loop.latest for loop in loops)
        rates = [(loop.project, loop.name, e.name, e.rate) for loop in loops
                 for e in loop.latest.spec.events if e.rate]
        since = self.schedules.since_all(rates)
        last = self.runs.last_scheduled([(project, loop, event)
                                         for project, loop, event, _ in rates])
        missed: list[NewRun] = []
        for loop in loops:
            spec = loop.latest.spec
            for spec_event in spec.events:
                if spec_event.rate is None:
                    continue
                event = _Event(loop.project, loop.name, spec_event.name, loop.latest.id,
                               metronome.parse(spec_event.rate), dict(spec_event.params),
                               offset_ms=int((spec.rollup or {}).get("offset_ms", 0)))
                with self._lock:
                    self._events[event.job_id] = event
                    times_id = _times_id(event.schedule)
                    sharing = self._fired_with.setdefault(times_id, set())
                    new_job = not sharing
                    sharing.add(event.job_id)
                where = (loop.project, loop.name, spec_event.name)
                previous = last.get(where)
                times = missed_times(event.schedule, _dt(since[where]),
                                     None if previous is None else _dt(previous), now)
                missed.extend(_caught_up(event, spec.catchup, times, now))
                first = event.schedule.next_at_or_after(now)
                if first is not None and new_job:  # None: an R<n> schedule that has run out
                    self._aps.add_job(_never_called, trigger=MetronomeTrigger(event.schedule),
                                      id=times_id, next_run_time=first,
                                      replace_existing=True)
        for start in range(0, len(missed), MISSED_BATCH):
            created = self.runs.create_new(missed[start:start + MISSED_BATCH])
            self.missed += len(created)
            for record in created:
                if record.status == RunStatus.QUEUED.value:
                    self.dispatcher.offer(record)
            _log_missed(created)

    def _unschedule(self, key: str) -> None:
        with self._lock:
            event = self._events.pop(key, None)
            if event is None:
                return
            times_id = _times_id(event.schedule)
            sharing = self._fired_with.get(times_id, set())
            sharing.discard(key)
            last = not sharing
            if last:
                self._fired_with.pop(times_id, None)
        if last and self._aps.get_job(times_id) is not None:
            self._aps.remove_job(times_id)

    # -- firing ----------------------------------------------------------------------------

    def _due(self, key: str, run_times: list[datetime]) -> None:
        """Called on APScheduler's thread: hand the times over and return at once."""
        self._queue.put((key, run_times))

    def _record_loop(self) -> None:
        while (batch := drain(self._queue, RECORD_BATCH)) is not None:
            self._record_until_done(batch)

    def _record_until_done(self, batch: list[tuple[str, list[datetime]]]) -> None:
        """Record `batch`, trying again while the store is down (its keys make a second try
        safe): a due time is never dropped for an outage of the database."""
        said = False
        while True:
            try:
                self.record_due(batch)
                if said:
                    log.info("recorded the %d due times that waited for the store", len(batch))
                return
            except Exception:  # the store is down: say so once, and keep the scheduler alive
                if not said:
                    log.exception("could not record %d scheduled fires; trying again",
                                  len(batch))
                said = True
            if self._closing.wait(RECORD_RETRY_S):
                return

    def record_due(self, batch: list[tuple[str, list[datetime]]]) -> None:
        """Create the runs of due times `(key, times)` that do not exist, and dispatch them. A
        key is a job's (every event that fires at those times) or one event's (`job_id`)."""
        runs: list[NewRun] = []
        with self._lock:
            for key, times in batch:
                keys = self._fired_with.get(key) or ((key,) if key in self._events else ())
                for each in keys:  # none: deleted meanwhile
                    runs.extend(self._events[each].run(t) for t in times)
        self.fired += len(runs)
        for start in range(0, len(runs), RECORD_CHUNK):
            created = self.runs.create_new(runs[start:start + RECORD_CHUNK])
            # A line per fire at debug only: thousands of loops fire thousands of times a
            # minute, and the metrics count them at every level.
            said = log.isEnabledFor(logging.DEBUG)
            for record in created:
                if said:
                    log.debug("fired %s/%s event %s for %s", record.project, record.loop,
                             record.event, format_ms(record.when_ms),
                             extra={**record.identity(), "scheduled_ms": record.scheduled_ms})
                self.dispatcher.offer(record)


def _log_missed(created: list[Run]) -> None:
    """One line for the times an outage skipped (there may be thousands), by what became of
    them: queued to run now, or recorded expired."""
    if not created:
        return
    expired = sum(1 for record in created if record.status == RunStatus.EXPIRED)
    log.info("caught up on %d scheduled times missed while stopped: %d queued, %d expired",
             len(created), len(created) - expired, expired,
             extra={"missed": len(created), "queued": len(created) - expired,
                    "expired": expired})


def _ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
