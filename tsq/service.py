"""The application core that the HTTP API and the local CLI both call.

Every method returns plain JSON-ready data, so the API serialises it as is and the CLI prints the
same thing whether it talks to a server or works on the data directory itself.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import groupby, islice
from typing import TYPE_CHECKING, Any, cast

import orjson

from tsq import datafiles, heap, metronome, outbound
from tsq.admission import Admission, Quotas, Rates
from tsq.artifacts import ArtifactStore
from tsq.backfill import Backfills
from tsq.backfillstore import BackfillStore
from tsq.clock import Clock
from tsq.collector import collector_paused
from tsq.config import Settings
from tsq.connections import DEFAULT_CONNECTOR, Connections
from tsq.connectors.base import Connector, PreparingConnector, preparing
from tsq.db import connect
from tsq.dispatcher import IN_FLIGHT_PER_WORKER, Dispatcher
from tsq.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PartialWrite,
    WarpScriptError,
)
from tsq.executors import JobRunner
from tsq.explain import explaining
from tsq.history import HistorySweeper
from tsq.hostcalls import Host
from tsq.isotime import parse_time, time_field
from tsq.late import LateLog, Watch
from tsq.ledger import LedgerRange, ledger
from tsq.lineparsers import LineParsers
from tsq.lineprotocol import ParsedBatch
from tsq.linewrites import LineWrite, LineWrites, Outcome
from tsq.loopfile import FileReader, load_loop_file
from tsq.loopstore import LoopStore, StoredLoop, StoredVersion
from tsq.masking import mask_url
from tsq.metrics import Metrics, state
from tsq.model import EventSpec
from tsq.notify import Notifier
from tsq.osthreads import batch_threads
from tsq.outcomes import RunResult, RunStatus
from tsq.pipeline import Pipelines
from tsq.querybudget import QueryBudget, budgeted
from tsq.reroll import Rerolls
from tsq.retention import apply_retention
from tsq.run import Run
from tsq.runlog import LogLine
from tsq.runstore import NewRun, RunFilter, RunStore
from tsq.runtimes import get_runtime, runtime_names
from tsq.scheduler import Scheduler
from tsq.schedulestore import ScheduleStore
from tsq.sealing import Sealer
from tsq.selector import parse_selector
from tsq.series import SeriesSet
from tsq.shorthands import retention_from_json
from tsq.tokens import TokenStore
from tsq.trims import TrimStore, trimmed_window
from tsq.worker_pool import WorkerPool
from tsq.worker_process import WorkerOptions

if TYPE_CHECKING:
    from tsq.cluster.node import ClusterNode

__all__ = ["Service", "SubmittedRun", "parse_time", "run_window", "time_field"]

log = logging.getLogger(__name__)

NEXT_FIRE_TIMES = 3
GIL_SWITCH_S = 0.0005
HELD_PER_IN_FLIGHT = 4  # in a cluster (see _start_in_cluster)
QUERY_THREADS = 4  # ad-hoc queries evaluated at once; more wait for a thread (within deadline)


@dataclass(frozen=True)
class SubmittedRun:
    record: Run
    done: Future[Run]  # the final run record


SHARED = "(shared)"  # how rates name the points written for every project

class Service:
    def __init__(self, settings: Settings, clock: Clock = time.time,
                 workers: JobRunner | None = None) -> None:
        """The composition root: every collaborator is made here and handed to the ones that
        use it. `workers` replaces the worker pool (tests pass a scripted one)."""
        self.settings = settings
        self._clock = clock
        engine = connect(settings.database_url)
        # one policy for every URL this process calls: targets, webhooks, connectors
        outbound.configure(outbound.OutboundPolicy.of(settings.host, settings.outbound_allow))
        self.loops = LoopStore(engine, clock,
                               version_key=datafiles.version_key(settings.data_dir),
                               sealer=Sealer.of(settings.data_dir))
        self.runs = RunStore(engine, clock)
        self.tokens = TokenStore(engine, clock)  # who may call the API (tsq.tokens)
        # the data directory's admin token, which the CLI on this machine sends by itself
        self.admin_token = (self.tokens.local_admin(settings.data_dir)
                            if settings.auth == "tokens" else None)
        self.cluster = _join(settings, self.runs)  # None: this process is all of tsq
        self.schedules = ScheduleStore(engine, clock)
        self.notifier = Notifier()
        self._pool: JobRunner | None = workers
        self._serving = False  # start() makes it a server, whose workers start at once
        self.late = LateLog()  # writes into windows rollups covered (tsq.late)
        self.line_parsers = LineParsers()
        self.line_writes = LineWrites(  # a server's (tsq.linewrites)
            self.store_lines_together, self.parse_lines_together)
        self.scheduler: Scheduler | None = None
        self.metrics = Metrics(lambda: state(self._pool, self.scheduler, self.notifier,
                                             self.connections.opened()))
        self.connections = Connections(
            settings.data_dir, on_write=self.metrics.counting_writes(self.late.written),
            default=_store_of(settings))
        self.trims = TrimStore(engine, clock)  # what retention deleted (tsq.trims)
        self.dispatcher = Dispatcher(
            self.runs, self.loops, lambda: self.pool, self.notifier, clock,
            workers=settings.workers, steps={"retention": self._retention}, hosts=self._host,
            guards={"rollup": self._rollup_guard},
            work_queue=self.cluster.queue if self.cluster else None)
        self.artifacts = ArtifactStore(engine, clock)
        self.pipelines = Pipelines(self.runs, self.loops, self.dispatcher, self.artifacts,
                                   settings.pipeline_limits)
        self.backfills = Backfills(self.runs, self.dispatcher, BackfillStore(engine), self.loops)
        self.rerolls = Rerolls(self.late, self.runs, self.dispatcher, clock)
        # Bounded run history; runs a backfill still counts are held
        self.history = HistorySweeper(engine, self.loops, clock,
                                      held=self.backfills.in_progress)
        self.dispatcher.on_finished(self._covered)
        self.dispatcher.on_finished(self.metrics.run_finished)
        self._roles = threading.RLock()  # a lease won or lost, against loops changing
        limits = settings.work_limits
        # A run by hand is running once the dispatcher handed it to a worker, which holds a
        # few at once; beyond those it waits, and max_queued_runs of them may.
        self.run_admission = Admission(
            waiting=limits.max_queued_runs, running=settings.workers * IN_FLIGHT_PER_WORKER,
            what="runs by hand waiting", setting="max_queued_runs",
            pace_s=1.0 / settings.workers)
        # and one project's runs by hand may not take all of that room (0: they may)
        self.project_runs = Quotas(limits.max_project_runs,
                                   what="runs by hand of project {key!r} in progress",
                                   setting="max_project_runs")
        # and at a rate: runs by hand a minute, points a second (0: unbounded); points written
        # for every project count as the shared ones'
        self.project_run_rate = Rates(limits.project_runs_per_minute / 60, burst_s=60,
                                      what="runs by hand of project {key!r} a minute",
                                      setting="project_runs_per_minute")
        self.project_point_rate = Rates(limits.project_points_per_s, burst_s=10,
                                        what="points written for project {key!r} a second",
                                        setting="project_points_per_s")
        # query time is known when a query ends: counted then, and checked before the next
        self.project_query_time = Rates(limits.project_query_s_per_minute / 60, burst_s=60,
                                        what="query time of project {key!r} a minute",
                                        setting="project_query_s_per_minute")
        self.write_admission = Admission(  # writes proceed side by side, in milliseconds
            waiting=limits.max_concurrent_writes, running=0, what="writes",
            setting="max_concurrent_writes", pace_s=0.01)
        self.query_admission = Admission(
            waiting=limits.max_queued_queries, running=QUERY_THREADS, what="queries waiting",
            setting="max_queued_queries", pace_s=0.1)
        # Queries have threads of their own, off the API's event loop and its thread pool, so
        # a slow one holds neither the health checks nor the other endpoints.
        self.queries = ThreadPoolExecutor(QUERY_THREADS, thread_name_prefix="tsq-query")
        self._watch_late()
        self.clock = clock

    def _host(self, record: Run, version: StoredVersion, within_s: float) -> Host:
        """A run's host answers on its loop's connector and through the pipelines, which run
        steps through the dispatcher: going through here closes that circle once both exist."""
        return self.metrics.counting(record, self.pipelines.host_for(
            record, within_s, self.connections.for_loop(version.spec),
            self.connections.named_for(version.spec)))

    @property
    def pool(self) -> JobRunner:
        if self._pool is None:
            self._pool = WorkerPool(self.settings.workers, WorkerOptions(
                memory_mb=self.settings.worker_memory_mb,
                max_result_bytes=self.settings.max_result_bytes,
            ), start_now=self._serving)
        return self._pool

    @property
    def store(self) -> Connector:
        """The default connector, the embedded store (opened on first use: DuckDB holds the
        file): `/write` and `/v1/query` use it, and loops that name no other."""
        return self.connections.default

    def start(self) -> int:
        """Become the running service: take over unfinished runs, start the workers and the
        scheduler. Returns how many unfinished runs were taken over.

        Starting builds an object or more per loop (its version, spec, schedule, jobs), and
        the cycle collector walked every one of them again and again meanwhile: a second of
        its time for 10,000 loops, while the first runs waited. It waits until the start is
        done (`tsq serve` then freezes what was built, tsq.server)."""
        with collector_paused():
            return self._start()

    def _start(self) -> int:
        # Threads hand runs to each other here (scheduler, dispatcher, worker slots); a thread
        # woken by a worker's answer waits for the GIL up to this long, 5 ms by default.
        sys.setswitchinterval(GIL_SWITCH_S)
        batch_threads()  # and a thread woken by a hand-off never preempts the one holding the GIL
        heap.keep_large_blocks()  # queries' arrays reuse the heap instead of faulting pages in
        self._serving = True  # the workers start now, not with the first run
        for name in runtime_names():  # a server compiles deploys at once; a CLI call never
            get_runtime(name).warm()  # needs more than one runtime, so it warms none
        self.line_parsers.start()
        if self.cluster is not None:
            return self._start_in_cluster(self.cluster)
        _ = self.pool
        unfinished = self.runs.unfinished()
        self.dispatcher.remember(self.loops.versions_of(run.version_id for run in unfinished))
        backfilled = self.backfills.resume(unfinished)
        recovered = len(backfilled) + self.pipelines.recover(
            [run for run in unfinished if run.id not in backfilled])
        self.scheduler = Scheduler(self.runs, self.loops, self.schedules, self.dispatcher,
                                   self.clock)
        self.scheduler.start()
        self.rerolls.start()
        self.history.start()
        log.info("started %d workers and the scheduler; took over %d unfinished runs",
                 self.settings.workers, recovered,
                 extra={"workers": self.settings.workers, "took_over": recovered})
        return recovered

    def _start_in_cluster(self, cluster: ClusterNode) -> int:
        """Start what this process's roles do; nothing is taken over here: a run whose process
        died comes back through the work queue (tsq.cluster.workqueue)."""
        if cluster.has("worker"):
            _ = self.pool
        if cluster.has("api") and not cluster.settings.store_url:
            # Late points reach this process's store, and the windows that rollups covered,
            # wherever they ran, reach its invalidation log.
            self.dispatcher.on_finished_elsewhere(self._covered, _covers_a_window)
            self.rerolls.start()
        # A worker process holds a few times what its workers have in flight: pulls, claims
        # and settles then go in batches, and its workers never wait on a round trip to NATS.
        cluster.start(self, self.settings.workers * IN_FLIGHT_PER_WORKER * HELD_PER_IN_FLIGHT)
        return 0

    # -- a cluster process (tsq.cluster.node.Member) ------------------------------------------

    def lead(self) -> None:
        """This process leads the schedulers: catch up and fire, sweep the history (and, in
        tsq.cluster.workqueue, publish long-queued runs again)."""
        with self._roles:
            if self.scheduler is not None:
                return
            self.scheduler = Scheduler(self.runs, self.loops, self.schedules, self.dispatcher,
                                       self.clock)
            self.scheduler.start()
            self.history.start()

    def follow(self) -> None:
        with self._roles:
            scheduler, self.scheduler = self.scheduler, None
            if scheduler is not None:
                scheduler.close()
                self.history.close()

    def loop_changed_elsewhere(self, project: str, name: str) -> None:
        """Another process deployed, rolled back or deleted a loop: follow it here."""
        log.info("following loop %s/%s, changed by another process", project, name,
                 extra={"project": project, "loop": name})
        self.loops.forget()
        self._follow_loops([(project, name)])

    def reload_loops(self) -> None:
        """Follow every loop again (after NATS came back: changes may have gone unheard)."""
        self.loops.forget()
        known = {(loop.project, loop.name) for loop in self.loops.live()}
        if self.scheduler is not None:
            known |= self.scheduler.scheduled_loops()
        self._follow_loops(sorted(known))

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()  # first: a leader gives up its lease, a worker stops pulling
        self.history.close()
        self.rerolls.close()
        if self.scheduler is not None:
            self.scheduler.close()
        self.dispatcher.close()
        self.queries.shutdown(wait=False, cancel_futures=True)
        self.line_writes.close()  # what waits is stored, before the store closes
        self.notifier.close()
        if self._pool is not None:
            self._pool.close()
        self.connections.close()
        self.runs.close()

    # -- loops -----------------------------------------------------------------------------

    def deploy(self, text: str, file_name: str, read: FileReader,
               project: str | None = None) -> dict[str, Any]:
        """Validate a whole loop file, then store a version of each loop; all or nothing.
        `project`: the one project the caller may deploy into (None: any)."""
        items = load_loop_file(text, file_name, read, _compile,
                               deployed_after=self.loops.after_graph,
                               check_url=outbound.current().refusal)
        elsewhere = {item.spec.project for item in items} - {project} if project else set()
        if elsewhere:
            raise Forbidden(f"{file_name}: the loops are for project {elsewhere.pop()!r}, and "
                            f"this token deploys only into {project!r}; put `project: "
                            f"{project}` at the top of the file")
        # one transaction for the whole file, schedules included: a crash part-way deploys none
        outcomes = self.loops.deploy_all(items, also=self.schedules.deployed)
        self._announce([(o.loop.project, o.loop.name, o.loop.latest) for o in outcomes])
        return {"loops": [{**o.loop.to_json(), "created": o.created} for o in outcomes]}

    def list_loops(self, project: str | None = None) -> dict[str, Any]:
        return {"loops": [loop.to_json() for loop in self.loops.live(project)]}

    def get_loop(self, name: str, project: str | None = None) -> dict[str, Any]:
        loop = self._loop(name, project)
        data = loop.to_json()
        data["versions"] = [v.to_json() for v in self.loops.versions(loop.project, name)]
        held = self.scheduler.next_times(loop.project, name) if self.scheduler else {}
        now = datetime.fromtimestamp(self.clock(), UTC)
        data["events"] = [_event_json(event, held.get(event.name) or now)
                          for event in loop.latest.spec.events]
        return data

    def ledger(self, name: str, span: LedgerRange, project: str | None = None
               ) -> dict[str, Any]:
        """Every scheduled time of the loop in `span`, with its run (tsq.ledger)."""
        return ledger(self._loop(name, project), self.runs, self.schedules, span,
                      datetime.fromtimestamp(self.clock(), UTC))

    def rollback(self, name: str, project: str | None = None,
                 to: str | None = None) -> dict[str, Any]:
        loop = self._loop(name, project)
        result = self.loops.rollback(loop.project, name, to)
        self._loops_changed([(loop.project, name)])
        return result.to_json()

    def delete_loop(self, name: str, project: str | None = None) -> dict[str, Any]:
        loop = self._loop(name, project)
        self.loops.delete(loop.project, name)
        self._loops_changed([(loop.project, name)])
        self.metrics.forget(loop.project, name)
        return {"deleted": name, "project": loop.project}

    def _loops_changed(self, changed: list[tuple[str, str]]) -> None:
        """A rollback or delete: the loops' schedules recorded, then followed (`_announce`);
        what reads every loop runs once per change, not once per loop."""
        live: list[tuple[str, str, StoredVersion | None]] = []
        for project, name in changed:
            try:
                latest: StoredVersion | None = self.loops.get(project, name).latest
            except NotFound:
                latest = None
            self.schedules.sync(project, name, latest.spec if latest else None)
            live.append((project, name, latest))
        self._announce(live)

    def _announce(self, live: list[tuple[str, str, StoredVersion | None]]) -> None:
        """Loops now at these versions (None: deleted), their schedules recorded: the other
        processes of a cluster hear first and follow while this one does (a deploy was live
        on the workers only once this process had read every loop again)."""
        try:
            if self.cluster is not None:
                self.cluster.loops_changed([(project, name, latest.to_json() if latest else None)
                                            for project, name, latest in live])
        finally:  # NATS out of reach or not: the change is stored, and this process follows it
            self._follow_loops([(project, name) for project, name, _ in live])

    def _follow_loops(self, changed: list[tuple[str, str]]) -> None:
        """What this process does when loops change, wherever they were changed."""
        self.dispatcher.loops_changed()
        self._watch_late()
        with self._roles:
            if self.scheduler is not None:
                for project, name in changed:
                    self.scheduler.sync(project, name)

    def _watch_late(self) -> None:
        """Watch the sources of the rollups that re-run windows with late points."""
        watches = [Watch(loop.project, loop.name, parse_selector(str(rollup["from"])),
                         self.connections.key_for(loop.latest.spec),
                         int(rollup["late_within_ms"]))
                   for loop in self.loops.live()
                   if (rollup := loop.latest.spec.rollup) and "late_within_ms" in rollup]
        self.late.watch(watches, self.runs.covered_until([(w.project, w.loop) for w in watches]))

    def _covered(self, run: Run) -> None:
        """A scheduled run's success covers its window, for the invalidation log."""
        if run.status is RunStatus.SUCCESS and run.key and run.window_end_ms is not None:
            self.late.covered(run.project, run.loop, run.window_end_ms)

    def _loop(self, name: str, project: str | None) -> StoredLoop:
        if project is not None:
            return self.loops.get(project, name)
        found = self.loops.find(name)
        if not found:
            raise NotFound(f"no loop named {name!r}; `tsq loops` lists the deployed ones")
        if len(found) > 1:
            projects = [loop.project for loop in found]
            raise Conflict(f"loop {name!r} exists in projects {', '.join(projects)}; "
                           f"say which with project=…", details={"projects": projects})
        return found[0]

    # -- runs ------------------------------------------------------------------------------

    def submit(self, name: str, params: dict[str, Any] | None = None, *,
               project: str | None = None, event: str | None = None,
               trigger: str = "manual", at: datetime | None = None,
               window: tuple[datetime, datetime] | None = None,
               inline: bool = False) -> SubmittedRun:
        """Queue a run of the loop's latest version; `done` resolves to the final record.

        The run covers `window`, or the window of scheduled time `at`, or, given neither, the
        latest complete period of the loop's schedule (none without a schedule). It never gets
        the key of a scheduled time, so the scheduler and backfill still run that time.
        With `inline`, an idle worker runs it from the calling thread, which waits meanwhile
        (`done` is then resolved on return).
        """
        loop = self._loop(name, project)
        _check_storable(params or {}, "params")  # before anything is taken or written
        merged = {**self._event_params(loop, event), **(params or {})}
        scheduled, covered = self._manual_window(loop, event, at, window)
        self.project_run_rate.take(loop.project)  # TooManyRequests past project_runs_per_minute
        ticket = self.project_runs.enter(loop.project)  # TooManyRequests past max_project_runs
        try:
            record, done = self.dispatcher.start(NewRun(
                project=loop.project, loop=name, event=event or trigger,
                version_id=loop.latest.id, trigger=trigger, params=merged,
                scheduled_ms=scheduled, window=covered), inline=inline)
        except BaseException:
            if ticket is not None:
                ticket.release()
            raise
        if ticket is not None:
            done.add_done_callback(lambda _done: ticket.release())
        return SubmittedRun(record, done)

    def run(self, name: str, params: dict[str, Any] | None = None, **options: Any) -> Run:
        """Run and wait; the run as it ended."""
        return self.submit(name, params, inline=True, **options).done.result()

    def _retention(self, record: Run, version: StoredVersion
                   ) -> tuple[RunResult, list[LogLine]]:
        assert version.spec.retention is not None
        spec = retention_from_json(version.spec.retention)
        connector = self.connections.key_for(version.spec)
        return apply_retention(spec, record, self.runs, self.connections.for_loop(version.spec),
                               lambda deleted: self.trims.record(
                                   record.project, connector, spec.select, deleted,
                                   record.loop, record.id))

    def _rollup_guard(self, record: Run, version: StoredVersion
                      ) -> tuple[RunResult, list[LogLine]] | None:
        """A rollup run whose window's source retention trimmed ends skipped (tsq.trims)."""
        rollup = version.spec.rollup
        if rollup is None:
            return None
        return trimmed_window(self.trims, record, str(rollup["from"]),
                              self.connections.key_for(version.spec))

    def resume(self, run_id: str) -> dict[str, Any]:
        """Run the failed steps of `run_id`'s pipeline again, and what follows them."""
        return self.pipelines.resume(self.runs.resolve(run_id))

    def cancel(self, run_id: str) -> dict[str, Any]:
        """Cancel a queued or running run; its record, `cancelled` (Conflict once it ended)."""
        return self.dispatcher.cancel(self.runs.resolve(run_id)).to_json()

    def backfill(self, name: str, start: datetime, end: datetime, *,
                 project: str | None = None, event: str | None = None) -> dict[str, Any]:
        return self.backfills.start(self._loop(name, project), start, end, event)

    def backfill_status(self, job_id: str) -> dict[str, Any]:
        return self.backfills.get(job_id)

    def _manual_window(self, loop: StoredLoop, event: str | None, at: datetime | None,
                       window: tuple[datetime, datetime] | None
                       ) -> tuple[int | None, tuple[int, int] | None]:
        """(scheduled time, window) in epoch ms of a manual run, as the scheduler would give
        them for scheduled time `at`; `window` as given; else the latest complete period."""
        if at is not None and window is not None:
            raise BadRequest("give a run a scheduled time (--at, `at`) or a window (--window, "
                             "`window`), not both")
        if window is not None:
            start, end = window
            if start >= end:
                raise BadRequest(f"window [{start.isoformat()}, {end.isoformat()}) is empty; "
                                 f"its start must be before its end")
            return None, (_ms(start), _ms(end))
        schedule = _schedule_of(loop, event, needed=at is not None)
        if schedule is None:
            return None, None  # documented: a loop without a schedule runs with window null
        if at is None:
            at = schedule.latest_at_or_before(datetime.fromtimestamp(self._clock(), UTC))
            if at is None:
                return None, None  # the schedule has not begun: there is no complete period
        elif schedule.latest_at_or_before(at) != at:
            raise BadRequest(_not_scheduled(at, schedule))
        start, end = schedule.window(at)
        return _ms(at), (_ms(start), _ms(end))

    def _event_params(self, loop: StoredLoop, event: str | None) -> dict[str, Any]:
        if event is None:
            return {}
        for candidate in loop.latest.spec.events:
            if candidate.name == event:
                return dict(candidate.params)
        known = ", ".join(e.name for e in loop.latest.spec.events) or "none"
        raise NotFound(f"loop {loop.name!r} has no event {event!r}; its events: {known}")

    # -- points ----------------------------------------------------------------------------

    def query_budget(self) -> QueryBudget:
        """A budget for one ad-hoc query, its deadline counted from now (query_timeout_s,
        max_query_points)."""
        limits = self.settings.work_limits
        return QueryBudget(float(limits.timeout_s), limits.max_points)

    def points(self, project: str | None = None) -> Connector:
        """The embedded store as `project` sees it (its own points and the shared ones), or
        whole (None: a caller for every project)."""
        return self.store if project is None else self.connections.project_view(project)

    def query_tsl(self, source: str, variables: Mapping[str, Any] | None = None, *,
                  explain: bool = False, budget: QueryBudget | None = None,
                  project: str | None = None) -> dict[str, Any]:
        """An ad-hoc TSL query on the default connector, evaluated here (TslError if it is bad):
        `{series}`, plus `{meta}` for names()/labels()/attributes()/selectors() statements, and
        with `explain`, `{plan}`: what the connector was asked for and what tsq computed.
        Under `budget` (default: a fresh one) past its deadline it stops between steps with
        QueryTimeout, and an answer over its points is QueryTooLarge before it is built."""
        from tsq import tsl

        with self.project_query_time.spending(project or SHARED), self.metrics.timed("tsl"), \
                explaining() as plan, budgeted(budget or self.query_budget()):
            answer = tsl.query(source, self.points(project), variables=variables,
                               now=datetime.fromtimestamp(self._clock(), UTC))
        if explain:
            answer["plan"] = plan
        return answer

    def query_ws(self, script: str, variables: Mapping[str, Any] | None = None, *,
                 budget: QueryBudget | None = None,
                 project: str | None = None) -> dict[str, Any]:
        """An ad-hoc WarpScript on the default connector, run here (WarpScriptError if it
        fails): `{series}` (the GTS it leaves, epoch ms) and `{stack}` (top first, as JSON).
        The script's time limit is what is left of `budget`'s; GTS with more points in all than
        it allows are QueryTooLarge."""
        from tsq import ws

        budget = budget or self.query_budget()
        with self.project_query_time.spending(project or SHARED), \
                self.metrics.timed("warpscript"), budgeted(budget):
            try:
                stack = ws.execute(script, connector=self.points(project), variables=variables,
                                   now_us=int(self._clock() * 1_000_000),
                                   timeout_s=budget.remaining_s)
            except WarpScriptError as error:
                # the VM's deadline is the query's, and it stops when the query is stopped
                if error.kind == "limit" and (budget.expired or budget.stopped.is_set()):
                    raise budget.timed_out() from None
                raise
            series = ws.stack_series(stack)
            budget.allow(series.points, "the GTS the script left")
        return {"series": series.to_json(), "stack": ws.stack_json(stack)}

    def write_lines(self, body: str, precision: str = "ns",
                    project: str | None = None) -> dict[str, Any]:
        """Store InfluxDB line protocol (as `project`'s points, or shared: None);
        PartialWrite (after storing the good lines) if some lines were bad."""
        batch = self._parsed_lines(body, precision, project)
        _store_batches(self.points(project), [batch])
        return _lines_written(batch)

    def stored_at_once(self, body: str, precision: str, project: str | None
                       ) -> Future[dict[str, Any]] | None:
        """A line write alone (the only one admitted) parsed on the caller's thread, a server's
        event loop, and stored there too if the store takes it at once (`_taken_at_once`),
        else by the write thread: its answer. None, and `line_writes.submit` takes it, when
        another write is admitted or in hand, the store is not open yet (the loop never opens
        it) or does not prepare writes, or the body is large (tsq.linewrites)."""
        if self.write_admission.inside != 1 or self.connections.default_if_open() is None:
            return None
        store = preparing(self.points(project))
        if store is None:
            return None
        return self.line_writes.stored_here(body, precision, project,
                                            partial(_taken_at_once, store))

    def write_lines_together(self, writes: list[LineWrite]) -> list[Outcome]:
        """Each write's answer as `write_lines` gives it (its result, or the error it raises),
        the writes stored as one write a project (tsq.linewrites): their points as if written
        one after another. A project's writes in a row of one precision are parsed as one
        batch where the compiled scan takes them all (each series' name and labels made once,
        not once a write), else one by one. If the store refuses a project's write, each write
        is written alone, so that an error is its own write's (a point written twice is
        replaced, not doubled)."""
        return self.store_lines_together(self.parse_lines_together(writes))

    def parse_lines_together(self, writes: list[LineWrite]) -> ParsedWrites:
        """`write_lines_together`'s first half: the writes parsed and counted, by project."""
        parsed = ParsedWrites(writes, [None] * len(writes))
        for project, precision, ats in _runs(writes):
            parsed.projects.setdefault(project, []).extend(
                self._parsed_writes(writes, ats, precision, project, parsed.outcomes))
        for project, items in parsed.projects.items():
            try:  # the store's part of each write that needs no lock, on this thread too
                parsed.ready[project] = _prepared(self.points(project),
                                                  [item.batch for item in items])
            except Exception:  # the write thread stores them as they are, and says why not
                continue
        return parsed

    def store_lines_together(self, parsed: ParsedWrites) -> list[Outcome]:
        """`write_lines_together`'s second half: the parsed writes stored, and each one's
        answer."""
        outcomes = parsed.outcomes
        for project, items in parsed.projects.items():
            store = self.points(project)
            try:
                ready = parsed.ready.get(project)
                for write in ready if ready is not None else \
                        _prepared(store, [item.batch for item in items]):
                    write()
            except Exception:
                for item in items:
                    _stored_alone(store, self.line_parsers, parsed.writes, item, outcomes)
            for item in items:
                for at, answer in item.answers():
                    if outcomes[at] is None:
                        outcomes[at] = answer
        assert all(outcome is not None for outcome in outcomes)
        return cast(list[Outcome], outcomes)

    def _parsed_writes(self, writes: list[LineWrite], ats: list[int], precision: str,
                       project: str | None, outcomes: list[Outcome | None]) -> list[_Parsed]:
        """The writes at `ats` (of one project and precision) parsed and counted: as one batch
        where they can be, else each alone, a write that cannot be getting its error."""
        if len(ats) > 1:
            try:
                joined = self.line_parsers.parse_joined([writes[at].body for at in ats],
                                                        precision)
                if joined is not None:
                    self._counted(joined[0], project)
                    return [_Parsed(ats, *joined)]
            except Exception:  # parsed alone below, where each write gets its own error
                pass
        alone = []
        for at in ats:
            try:
                batch = self._parsed_lines(writes[at].body, precision, project)
            except Exception as exc:
                outcomes[at] = exc
            else:
                alone.append(_Parsed([at], batch, [batch.points]))
        return alone

    def _parsed_lines(self, body: str, precision: str, project: str | None) -> ParsedBatch:
        """The batch, counted against the project's point rate (TooManyRequests: nothing is
        stored) and in the metrics."""
        batch = self.line_parsers.parse(body, precision)
        self._counted(batch, project)
        return batch

    def _counted(self, batch: ParsedBatch, project: str | None) -> None:
        self.project_point_rate.take(project or SHARED, batch.points)
        self.metrics.ingest("line", batch.points)

    def list_runs(self, where: RunFilter) -> dict[str, Any]:
        """The runs `where` selects, newest first, each with `short_id`: the prefix of its id
        that every command taking a run id accepts."""
        found = self.runs.find(where)
        short = self.runs.short_ids([r.id for r in found])
        return {"runs": [{**r.to_json(), "short_id": short.get(r.id, r.id)} for r in found]}

    # Every method taking a run id accepts a unique prefix of one (`RunStore.resolve`).

    def get_run(self, run_id: str, project: str | None = None) -> dict[str, Any]:
        """The run `run_id` names (an id or a unique prefix); with `project`, only one of that
        project's (another project's is NotFound, as if it were not there)."""
        run = self.runs.get(self.runs.resolve(run_id)).to_json()
        if project is not None and run["project"] != project:
            raise NotFound(f"no run with id or id prefix {run_id!r}")
        return run

    def run_logs(self, run_id: str, after: int = 0) -> dict[str, Any]:
        """The run's log lines after the first `after`, its status (read before the lines, so a
        follower that sees a finished status has every line once it has these) and `next`,
        the `after` that asks for the lines still to come."""
        record = self.get_run(run_id)
        lines = self.runs.logs(record["id"], after)
        return {"run": record["id"], "status": record["status"], "logs": lines,
                "next": after + len(lines)}

    def kept(self) -> dict[str, Any]:
        """What the run history keeps, per loop and in all, how large, and under which policy
        (`history:`); and what the last sweep deleted."""
        return self.history.kept()

    def run_artifacts(self, run_id: str) -> dict[str, Any]:
        """The files `run_id` kept (NotFound for an unknown run, not an empty list)."""
        run_id = self.runs.resolve(run_id)
        return {"run": run_id, "artifacts": [a.to_json() for a in self.artifacts.list(run_id)]}

    def run_artifact(self, run_id: str, name: str) -> tuple[dict[str, Any], bytes]:
        """One file `run_id` kept: how the listing shows it, and its bytes."""
        artifact, data = self.artifacts.get(self.runs.resolve(run_id), name)
        return artifact.to_json(), data


def _join(settings: Settings, runs: RunStore) -> ClusterNode | None:
    """This process's place in its cluster (ConfigError if it could not work), or None."""
    if settings.cluster is None:
        return None
    from tsq.cluster.node import ClusterNode, check_cluster

    check_cluster(settings.cluster, settings.database_url)
    return ClusterNode(settings.cluster, runs)


def _store_of(settings: Settings) -> Mapping[str, Any]:
    """The default connector: the embedded store, or in a cluster process with `store_url`,
    the embedded store of the api process at that URL, through its Warp 10 endpoints."""
    if settings.cluster is not None and settings.cluster.store_url:
        return {"type": "warp10", "url": settings.cluster.store_url}
    return {**DEFAULT_CONNECTOR, "head_minutes": settings.store_head_minutes,
            "past_points": settings.store_past_points, "cache_mb": settings.store_cache_mb}


def _compile(runtime: str, source: str, file_name: str) -> None:
    get_runtime(runtime).prepare(source, file_name)


# The integers a run's record can hold (orjson's range): JSON itself has no bound, V8 none below
# 2^53 exactly, and a larger one stored would fail in the run store's write
JSON_INTEGERS = (-(2**63), 2**64 - 1)


def _check_storable(value: Any, where: str) -> None:
    """BadRequest naming the place of the first integer in `value` that a run's record cannot
    hold."""
    if isinstance(value, int) and not isinstance(value, bool):
        low, high = JSON_INTEGERS
        if not low <= value <= high:
            shown = str(value) if value.bit_length() <= 128 else \
                f"an integer of {value.bit_length()} bits"
            raise BadRequest(f"{where} = {shown} is out of range: an integer must be from "
                             f"-2^63 to 2^64 - 1; send a larger number as a float or a string")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_storable(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for at, item in enumerate(value):
            _check_storable(item, f"{where}[{at}]")


def _schedule_of(loop: StoredLoop, event: str | None, *, needed: bool
                 ) -> metronome.Schedule | None:
    """The schedule a manual run takes its window from: its event's, or without one the
    schedule every scheduled event of the loop shares. None when there is none (or, unless
    `needed`, no single one); BadRequest saying what to give when it is `needed`."""
    rates = sorted({e.rate for e in loop.latest.spec.events
                    if e.rate and (event is None or e.name == event)})
    if len(rates) == 1:
        return metronome.parse(rates[0])
    if not needed:
        return None
    if not rates:
        what = f"event {event!r} of loop {loop.name!r}" if event else f"loop {loop.name!r}"
        raise BadRequest(f"{what} has no schedule (`rate:`), so --at (`at`) names no scheduled "
                         f"time; give the window itself with --window START/END (`window`: "
                         f"{{\"start\": …, \"end\": …}})")
    names = ", ".join(e.name for e in loop.latest.spec.events if e.rate)
    raise BadRequest(f"loop {loop.name!r} has scheduled events with different schedules "
                     f"({names}); say which one with --event (`event`)")


def _not_scheduled(at: datetime, schedule: metronome.Schedule) -> str:
    """Why `at` is no scheduled time of `schedule`, with the scheduled times around it."""
    before, after = schedule.neighbours(at)
    nearest = " and ".join(t.isoformat() for t in (before, after) if t is not None)
    return (f"--at (`at`) {at.isoformat()} is not a scheduled time of {schedule.text}; "
            f"the nearest {'ones are' if before and after else 'one is'} {nearest}")


def _ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def _event_json(event: EventSpec, first: datetime) -> dict[str, Any]:
    """An event as `GET /v1/loops/{name}` shows it, with its next fire times (from `first`: the
    scheduler's next time, else now) and windows."""
    data: dict[str, Any] = {"name": event.name, "rate": event.rate, "after": event.after,
                            "params": event.params,
                            "target": event.target and mask_url(event.target)}
    if event.rate is not None:
        schedule = metronome.parse(event.rate)
        upcoming = islice(schedule.fire_times(first, datetime.max.replace(tzinfo=UTC)),
                          NEXT_FIRE_TIMES)
        data["next"] = [{"time": t.isoformat(), "window": [w.isoformat() for w in
                                                           schedule.window(t)]}
                        for t in upcoming]
    return data


def run_window(value: Any) -> tuple[datetime, datetime] | None:
    """The `window` of a run request, `{"start": …, "end": …}` (ISO-8601 times with offsets),
    or BadRequest naming what is wrong in it."""
    if value is None:
        return None
    shape = 'an object {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:05:00Z"}'
    if not isinstance(value, dict):
        raise BadRequest(f"window must be {shape}, not {orjson.dumps(value).decode()[:60]}")
    unknown = sorted(set(value) - {"start", "end"})
    missing = [key for key in ("start", "end") if key not in value]
    if unknown or missing:
        wrong = "; ".join([*(f"no window.{k}" for k in missing),
                           *(f"unknown key window.{k}" for k in unknown)])
        raise BadRequest(f"window must be {shape}: {wrong}")
    return time_field(value["start"], "window.start"), time_field(value["end"], "window.end")


def _covers_a_window(run: Mapping[str, Any]) -> bool:
    """`Service._covered`'s test, of a run's JSON as a cluster's notice carries it: of the
    runs that end elsewhere, only those the invalidation log may want are made `Run`s."""
    return run.get("status") == RunStatus.SUCCESS.value and bool(run.get("key")) \
        and run.get("window_end_ms") is not None


def _store_batches(store: Connector, batches: list[ParsedBatch]) -> None:
    """The batches' points in one write of the store each for numbers and for strings."""
    for write in _prepared(store, batches):
        write()


def _prepared(store: Connector, batches: list[ParsedBatch]) -> list[Callable[[], int]]:
    """The batches' points as one write each for numbers and for strings, ready to be made:
    the store's part that needs no lock done now where it does part of a write ahead
    (connectors.base.PreparingConnector)."""
    sets = [SeriesSet.merged([getattr(batch, part) for batch in batches])
            for part in ("numbers", "strings")]
    prepares = preparing(store)
    if prepares is None:
        return [partial(store.write, series) for series in sets]
    return [partial(prepares.write_prepared, prepares.prepare(series)) for series in sets]


def _taken_at_once(store: PreparingConnector, parsed: ParsedWrites) -> bool:
    """Whether the store would take the parsed writes without waiting for other work or doing
    more than their own (`writes_quickly`): numbers only, as strings go to the table, each
    write of them a DuckDB transaction (numbers of a new series commit it there too, once).
    Writes that could not be parsed only get their error."""
    batches = [item.batch for items in parsed.projects.values() for item in items]
    if not batches:
        return True
    return not any(batch.strings.points for batch in batches) and \
        store.writes_quickly(sum(batch.numbers.points for batch in batches))


@dataclass(frozen=True)
class ParsedWrites:
    """Line writes parsed, waiting to be stored: each project's batches, and the answers of
    the writes that could not be parsed."""

    writes: list[LineWrite]
    outcomes: list[Outcome | None]
    projects: dict[str | None, list[_Parsed]] = field(default_factory=dict)
    ready: dict[str | None, list[Callable[[], int]]] = field(default_factory=dict)  # _prepared


@dataclass(frozen=True)
class _Parsed:
    """The batch of the line writes at `ats` (one, or several parsed as one), and how many
    points each of them brought."""

    ats: list[int]
    batch: ParsedBatch
    points: list[int]

    def answers(self) -> list[tuple[int, Outcome]]:
        """Each write's answer once its points are stored (a batch of several has no bad
        lines: the compiled scan takes a batch whole or not at all)."""
        if len(self.ats) > 1:
            return [(at, {"written": n}) for at, n in zip(self.ats, self.points, strict=True)]
        try:
            return [(self.ats[0], _lines_written(self.batch))]
        except PartialWrite as exc:
            return [(self.ats[0], exc)]


def _runs(writes: list[LineWrite]) -> list[tuple[str | None, str, list[int]]]:
    """The writes' places by project, in the order they came, cut into runs of one precision
    (the writes of a run can be parsed as one, and a project's runs stay in order: of points
    at one time, the last written stays)."""
    by_project: dict[str | None, list[int]] = {}
    for at, write in enumerate(writes):
        by_project.setdefault(write.project, []).append(at)
    return [(project, precision, list(run)) for project, ats in by_project.items()
            for precision, run in groupby(ats, key=lambda at: writes[at].precision)]


def _stored_alone(store: Connector, parsers: LineParsers, writes: list[LineWrite],
                  item: _Parsed, outcomes: list[Outcome | None]) -> None:
    """Each write of `item` stored alone (parsed again where it was parsed with others): a
    write the store refuses gets its error."""
    for at in item.ats:
        try:
            _store_batches(store, [item.batch if len(item.ats) == 1 else
                                   parsers.parse(writes[at].body, writes[at].precision)])
        except Exception as exc:
            outcomes[at] = exc


def _lines_written(batch: ParsedBatch) -> dict[str, Any]:
    """A stored batch's answer; PartialWrite if some of its lines were bad."""
    if batch.errors:
        raise PartialWrite(batch.error_message(), details={
            "written": batch.points,
            "errors": [{"line": n, "message": why} for n, why in batch.errors]})
    return {"written": batch.points}
