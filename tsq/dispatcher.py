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
- runs the steps a running handler asks for (`Loop.run`, `run_step`) at once, in its stead.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from tsq.clock import Clock
from tsq.errors import HostError
from tsq.executors import (
    TARGET,
    Execution,
    Executor,
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
from tsq.loopstore import LoopStore, StoredVersion
from tsq.model import LoopSpec
from tsq.notify import Notifier
from tsq.outcomes import FailureKind, RunResult, RunStatus
from tsq.runlog import LogBuffer, LogLine
from tsq.runpolicy import LIMITED_TRIGGERS, expired, retried, retry_delay_s
from tsq.runstore import NewRun, RunStore, Settlement
from tsq.runtimes import RUNTIMES

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

TARGET_THREADS = 8
SLOT_WAIT_S = 0.2  # how often a dispatcher waiting for a free worker checks for shutdown


@dataclass(frozen=True)
class _Ended:
    """A run that ended (or will not start), on its way to the store."""

    record: dict[str, Any]
    result: RunResult
    logs: list[LogLine] = field(default_factory=list)
    holds_slot: bool = True  # False for runs taken over at start, which never had a lane slot


@dataclass
class _Lane:
    """The runs of one loop that share its concurrency limit."""

    running: int = 0
    waiting: deque[dict[str, Any]] = field(default_factory=deque)


class Dispatcher:
    """Two threads do the store work in batches, so a burst of fires costs a few transactions:
    `tsq-dispatch` expires or claims ready runs and hands them to the workers, `tsq-settle`
    writes how runs ended and does what follows (retries, webhooks, `after:`, waiters)."""

    def __init__(self, runs: RunStore, loops: LoopStore, pool: Callable[[], JobRunner],
                 notifier: Notifier, clock: Clock = time.time, workers: int = 2,
                 hosts: HostFactory | None = None, steps: dict[str, Step] | None = None
                 ) -> None:
        self.runs = runs
        self.loops = loops
        self.notifier = notifier
        self.clock = clock
        self._pool = pool
        self._lock = threading.Lock()
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._waiters: dict[str, Future[dict[str, Any]]] = {}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._versions: dict[str, StoredVersion] = {}
        self.followers = Followers(runs, loops, clock)  # whom a success sets off (`after:`)
        self._timers: set[threading.Timer] = set()
        self._targets = ThreadPoolExecutor(TARGET_THREADS, thread_name_prefix="tsq-target")
        self._http = httpx.Client()
        self.executors = _executors(pool, hosts, steps or {}, self._targets, self._http, clock)
        self._closed = False
        # Runs handed to workers (or URL targets) and not ended yet: each worker has one run
        # and the next one waiting, so it never idles between runs.
        self._workers_free = threading.Semaphore(workers * 2)
        self._targets_free = threading.Semaphore(TARGET_THREADS)
        self._ready: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._ended: queue.Queue[_Ended | None] = queue.Queue()
        self._threads = [threading.Thread(target=target, daemon=True, name=name) for
                         target, name in ((self._dispatch_loop, "tsq-dispatch"),
                                          (self._settle_loop, "tsq-settle"))]
        for thread in self._threads:
            thread.start()

    # -- entry points ----------------------------------------------------------------------

    def offer(self, record: dict[str, Any]) -> None:
        """Run a queued run as soon as its loop's limit and its retry time allow."""
        not_before = record.get("not_before_ms")
        if not_before is not None and not_before > self._now_ms():
            self._later((not_before - self._now_ms()) / 1000, record)
        else:
            self._admit(record)

    def wait(self, run_id: str) -> Future[dict[str, Any]]:
        """A future for the final record of `run_id`; ask before offering the run."""
        with self._lock:
            return self._waiters.setdefault(run_id, Future())

    def on_finished(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call `listener` with every final run record (after retries)."""
        self._listeners.append(listener)

    def recover(self, unfinished: Iterable[dict[str, Any]]) -> int:
        """Take over the runs a stopped service left: re-offer queued ones, fail running ones.

        A run that was running may have done part of its work, so it is not silently run again;
        it is recorded as interrupted, and retried only if its loop asks for retries.
        """
        count = 0
        for record in unfinished:
            count += 1
            if record["status"] == "queued":
                self.offer(record)
            else:
                self._ended.put(_Ended(record, RunResult.failure(
                    FailureKind.INTERRUPTED, "the service stopped while this run was running"),
                    holds_slot=False))
        return count

    def run_step(self, record: dict[str, Any], within_s: float) -> dict[str, Any]:
        """Run the queued `Loop.run` step `record` now and wait for its final record (retries
        included), at most `within_s`. The calling worker slot lends its place meanwhile, so the
        step never waits for a worker its own caller holds (HostError if it cannot run)."""
        deadline = time.monotonic() + within_s
        with self._pool().lending():
            while True:
                done = self.wait(record["id"])
                delay_s = ((record.get("not_before_ms") or 0) - self._now_ms()) / 1000
                if delay_s > 0:
                    time.sleep(min(delay_s, max(0.0, deadline - time.monotonic())))
                if record["id"] not in self.runs.claim_many([record["id"]]):
                    with self._lock:
                        self._waiters.pop(record["id"], None)
                    raise HostError("Conflict", f"step {record['id']} was taken by another "
                                                f"dispatcher or cancelled")
                running = {**record, "status": "running", "started_ms": self._now_ms()}
                self._execute(running, self._version(record["version_id"]), None)
                try:
                    final = done.result(timeout=max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise HostError(FailureKind.TIMEOUT,
                                    f"step {record['id']} ({record['loop']}) did not end within "
                                    f"its caller's timeout; it goes on, and its run records how "
                                    f"it ends") from None
                if final["status"] != "queued":
                    return final
                record = final  # its next attempt, after the backoff

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
        self._http.close()

    # -- lanes -----------------------------------------------------------------------------

    def _admit(self, record: dict[str, Any]) -> None:
        if record["trigger"] in LIMITED_TRIGGERS:
            limit = self._version(record["version_id"]).spec.max_concurrency
            with self._lock:
                lane = self._lanes.setdefault((record["project"], record["loop"]), _Lane())
                if lane.running >= limit:
                    lane.waiting.append(record)
                    return
                lane.running += 1
        self._ready.put(record)

    def _release(self, record: dict[str, Any]) -> None:
        """Free `record`'s lane slot, or hand it straight to the lane's next waiting run."""
        if record["trigger"] not in LIMITED_TRIGGERS:
            return
        with self._lock:
            lane = self._lanes.get((record["project"], record["loop"]))
            if lane is None:
                return
            if not lane.waiting:
                lane.running -= 1
                return
            following = lane.waiting.popleft()
        self._ready.put(following)

    def _later(self, delay_s: float, record: dict[str, Any]) -> None:
        def fire() -> None:
            self._timers.discard(timer)
            if not self._closed:
                self._admit(record)

        timer = threading.Timer(max(0.0, delay_s), fire)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    # -- starting runs (tsq-dispatch) ------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while (batch := _drain(self._ready)) is not None:
            try:
                self._dispatch(batch)
            except Exception as exc:  # the store failed: these runs fail, dispatching goes on
                log.exception("could not start %d runs", len(batch))
                for record in batch:
                    self._ended.put(_Ended(record, RunResult.failed(
                        "InternalError", f"tsq could not start the run: {exc}")))

    def _dispatch(self, batch: list[dict[str, Any]]) -> None:
        """Start the runs of `batch` in order, as fast as free capacity allows.

        A run is claimed (marked running) only when a worker slot is free for it, so a stopped
        service leaves few runs `running` (those are recorded as interrupted at restart) and
        many `queued` (those simply run at restart); and epsilon is checked when a slot is there,
        so a run that waited too long for one expires instead of starting late.
        """
        pending = deque(batch)
        while pending and not self._closed:
            group: list[tuple[dict[str, Any], threading.Semaphore]] = []
            while pending:
                record = pending[0]
                spec = self._version(record["version_id"]).spec
                if self._expired(record, spec):
                    self._expire(pending.popleft(), spec)
                    continue
                slots = self._targets_free if self._in_service(spec, record) else \
                    self._workers_free
                if not self._take(slots, wait=not group):
                    break  # start what holds a slot; wait for more afterwards
                if self._expired(record, spec):  # the wait for a slot made it too late
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

    def _start(self, group: list[tuple[dict[str, Any], threading.Semaphore]]) -> None:
        claimed = self.runs.claim_many([record["id"] for record, _ in group])
        now = self._now_ms()
        for record, slots in group:
            if record["id"] not in claimed:
                slots.release()
                self._release(record)  # another dispatcher runs it, or it was cancelled
                continue
            running = {**record, "status": "running", "started_ms": now}
            try:
                self._execute(running, self._version(record["version_id"]), slots)
            except Exception as exc:
                slots.release()
                self._ended.put(_Ended(running, RunResult.failed(
                    "InternalError", f"tsq could not start the run: {exc}")))

    def _expire(self, record: dict[str, Any], spec: LoopSpec) -> None:
        late_s = (self._now_ms() - record["scheduled_ms"]) / 1000
        message = (f"not started: {late_s:.1f} s after its scheduled time, past its epsilon of "
                   f"{record['epsilon_ms'] / 1000:g} s (catchup: {spec.catchup})")
        log.warning("expired run %s of %s/%s: %s", record["id"], record["project"],
                    record["loop"], message, extra=_fields(record))
        self._ended.put(_Ended(record, RunResult.failure(FailureKind.EXPIRED, message),
            [LogLine(self._now_ms(), "warning", message)]))

    def _execute(self, record: dict[str, Any], version: StoredVersion,
                 slots: threading.Semaphore | None) -> None:
        logs = LogBuffer(self.runs, record["id"])
        future = self._executor(version.spec, record).submit(
            Execution(record, version, event_payload(record, version), logs.add))

        def ended(done: Future[RunResult]) -> None:
            if slots is not None:
                slots.release()
            self._ended.put(_Ended(record, _outcome(done), logs.take()))

        future.add_done_callback(ended)

    def _executor(self, spec: LoopSpec, record: dict[str, Any]) -> Executor:
        return self.executors[executor_key(spec, record["event"])]

    def _in_service(self, spec: LoopSpec, record: dict[str, Any]) -> bool:
        """Whether the run happens here (a URL target, a built-in step), not in a worker."""
        return self._executor(spec, record).in_service

    def _expired(self, record: dict[str, Any], spec: LoopSpec) -> bool:
        return expired(record, spec, self._now_ms())

    # -- ending runs (tsq-settle) ----------------------------------------------------------

    def _settle_loop(self) -> None:
        while (batch := _drain(self._ended)) is not None:
            try:
                self._settle(batch)
            except Exception:
                log.exception("could not record the end of %d runs", len(batch))
                for ended in batch:
                    if ended.holds_slot:
                        self._release(ended.record)

    def _settle(self, batch: list[_Ended]) -> None:
        settlements = [self._settlement(ended) for ended in batch]
        records, followers = self.runs.settle_many(settlements)
        for ended, settlement, record in zip(batch, settlements, records, strict=True):
            spec = self._version(record["version_id"]).spec
            if settlement.retry_at_ms is None:
                self._follow_up(record, spec)
            elif record["trigger"] == "call":
                self._wake(record)  # its caller's run_step waits out the backoff and runs it
            else:
                self.offer(record)
            if ended.holds_slot:
                self._release(ended.record)
        for follower in followers:
            self.offer(follower)

    def _settlement(self, ended: _Ended) -> Settlement:
        record, result = ended.record, ended.result
        spec = self._version(record["version_id"]).spec
        logs = list(ended.logs)
        if result.status not in ("success", "expired") and result.error:
            logs.append(LogLine(self._now_ms(), "error", _error_line(result)))
        attempt = int(record["attempt"])
        if retried(record, result.status, spec) and not self._closed:
            delay = retry_delay_s(spec.retries.backoff_s, attempt, random.random())
            log.info("run %s of %s/%s %s on attempt %d; retrying in %.1f s", record["id"],
                     record["project"], record["loop"], result.status, attempt, delay,
                     extra={**_fields(record), "status": result.status, "retry_in_s": delay})
            logs.append(LogLine(self._now_ms(), "info",
                                f"attempt {attempt} {result.status}; attempt {attempt + 1} of "
                                f"{spec.retries.max + 1} in {delay:.1f} s"))
            return Settlement(record, result, logs, self._now_ms() + int(delay * 1000))
        followers: list[NewRun] = []
        if result.status == "success" and record["window_start_ms"] is not None:
            followers = self.followers.of(record, logs)
        return Settlement(record, result, logs, followers=followers)

    def _follow_up(self, final: dict[str, Any], spec: LoopSpec) -> None:
        """A run's last word: notify, trigger followers, wake waiters and listeners."""
        _log_end(final)
        webhook = spec.notify.get("webhook")
        if webhook and RunStatus(final["status"]).notified:
            self.notifier.send(webhook, final)
        self._wake(final)
        for listener in self._listeners:
            listener(final)

    def _wake(self, record: dict[str, Any]) -> None:
        with self._lock:
            waiter = self._waiters.pop(record["id"], None)
        if waiter is not None:
            waiter.set_result(record)

    # -- helpers ---------------------------------------------------------------------------

    def _version(self, version_id: str) -> StoredVersion:
        version = self._versions.get(version_id)
        if version is None:  # versions never change, so a cache entry never goes stale
            version = self._versions[version_id] = self.loops.version(version_id)
        return version

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


BATCH = 500  # runs per transaction, at most


def _drain(items: queue.Queue[Any]) -> list[Any] | None:
    """The next item and whatever else is waiting (up to BATCH); None once closed."""
    first = items.get()
    if first is None:
        return None
    batch = [first]
    while len(batch) < BATCH:
        try:
            item = items.get_nowait()
        except queue.Empty:
            break
        if item is None:
            items.put(None)  # seen again by the next _drain, after this batch
            break
        batch.append(item)
    return batch


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    """A run's identity, as the `extra` of a log line about it."""
    return {"run": record["id"], "project": record["project"], "loop": record["loop"],
            "event": record["event"], "trigger": record["trigger"], "attempt": record["attempt"]}


def _log_end(final: dict[str, Any]) -> None:
    """How a run ended: DEBUG for a success (there are many), WARNING for a failure or timeout
    (an expiry was said when it happened)."""
    status = final["status"]
    if status == "expired":
        return
    level = logging.DEBUG if status == "success" else logging.WARNING
    if not log.isEnabledFor(level):
        return
    error = final.get("error") or {}
    why = f": {error.get('type')}: {error.get('message')}" if error else ""
    log.log(level, "run %s of %s/%s %s in %s ms%s", final["id"], final["project"],
            final["loop"], status, final.get("duration_ms"), why,
            extra={**_fields(final), "status": status, "duration_ms": final.get("duration_ms")})


def _executors(pool: Callable[[], JobRunner], hosts: HostFactory | None, steps: dict[str, Step],
               threads: ThreadPoolExecutor, http: httpx.Client, clock: Clock
               ) -> dict[str, Executor]:
    """Executor by `executor_key`: every runtime runs in a worker, a URL target and the
    service's own steps on a service thread."""
    worker = WorkerExecutor(pool, hosts)
    table: dict[str, Executor] = dict.fromkeys(RUNTIMES, worker)
    table[TARGET] = TargetExecutor(threads, http, clock)
    table.update({name: StepExecutor(threads, step) for name, step in steps.items()})
    return table


def _outcome(done: Future[RunResult]) -> RunResult:
    try:
        return done.result()
    except Exception as exc:
        return RunResult.failed("InternalError", f"tsq could not run the handler: {exc}")


def _error_line(result: RunResult) -> str:
    error = result.error or {}
    stack = error.get("stack") or ""
    head = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return stack if stack.startswith(head) else f"{head}\n{stack}".rstrip()
