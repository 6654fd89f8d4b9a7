"""The dispatcher: takes queued runs to the workers, in order, within each loop's limits.

Every run passes through here, whoever created it (the scheduler, an API call, a backfill, an
`after:` trigger, a retry). For each run the dispatcher
- keeps each loop's scheduled, triggered and backfilled runs within its `max_concurrency`
  (oldest first; manual runs are not limited), so a catch-up never becomes a storm;
- applies the epsilon rule: a scheduled time that cannot start within its epsilon is recorded
  `expired` instead (unless the loop's `catchup` is `all`);
- claims the run in the store (queued → running) before it runs, so two dispatchers on one store
  never run it twice;
- on failure or timeout, queues another attempt after a capped, jittered exponential backoff
  while `retries.max` allows, and otherwise notifies the loop's webhook;
- on success of a run that covers a window of the schedule (not a run by hand), creates the
  runs of the loops that follow it (`after:`), for the same window and the same scheduled
  time, at the versions their pipeline pinned, in the same transaction that records the
  success (so a stop between two steps loses neither);
- runs the steps a running handler asks for (`Loop.run`, `run_step`) at once, in its stead;
- cancels a run on request: a queued one is marked so in the store and is never claimed, a
  running one is stopped in its worker; either ends `cancelled`, never retried or followed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from tsq.clock import Clock
from tsq.draining import drain, drain_now
from tsq.errors import Conflict, HostError
from tsq.executors import (
    TARGET,
    Execution,
    Executor,
    Guard,
    GuardedExecutor,
    HostFactory,
    JobRunner,
    Step,
    StepExecutor,
    TargetExecutor,
    WorkerExecutor,
    event_payload,
    executor_key,
)
from tsq.followers import Followers
from tsq.lanes import Lanes
from tsq.loopstore import LoopStore, StoredVersion
from tsq.model import LoopSpec
from tsq.notify import Notifier
from tsq.outcomes import FailureKind, RunResult, RunStatus
from tsq.redaction import redacted_result, scrubber_for
from tsq.run import Run
from tsq.runlog import LogBuffer, LogLine
from tsq.runpolicy import LIMITED_TRIGGERS, expired, retried, retry_delay_s
from tsq.runstore import NewRun, RunStore, Settlement
from tsq.runtimes import RUNTIMES

if TYPE_CHECKING:
    import httpx

__all__ = ["Dispatcher", "RunQueue"]

log = logging.getLogger(__name__)

TARGET_THREADS = 8
IN_FLIGHT_PER_WORKER = 8
# A cluster worker's ends wait this long for others about to end: 1 -> 5 ms made the cluster
# benchmark's ratio 0.72-0.73 -> 0.74-0.79 (three rounds each), for an end recorded up to
# 5 ms later while the process runs others.
SETTLE_GATHER_S = 0.005
SLOT_WAIT_S = 0.2  # how often a dispatcher waiting for a free worker checks for shutdown
CANCEL_WAIT_S = 10.0  # a cancel answers once the run ended, or with it as it is after this
HANDOFF_S = 1.0  # a claimed run reaches its executor within this (else its service is gone)
LANE_RETRY_S = 0.5  # in a cluster, how soon a run whose lane is full elsewhere tries again
SETTLE_AGAIN_S = 0.5  # in a cluster, how soon the ends of runs the store refused are written again


class RunQueue(Protocol):
    """Where a cluster's runs wait for a worker process (`tsq.cluster.workqueue`): a run offered
    anywhere is published, and a worker process's feeder hands it to its own dispatcher (`take`).
    """

    def publish(self, runs: list[Run]) -> None: ...

    def done(self, run_ids: list[str], *, ended: list[Run] | None = None) -> None:
        """The runs left this process's hands (ended, retried, or someone else's): their
        messages are answered, and every process's waiters hear of the runs `ended`."""

    def cancel(self, run_id: str) -> None:
        """Ask the worker process running `run_id` to stop it."""

    def waiting(self, run_ids: list[str], claimed: set[str]) -> None:
        """`run_ids` wait here for their loop's lane (held, but not taking room for more);
        those of `claimed` that waited so far no longer do."""

    def again(self, run_ids: list[str]) -> None:
        """The run store failed these runs' start or end here: their messages come back
        (soon, to any process), and the run store's record then says what to do."""


@dataclass(frozen=True)
class _Ended:
    """A run that ended (or will not start), on its way to the store."""

    run: Run
    result: RunResult
    logs: list[LogLine] = field(default_factory=list)
    holds_slot: bool = True  # False for runs taken over at start, which never had a lane slot


class Dispatcher:
    """Two threads do the store work in batches, so a burst of fires costs a few transactions:
    `tsq-dispatch` expires or claims ready runs and hands them to the workers, `tsq-settle`
    writes how runs ended and does what follows (retries, webhooks, `after:`, waiters)."""

    def __init__(self, runs: RunStore, loops: LoopStore, pool: Callable[[], JobRunner],
                 notifier: Notifier, clock: Clock = time.time, workers: int = 2,
                 hosts: HostFactory | None = None, steps: dict[str, Step] | None = None,
                 guards: dict[str, Guard] | None = None, work_queue: RunQueue | None = None
                 ) -> None:
        self.runs = runs
        self.queue = work_queue  # a cluster's work queue; None: runs wait in this process
        self.loops = loops
        self.notifier = notifier
        self.clock = clock
        self._pool = pool
        self._lock = threading.Lock()
        self.lanes = Lanes(lambda run: self._version(run.version_id).spec.max_concurrency)
        self._waiters: dict[str, Future[Run]] = {}
        # Runs handed to an executor and not ended: their outcome, and whether it is in service
        self._running: dict[str, tuple[Future[RunResult], bool]] = {}
        self._listeners: list[Callable[[Run], None]] = []
        # each with which of the runs ended elsewhere it wants, asked of their JSON
        self._elsewhere_listeners: list[tuple[Callable[[Run], None],
                                              Callable[[Mapping[str, Any]], bool]]] = []
        self._versions: dict[str, StoredVersion] = {}
        self.followers = Followers(runs, loops, clock)  # whom a success sets off (`after:`)
        self._timers: set[threading.Timer] = set()
        self._targets = ThreadPoolExecutor(TARGET_THREADS, thread_name_prefix="tsq-target")
        self._http: httpx.Client | None = None  # made for the first URL target (it costs 50 ms)
        self.executors = _executors(pool, hosts, steps or {}, self._targets, self._http_client,
                                    clock)
        for name, guard in (guards or {}).items():  # checks before runs of a runtime or step
            self.executors[name] = GuardedExecutor(self.executors[name], guard)
        self._closed = False
        # Runs handed to workers (or URL targets) and not ended yet: each worker has one run
        # and a few waiting, so it never idles between runs and, under load, several runs end
        # between two claims and are claimed in one write.
        self._workers_free = threading.Semaphore(workers * IN_FLIGHT_PER_WORKER)
        self._targets_free = threading.Semaphore(TARGET_THREADS)
        self._ready: queue.Queue[Run | None] = queue.Queue()
        self._ended: queue.Queue[_Ended | None] = queue.Queue()
        self._threads = [threading.Thread(target=target, daemon=True, name=name) for
                         target, name in ((self._dispatch_loop, "tsq-dispatch"),
                                          (self._settle_loop, "tsq-settle"))]
        for thread in self._threads:
            thread.start()

    # -- entry points ----------------------------------------------------------------------

    def offer(self, run: Run) -> None:
        """Run a queued run as soon as its loop's limit and its retry time allow (in a
        cluster: publish it for a worker process)."""
        self.offer_all([run])

    def offer_all(self, queued: list[Run]) -> None:
        if self.queue is not None:
            self.queue.publish(queued)
        else:
            for run in queued:
                self.take(run)

    def take(self, run: Run) -> None:
        """Run a queued run here, as soon as its loop's limit and its retry time allow."""
        not_before = run.not_before_ms
        if not_before is not None and not_before > self._now_ms():
            self._later((not_before - self._now_ms()) / 1000, run)
        else:
            self._admit(run)

    def start(self, new: NewRun, *, inline: bool = False) -> tuple[Run, Future[Run]]:
        """Create a run that no lane limits (one started by hand) and a future for its final
        record. With a worker free, it is created running and handed to the worker from the
        calling thread: one write and no hop through `tsq-dispatch`. Otherwise it is queued.

        With `inline` (the caller waits for the outcome anyway) and a worker idle, the run
        runs on the calling thread and is settled there: the future is done on return."""
        run = new.queued("", 0)
        spec = self._version(run.version_id).spec
        assert run.trigger not in LIMITED_TRIGGERS, "a limited run goes through its lane"
        slots = self._targets_free if self._in_service(spec, run) else self._workers_free
        if self._closed or new.not_before_ms is not None or self.queue is not None \
                or not slots.acquire(blocking=False):
            record = self.runs.create(new)
            done = self.wait(record.id)
            self.offer(record)
            return record, done
        created = None
        try:
            if inline:  # its record commits with its end, one write (RunStore.create_soon)
                record, created = self.runs.create_soon(new)
            else:
                record = self.runs.create(new, running=True)
        except BaseException:
            slots.release()
            raise
        done = self.wait(record.id)
        try:
            self._execute(record, self._version(record.version_id), slots, inline=inline)
        except Exception as exc:
            slots.release()
            self._ended.put(_Ended(record, RunResult.failed(
                "InternalError", f"tsq could not start the run: {exc}")))
        if created is not None and created.done.is_set():  # ended here: the caller hears
            self.runs.writes.written(created)  # that its run is not on record, if it is not
        return record, done

    def wait(self, run_id: str) -> Future[Run]:
        """A future for the final run of `run_id`; ask before offering the run."""
        with self._lock:
            return self._waiters.setdefault(run_id, Future())

    def on_finished(self, listener: Callable[[Run], None]) -> None:
        """Call `listener` with every final run (after retries)."""
        self._listeners.append(listener)

    def on_finished_elsewhere(self, listener: Callable[[Run], None],
                              wanted: Callable[[Mapping[str, Any]], bool] = lambda _run: True
                              ) -> None:
        """In a cluster, call `listener` with the final runs other processes settled too (those
        small enough to travel in the notice: a run's record without a large result) that
        `wanted` takes, asked of the run's JSON: the api process hears every run's end, and
        making each a `Run` to pass most over cost it a tenth of a millisecond a run."""
        self._elsewhere_listeners.append((listener, wanted))

    def recover(self, unfinished: Iterable[Run]) -> int:
        """Take over the runs a stopped service left: re-offer queued ones, fail running ones.

        A run that was running may have done part of its work, so it is not silently run again;
        it is recorded as interrupted, and retried only if its loop asks for retries.
        """
        count = 0
        for run in unfinished:
            count += 1
            if run.status == RunStatus.QUEUED:
                self.offer(run)
            else:
                self._ended.put(_Ended(run, RunResult.failure(
                    FailureKind.INTERRUPTED, "the service stopped while this run was running"),
                    holds_slot=False))
        return count

    def interrupted(self, run: Run, why: str) -> None:
        """Record a running run whose worker is gone as interrupted (retried only if its loop
        asks for retries), as `recover` does at a restart."""
        self._ended.put(_Ended(run, RunResult.failure(FailureKind.INTERRUPTED, why),
                               holds_slot=False))

    def hears_ends(self) -> bool:
        """Whether the ends of runs elsewhere matter here now: someone waits for a run, or
        listens to them all. A run's waiter is made before the run is offered, so no end it
        waits for can come while this says no."""
        return bool(self._waiters) or bool(self._elsewhere_listeners)

    def ended_elsewhere(self, notice: list[dict[str, Any] | str]) -> None:
        """Runs ended on a process of the cluster (each as it ended, or its id when it was too
        large to carry): wake whoever waits for them here."""
        listeners = self._elsewhere_listeners
        with self._lock:
            waited = {run_id for item in notice
                      if (run_id := item if isinstance(item, str) else item["id"])
                      in self._waiters}
        if not listeners and not waited:  # a worker process hears every end, and needs few
            return
        records = []
        for item in notice:
            if isinstance(item, str):
                continue
            takers = [listener for listener, wanted in listeners if wanted(item)]
            if not takers and item["id"] not in waited:
                continue
            record = Run.from_json(item)
            for listener in takers:
                listener(record)
            if record.id in waited:
                records.append(record)
        records += self.runs.get_many([item for item in notice if isinstance(item, str)
                                       and item in waited]).values()
        for record in records:
            if record.status.finished:
                self._wake(record)

    def cancel_here(self, run_id: str) -> None:
        """Stop `run_id` if this process runs it (a cluster's cancel reaches every worker process);
        a run claimed a moment ago is given HANDOFF_S to reach its executor."""
        handoff = time.monotonic() + HANDOFF_S
        while time.monotonic() < handoff:
            with self._lock:
                running = self._running.get(run_id)
                done = None if running is None else self._waiters.setdefault(run_id, Future())
            if running is not None and done is not None:
                with contextlib.suppress(Conflict):  # in the service: it ends in its timeout
                    self._stop(run_id, running, done)
                return
            if self.runs.get(run_id).status != RunStatus.RUNNING:
                return
            time.sleep(0.01)

    def run_step(self, run: Run, within_s: float) -> Run:
        """Run the queued `Loop.run` step `run` now and wait for its final run (retries
        included), at most `within_s`. The calling worker slot lends its place meanwhile, so the
        step never waits for a worker its own caller holds (HostError if it cannot run)."""
        deadline = time.monotonic() + within_s
        with self._pool().lending():
            while True:
                done = self.wait(run.id)
                delay_s = ((run.not_before_ms or 0) - self._now_ms()) / 1000
                if delay_s > 0:
                    time.sleep(min(delay_s, max(0.0, deadline - time.monotonic())))
                if run.id not in self.runs.claim_many([run.id]):
                    with self._lock:
                        self._waiters.pop(run.id, None)
                    raise HostError("Conflict", f"step {run.id} was taken by another "
                                                f"dispatcher or cancelled")
                running = run.started(self._now_ms())
                self._execute(running, self._version(run.version_id), None)
                try:
                    final = done.result(timeout=max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise HostError(FailureKind.TIMEOUT,
                                    f"step {run.id} ({run.loop}) did not end within "
                                    f"its caller's timeout; it goes on, and its run records how "
                                    f"it ends") from None
                if final.status != RunStatus.QUEUED:
                    return final
                run = final  # its next attempt, after the backoff

    def cancel(self, run_id: str) -> Run:
        """Cancel run `run_id`; its record once it ended `cancelled` (or as it is after
        CANCEL_WAIT_S). Conflict if it has ended already, or runs in the service itself."""
        handoff = time.monotonic() + HANDOFF_S
        while True:
            with self._lock:
                running = self._running.get(run_id)
                done = None if running is None else self._waiters.setdefault(run_id, Future())
            if running is not None and done is not None:
                return self._stop(run_id, running, done)
            record = self.runs.cancel(run_id, RunStatus.QUEUED, RunResult.cancelled(
                "while it was queued; it never started"))
            if record is not None:
                self._follow_up(record, self._version(record.version_id).spec)
                return record
            current = self.runs.get(run_id)
            if current.status.finished:
                raise Conflict(f"run {run_id} ({current.loop}) has ended already "
                               f"({current.status}); only a queued or running run can be "
                               f"cancelled", details={"run": run_id, "status": current.status})
            if self.queue is not None and current.status == RunStatus.RUNNING:
                return self._cancel_in_cluster(run_id)
            if time.monotonic() > handoff:  # running, but not here: its service stopped
                record = self.runs.cancel(run_id, RunStatus.RUNNING, RunResult.cancelled(
                    "while it was recorded running, but no worker of this service ran it"))
                if record is not None:
                    self._follow_up(record, self._version(record.version_id).spec)
                    return record
            time.sleep(0.01)  # claimed a moment ago, on its way to its executor

    def _cancel_in_cluster(self, run_id: str) -> Run:
        """Ask every worker process to stop a running run, and wait for its end (or, after
        CANCEL_WAIT_S, answer the run as it is)."""
        assert self.queue is not None
        done = self.wait(run_id)
        self.queue.cancel(run_id)
        try:
            return done.result(timeout=CANCEL_WAIT_S)
        except TimeoutError:
            return self.runs.get(run_id)

    def _stop(self, run_id: str, running: tuple[Future[RunResult], bool],
              done: Future[Run]) -> Run:
        """Stop a run an executor has: a job no worker took yet is dropped, a running one is
        killed with its worker process."""
        outcome, in_service = running
        if in_service:
            record = self.runs.get(run_id)
            raise Conflict(f"run {run_id} ({record.loop}) runs in the service itself (a URL "
                           f"target or a retention step), which cannot be stopped part-way; "
                           f"it ends within its loop's timeout", details={"run": run_id})
        deadline = time.monotonic() + CANCEL_WAIT_S
        # A slot that has just taken the job registers it a moment later.
        while not (outcome.cancel() or self._pool().cancel(run_id) or outcome.done()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        try:
            return done.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return self.runs.get(run_id)

    def loops_changed(self) -> None:
        """Forget the cached `after:` graph; the next success reads it again."""
        self.followers.forget()

    def close(self) -> None:
        self._closed = True
        for timer in list(self._timers):
            timer.cancel()
        self._ready.put(None)
        self._ended.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        self._targets.shutdown(wait=False, cancel_futures=True)
        if self._http is not None:
            self._http.close()

    # -- lanes and timers --------------------------------------------------------------------

    def _admit(self, run: Run) -> None:
        if self.lanes.admit(run):
            self._ready.put(run)

    def _release(self, run: Run) -> None:
        """Free `run`'s lane slot, or hand it straight to the lane's next waiting run."""
        following = self.lanes.release(run)
        if following is not None:
            self._ready.put(following)

    def _later(self, delay_s: float, run: Run) -> None:
        def fire() -> None:
            self._timers.discard(timer)
            if not self._closed:
                self._admit(run)

        timer = threading.Timer(max(0.0, delay_s), fire)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    # -- starting runs (tsq-dispatch) ------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while (batch := drain(self._ready, BATCH)) is not None:
            try:
                self._dispatch(batch)
            except Exception as exc:  # the store failed: these runs fail, dispatching goes on
                log.exception("could not start %d runs", len(batch))
                for run in batch:
                    self._ended.put(_Ended(run, RunResult.failed(
                        "InternalError", f"tsq could not start the run: {exc}")))

    def _dispatch(self, batch: list[Run]) -> None:
        """Start the runs of `batch` in order, as fast as free capacity allows.

        A run is claimed (marked running) only when a worker slot is free for it, so a stopped
        service leaves few runs `running` (those are recorded as interrupted at restart) and
        many `queued` (those simply run at restart); and epsilon is checked when a slot is there,
        so a run that waited too long for one expires instead of starting late.
        """
        pending = deque(batch)
        while pending and not self._closed:
            group: list[tuple[Run, threading.Semaphore]] = []
            while pending:
                run = pending[0]
                spec = self._version(run.version_id).spec
                if self._expired(run, spec):
                    self._expire(pending.popleft(), spec)
                    continue
                slots = self._targets_free if self._in_service(spec, run) else \
                    self._workers_free
                if not self._take(slots, wait=not group):
                    break  # start what holds a slot; wait for more afterwards
                if self._expired(run, spec):  # the wait for a slot made it too late
                    slots.release()
                    continue
                group.append((pending.popleft(), slots))
            self._start(group)

    def _take(self, slots: threading.Semaphore, *, wait: bool) -> bool:
        """A free slot; with `wait`, as soon as one frees up (False only once closing)."""
        if not wait:
            return slots.acquire(blocking=False)
        while not self._closed:
            if slots.acquire(timeout=SLOT_WAIT_S):
                return True
        return False

    def _start(self, group: list[tuple[Run, threading.Semaphore]]) -> None:
        try:
            claimed, waiting = self._claim([run for run, _ in group])
        except Exception as exc:  # the store is away: no run of the group started
            log.exception("could not claim %d runs", len(group))
            for _, slots in group:
                slots.release()
            if self.queue is not None:  # still queued: their messages come back
                for run, _ in group:
                    self._release(run)
                self.queue.again([run.id for run, _ in group])
                return
            for run, _ in group:
                self._ended.put(_Ended(run, RunResult.failed(
                    "InternalError", f"tsq could not start the run: {exc}")))
            return
        now = self._now_ms()
        taken = [run.id for run, _ in group if run.id not in claimed and run.id not in waiting]
        if self.queue is not None:
            self.queue.done(taken)
            self.queue.waiting(list(waiting), claimed)
        for run, slots in group:
            if run.id in waiting:  # its lane is full on other processes: try again soon
                slots.release()
                self._release(run)
                self._later(LANE_RETRY_S, run)
                continue
            if run.id not in claimed:
                slots.release()
                self._release(run)  # another dispatcher runs it, or it was cancelled
                continue
            running = run.started(now)
            try:
                self._execute(running, self._version(run.version_id), slots)
            except Exception as exc:
                slots.release()
                self._ended.put(_Ended(running, RunResult.failed(
                    "InternalError", f"tsq could not start the run: {exc}")))

    def _claim(self, group: list[Run]) -> tuple[set[str], set[str]]:
        """The runs of `group` claimed here, and those still queued because their loop's lane is
        full elsewhere. In a cluster a lane holds across processes (`RunStore.claim_limited`);
        in one process the lanes (tsq.lanes) have kept it already."""
        if self.queue is None:
            return self.runs.claim_many([run.id for run in group]), set()
        limited = [(run, self._version(run.version_id).spec.max_concurrency) for run in group
                   if run.trigger in LIMITED_TRIGGERS]
        claimed = self.runs.claim_many([run.id for run in group
                                        if run.trigger not in LIMITED_TRIGGERS])
        claimed |= self.runs.claim_limited(limited)
        unclaimed = [run.id for run, _ in limited if run.id not in claimed]
        waiting = {run.id for run in self.runs.get_many(unclaimed).values()
                   if run.status == RunStatus.QUEUED}
        return claimed, waiting

    def _expire(self, run: Run, spec: LoopSpec) -> None:
        late_s = (self._now_ms() - run.when_ms) / 1000
        message = (f"not started: {late_s:.1f} s after its scheduled time, past its epsilon of "
                   f"{(run.epsilon_ms or 0) / 1000:g} s (catchup: {spec.catchup})")
        log.warning("expired run %s of %s/%s: %s", run.id, run.project,
                    run.loop, message, extra=run.identity())
        self._ended.put(_Ended(run, RunResult.failure(FailureKind.EXPIRED, message),
            [LogLine(self._now_ms(), "warning", message)]))

    def _execute(self, run: Run, version: StoredVersion,
                 slots: threading.Semaphore | None, *, inline: bool = False) -> None:
        logs = LogBuffer(self.runs, run.id, scrubber_for(version.id, version.spec))
        execution = Execution(run, version, event_payload(run, version), logs.add)
        executor = self._executor(version.spec, run)
        result = self._run_here(run, executor, execution) if inline else None
        if result is not None:
            if slots is not None:
                slots.release()
            self._settle_safely([_Ended(run, result, logs.take())])
            return
        future = executor.submit(execution)
        with self._lock:
            self._running[run.id] = (future, executor.in_service)

        def ended(done: Future[RunResult]) -> None:
            with self._lock:
                self._running.pop(run.id, None)
            if slots is not None:
                slots.release()
            self._ended.put(_Ended(run, _outcome(done), logs.take()))

        future.add_done_callback(ended)

    def _run_here(self, run: Run, executor: Executor, execution: Execution
                  ) -> RunResult | None:
        """`executor.run_now`, with the run findable by `cancel` meanwhile (its stand-in
        future is running, so `cancel` stops it in its worker)."""
        running: Future[RunResult] = Future()
        running.set_running_or_notify_cancel()
        with self._lock:
            self._running[run.id] = (running, executor.in_service)
        try:
            return executor.run_now(execution)
        finally:
            with self._lock:
                self._running.pop(run.id, None)

    def _executor(self, spec: LoopSpec, run: Run) -> Executor:
        return self.executors[executor_key(spec, run.event)]

    def _in_service(self, spec: LoopSpec, run: Run) -> bool:
        """Whether the run happens here (a URL target, a built-in step), not in a worker."""
        return self._executor(spec, run).in_service

    def _expired(self, run: Run, spec: LoopSpec) -> bool:
        return expired(run, spec, self._now_ms())

    # -- ending runs (tsq-settle) ----------------------------------------------------------

    def _settle_loop(self) -> None:
        while (batch := drain(self._ended, BATCH)) is not None:
            if self.queue is not None and self._more_ending(batch):
                # In a cluster each settle is a commit, an acknowledgement and a notice to
                # every process; ends that come one by one while more runs are about to end
                # here are worth a moment's wait to share them.
                time.sleep(SETTLE_GATHER_S)
                batch += drain_now(self._ended, BATCH - len(batch))
            self._settle_safely(batch)

    def _more_ending(self, batch: list[_Ended]) -> bool:
        with self._lock:
            return len(batch) < BATCH and len(self._running) > 0

    def _settle_safely(self, batch: list[_Ended]) -> None:
        """Settle on this thread: `tsq-settle`'s batches, and a run that ran inline."""
        try:
            self._settle(batch)
        except Exception as exc:
            log.exception("could not run the end of %d runs", len(batch))
            failure = RunResult.failed("InternalError", f"tsq could not record how the run "
                                                        f"ended: {exc}")
            if self.queue is not None:
                # The runs did end: their outcomes are kept and written once the store is
                # back. Their messages stay held (and extended), so no process runs them
                # again meanwhile; were they handed back, each failed write would use up one
                # of a message's deliveries, and a run that succeeded during an outage of
                # seconds would be recorded interrupted.
                for ended in batch:
                    if ended.holds_slot:
                        self._release(ended.run)
                self._settle_later([replace(ended, holds_slot=False) for ended in batch])
                return
            for ended in batch:
                if ended.holds_slot:
                    self._release(ended.run)
                # whoever waits for the run hears of it (the record may still say running)
                self._wake(ended.run.evolve(status=failure.status, error=failure.error))

    def _settle_later(self, batch: list[_Ended]) -> None:
        def again() -> None:
            if not self._closed:
                for ended in batch:
                    self._ended.put(ended)
        timer = threading.Timer(SETTLE_AGAIN_S, again)
        timer.daemon = True
        timer.start()

    def _settle(self, batch: list[_Ended]) -> None:
        settlements = [self._settlement(ended) for ended in batch]
        settled, followers = self.runs.settle_many(settlements)
        for ended, settlement, run in zip(batch, settlements, settled, strict=True):
            spec = self._version(run.version_id).spec
            if settlement.retry_at_ms is None:
                self._follow_up(run, spec)
            elif run.trigger == "call":
                self._wake(run)  # its caller's run_step waits out the backoff and runs it
            else:
                self.offer(run)
            if ended.holds_slot:
                self._release(ended.run)
        self.offer_all(list(followers))
        if self.queue is not None:
            self.queue.done([ended.run.id for ended in batch],
                            ended=[run for run in settled if run.status.finished])

    def _settlement(self, ended: _Ended) -> Settlement:
        run = ended.run
        spec = self._version(run.version_id).spec
        result = redacted_result(run.version_id, spec, ended.result)  # before it is kept
        logs = list(ended.logs)
        if result.status not in (RunStatus.SUCCESS, RunStatus.EXPIRED) and result.error:
            logs.append(LogLine(self._now_ms(), "error", _error_line(result)))
        attempt = run.attempt
        if retried(run, result.status, spec) and not self._closed:
            delay = retry_delay_s(spec.retries.backoff_s, attempt, random.random())
            log.info("run %s of %s/%s %s on attempt %d; retrying in %.1f s", run.id,
                     run.project, run.loop, result.status, attempt, delay,
                     extra={**run.identity(), "status": result.status, "retry_in_s": delay})
            logs.append(LogLine(self._now_ms(), "info",
                                f"attempt {attempt} {result.status}; attempt {attempt + 1} of "
                                f"{spec.retries.max + 1} in {delay:.1f} s"))
            return Settlement(run, result, logs, self._now_ms() + int(delay * 1000))
        followers: list[NewRun] = []
        if result.status == RunStatus.SUCCESS and run.window is not None:
            followers = self.followers.of(run, logs)
        return Settlement(run, result, logs, followers=followers)

    def _follow_up(self, final: Run, spec: LoopSpec) -> None:
        """A run's last word: notify, trigger followers, wake waiters and listeners."""
        _log_end(final)
        webhook = spec.notify.get("webhook")
        if webhook and final.status.notified:
            self.notifier.send(webhook, final.to_json())
        self._wake(final)
        for listener in self._listeners:
            listener(final)

    def _wake(self, run: Run) -> None:
        with self._lock:
            waiter = self._waiters.pop(run.id, None)
        if waiter is not None:
            waiter.set_result(run)

    # -- helpers ---------------------------------------------------------------------------

    def remember(self, versions: Iterable[StoredVersion]) -> None:
        """Versions the caller has already read (the scheduler, every live loop's as it
        starts): thousands of runs offered at once then need no query each for theirs."""
        for version in versions:
            self._versions.setdefault(version.id, version)

    def _version(self, version_id: str) -> StoredVersion:
        version = self._versions.get(version_id)
        if version is None:  # versions never change, so a cache entry never goes stale
            version = self._versions[version_id] = self.loops.version(version_id)
        return version

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _http_client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                from tsq import outbound

                self._http = outbound.client()
            return self._http


BATCH = 500  # runs per transaction, at most


def _log_end(final: Run) -> None:
    """How a run ended: DEBUG for a success (there are many), WARNING for a failure or timeout
    (an expiry was said when it happened)."""
    status = final.status
    if status == RunStatus.EXPIRED:
        return
    level = logging.DEBUG if status == RunStatus.SUCCESS else logging.WARNING
    if not log.isEnabledFor(level):
        return
    why = f": {final.error.headline}" if final.error else ""
    log.log(level, "run %s of %s/%s %s in %s ms%s", final.id, final.project,
            final.loop, status.value, final.duration_ms, why,
            extra={**final.identity(), "status": status.value,
                   "duration_ms": final.duration_ms})


def _executors(pool: Callable[[], JobRunner], hosts: HostFactory | None, steps: dict[str, Step],
               threads: ThreadPoolExecutor, http: Callable[[], httpx.Client], clock: Clock
               ) -> dict[str, Executor]:
    """Executor by `executor_key`: every runtime runs in a worker, a URL target and the
    service's own steps on a service thread."""
    worker = WorkerExecutor(pool, hosts)
    table: dict[str, Executor] = dict.fromkeys(RUNTIMES, worker)
    table[TARGET] = TargetExecutor(threads, http, clock)
    table.update({name: StepExecutor(threads, step) for name, step in steps.items()})
    return table


def _outcome(done: Future[RunResult]) -> RunResult:
    if done.cancelled():
        return RunResult.never_started()
    try:
        return done.result()
    except Exception as exc:
        return RunResult.failed("InternalError", f"tsq could not run the handler: {exc}")


def _error_line(result: RunResult) -> str:
    assert result.error is not None
    stack, head = result.error.stack, result.error.headline
    return stack if stack.startswith(head) else f"{head}\n{stack}".rstrip()
