"""The worker supervisor: a fixed number of worker processes, each driven by one slot thread.

A slot takes the next job, hands it to its process and watches it: log lines are forwarded as
they arrive; at the run's deadline (its timeout plus a grace period) or over its memory ceiling
the process is killed, the run is recorded as `timeout` or `failed`, and a new process takes its
place. A process that dies by itself (a fatal V8 allocation, a signal) is reported the same way.
The service keeps serving whatever the handler does. A run cancelled while it runs is stopped
the same way: its process is killed, and the slot's next job starts a new one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import queue
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from typing import Any

import psutil

from tsq.errors import WorkerError
from tsq.hostcalls import Host, rejection, unavailable
from tsq.outcomes import RunResult
from tsq.runlog import LogLine
from tsq.worker_process import Job, KnownVersions, Turns, WorkerOptions, worker_main

__all__ = ["JobListener", "WorkerPool", "start_ahead"]

log = logging.getLogger(__name__)

GRACE_S = 2.0  # past the handler's own timeout, before the process is killed
WATCH_INTERVAL_S = 0.05
START_TIMEOUT_S = 60.0
RSS_SLACK_MB = 64
EXTRA_LINGER_S = 10.0  # an extra slot's process is kept this long for the next step
# A job sent behind one that has run this long is taken back for the next free slot (see
# WorkerPool): runs take milliseconds, and one that does not may take its whole timeout.
BEHIND_WAIT_S = 0.1
# A worker grown this much since it started is replaced between two runs. V8 under stpyv8 does
# not give back all of a dropped context's memory (about 60 KB per no-op run, more for runs
# that allocate), so a long-lived worker is renewed before it nears its data segment cap.
RENEW_GROWTH_MB = 256
# Reading a worker's size costs a /proc read, so it is read at most this often between runs
# (no-op runs add ~60 KB each; a run that allocates much is capped by RLIMIT_DATA meanwhile).
RENEW_CHECK_S = 0.25


@dataclass
class JobListener:
    started: Callable[[Job], None]
    logs: Callable[[Job, list[LogLine]], None]
    host: Host | None = None  # answers the handler's service host calls


class _Process:
    """One worker process and its end of the pipe. It is started by its slot's thread (or, by
    `start_ahead`, by a caller's main thread), and it dies when that thread ends
    (PR_SET_PDEATHSIG), the supervisor's kill -9 included."""

    def __init__(self, options: WorkerOptions, *, wait: bool = True) -> None:
        self.options = options
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.turns = Turns(context)
        self.sent = 0  # jobs sent, which the process numbers the same way
        self.process: BaseProcess = context.Process(
            target=worker_main, args=(child, options, self.turns), name="tsq-worker",
            daemon=True)
        self.process.start()
        child.close()
        # One poll object for the life of the pipe: Connection.poll builds a selector per call,
        # and a slot waits on the pipe once or more per run.
        self._poller = select.poll()
        self._poller.register(self.conn.fileno(), select.POLLIN)
        self.known = KnownVersions()  # the sources this process holds
        self.ready = False
        self.renew = False  # grown too much: replaced once the jobs sent to it have run
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until the process has started (V8 included) and said so."""
        if self.ready:
            return
        if not self.conn.poll(START_TIMEOUT_S):
            self.kill()
            raise WorkerError("a worker process did not start within 60 s")
        try:
            self.conn.recv()
        except EOFError:
            raise WorkerError(f"a worker process exited at start "
                              f"(exit code {self.process.exitcode})") from None
        self.started = self.memory()
        self.baseline_rss = self.started[0]
        self.checked_at = time.monotonic()
        self.ready = True

    def send(self, job: Job) -> None:
        self.sent += 1
        self.conn.send(self.known.sent(job))

    def answered(self, within_s: float) -> bool:
        """Whether the process wrote to the pipe (or closed it) within `within_s`."""
        return bool(self._poller.poll(max(0.0, within_s) * 1000))

    def rss(self) -> int:
        return self.memory()[0]

    def memory(self) -> tuple[int, int]:
        """The process's resident size and data segment (VmData, what RLIMIT_DATA caps)."""
        try:
            info = psutil.Process(self.process.pid).memory_info()
        except psutil.Error:
            return 0, 0
        return int(info.rss), int(getattr(info, "data", 0))

    def grown_too_much(self) -> bool:
        """Whether the process should be renewed (once it has run the jobs sent to it); else
        its size now is the next runs' baseline (a run's memory ceiling counts from where the
        run starts)."""
        now = time.monotonic()
        if self.renew or now - self.checked_at < RENEW_CHECK_S:
            return self.renew
        self.checked_at = now
        rss, data = self.memory()
        if max(rss - self.started[0], data - self.started[1]) > RENEW_GROWTH_MB << 20:
            self.renew = True
            return True
        self.baseline_rss = rss
        return False

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.kill()

    def death_reason(self) -> str:
        self.process.join(timeout=1)
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"signal {signal.Signals(-code).name}"
        return f"exit code {code}"


_ahead: list[_Process] = []  # started by start_ahead, for the first pool that fits
_ahead_lock = threading.Lock()


def start_ahead(options: WorkerOptions) -> None:
    """Start one worker process now and return at once; the first pool with the same options
    takes it. A short-lived caller (`tsq run` without a server) calls this before loading the
    rest of tsq, so the worker's start-up (a Python process, V8) overlaps its own. The calling
    thread must outlive the worker, as a CLI call's main thread does."""
    with _ahead_lock:
        if not _ahead:
            _ahead.append(_Process(options, wait=False))


def _started_ahead(options: WorkerOptions) -> _Process | None:
    with _ahead_lock:
        for index, process in enumerate(_ahead):
            if process.options == options:
                return _ahead.pop(index)
    return None


@dataclass
class _Behind:
    """A job sent to a slot's process behind the one it runs (see WorkerPool)."""

    job: Job
    future: Future[RunResult]
    listener: JobListener
    process: _Process  # where it was sent
    number: int  # among the jobs sent to that process
    sent_at: float  # time.monotonic()
    cancelled: bool = False  # cancelled before its turn: stopped when it comes


class _Slot:
    """One place a job runs: a thread, and the worker process it drives (started on demand).
    Whoever runs a job in it holds its lock: its own thread, or a caller running a job on its
    own thread while the slot is idle (`WorkerPool.run_now`)."""

    def __init__(self) -> None:
        self.process: _Process | None = None
        self.lock = threading.Lock()
        self.running: _Process | None = None  # the process its current job was sent to
        self.cancelled = False  # its current job was cancelled
        self.behind: _Behind | None = None


class WorkerPool:
    """A fixed number of slots, plus extra ones while runs wait on other runs.

    A run that calls another loop (`Loop.run`) holds its worker until the step it waits for ends;
    meanwhile its slot lends its place (`lending`) and an extra slot serves the queue, so a
    pipeline never waits for a worker its own steps are holding. An extra slot lingers a while
    after the lending ends (pipelines call several steps in a row) and then stops its process.

    A base slot sends its process the next waiting job as soon as the current one is sent, so
    the process starts it the moment it reports the current one: otherwise it idled until the
    slot's thread, in a service busy with other threads, got the GIL back to send it (half of
    a worker's time at 1,000 runs a second). The job behind is only in the pipe: if the
    process is killed or dies before it reports the current job, the job behind never started
    and goes to the replacement; a job cancelled before its turn is stopped as a running one
    is, when its turn comes. If the current job is still running BEHIND_WAIT_S later, the slot
    takes the job behind back (unless its process has just started it) and puts it first in
    the queue: it must not wait out a long run while other slots are free.
    """

    def __init__(self, size: int, options: WorkerOptions, *, start_now: bool = False) -> None:
        """`start_now`: each slot starts its worker at once (a server), not at its first job."""
        self.options = options
        self._start_now = start_now
        self._jobs: queue.Queue[tuple[Job, Future[RunResult], JobListener] | None] = queue.Queue()
        self._slots = [_Slot() for _ in range(max(1, size))]
        self._lock = threading.Lock()
        self._lent = 0  # slots waiting on another run
        self._running: dict[str, _Slot] = {}  # run id → the slot running it
        # Jobs taken back from behind another, waiting again; their futures are running.
        self._taken_back: dict[str, Future[RunResult]] = {}
        self._extra = 0  # extra slots serving in their place
        self._busy = 0  # slots running a job now
        self._threads = [threading.Thread(target=self._serve, args=(slot,), daemon=True,
                                          name=f"tsq-slot-{index}")
                         for index, slot in enumerate(self._slots)]
        self._closed = False
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job, listener: JobListener) -> Future[RunResult]:
        if self._closed:
            raise WorkerError("the worker pool is shut down")
        future: Future[RunResult] = Future()
        self._jobs.put((job, future, listener))
        return future

    @contextlib.contextmanager
    def lending(self) -> Iterator[None]:
        """While the calling slot waits on another run, an extra slot serves in its place."""
        with self._lock:
            self._lent += 1
            grow = self._extra < self._lent
            if grow:
                self._extra += 1
        if grow:
            threading.Thread(target=self._serve_extra, daemon=True,
                             name="tsq-slot-extra").start()
        try:
            yield
        finally:
            with self._lock:
                self._lent -= 1

    def cancel(self, run_id: str) -> bool:
        """Stop the run `run_id` in the slot that runs it: its worker process is killed (a
        handler spinning in V8 stops only so) and the run ends `cancelled`. False if no slot
        has taken it (a job still waiting is cancelled through its future)."""
        with self._lock:  # the slot cannot move on to its next job meanwhile
            waiting = self._taken_back.pop(run_id, None)
            slot = self._running.get(run_id)
            if waiting is None and slot is None:
                return False
            if slot is not None and slot.behind is not None \
                    and slot.behind.job.run_id == run_id:
                slot.behind.cancelled = True
                return True
            if slot is not None:
                slot.cancelled = True
                if slot.running is not None:
                    slot.running.process.kill()  # the slot's watch sees it die, and reports
        if waiting is not None:  # no slot takes it now (see `_starts`)
            waiting.set_result(RunResult.never_started())
        return True

    def pids(self) -> list[int]:
        """The ids of the base slots' live worker processes."""
        return [slot.process.process.pid for slot in self._slots
                if slot.process is not None and slot.process.process.pid is not None
                and slot.process.process.is_alive()]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        for slot in self._slots:
            if slot.process is not None:
                slot.process.stop()

    def run_now(self, job: Job, listener: JobListener) -> RunResult | None:
        """Run `job` on the calling thread in an idle slot's worker, or None if every slot is
        busy. A caller that waits for the outcome anyway (a run by hand) saves the hand-offs
        to a slot thread and back, a quarter of a no-op run's time."""
        if self._closed:
            return None
        for slot in self._slots:
            if slot.lock.acquire(blocking=False):
                try:
                    # Only a worker its slot's thread started: a process dies with the thread
                    # that started it (PR_SET_PDEATHSIG), and the caller's may end any time.
                    if slot.process is None or not slot.process.process.is_alive():
                        continue
                    future: Future[RunResult] = Future()
                    self._take(slot, job, future, listener, borrowed=True)
                    return future.result()
                finally:
                    slot.lock.release()
        return None

    def _serve(self, slot: _Slot) -> None:
        if self._start_now:
            with slot.lock, contextlib.suppress(WorkerError):  # else it fails its first job
                self._process(slot)
        while (item := self._jobs.get()) is not None:
            if not slot.lock.acquire(blocking=False):
                # A caller runs a job in this slot's worker (`run_now`), maybe one waiting
                # for this very job (`Loop.run`): another slot takes it, or this one once free.
                self._jobs.put(item)
                with slot.lock:
                    continue
            try:
                self._take(slot, *item, send_next=True)
            finally:
                slot.lock.release()

    def _serve_extra(self) -> None:
        slot, idle_since = _Slot(), time.monotonic()
        try:
            while not self._closed:
                try:
                    item = self._jobs.get(timeout=WATCH_INTERVAL_S * 4)
                except queue.Empty:
                    with self._lock:
                        if (self._extra > self._lent
                                and time.monotonic() - idle_since > EXTRA_LINGER_S):
                            self._extra -= 1
                            return
                    continue
                if item is None:
                    self._jobs.put(None)  # the pool is closing: the sentinel is a base slot's
                    return
                self._take(slot, *item)
                idle_since = time.monotonic()
        finally:
            if slot.process is not None:
                slot.process.stop()

    def _take(self, slot: _Slot, job: Job, future: Future[RunResult],
              listener: JobListener, *, borrowed: bool = False, send_next: bool = False
              ) -> None:
        """Run `job`, then (with `send_next`) each job sent behind it in turn."""
        if not self._starts(job, future):
            return
        self._finish(future, functools.partial(self._run, slot, job, listener,
                                               borrowed=borrowed, send_next=send_next))
        while True:
            with self._lock:  # a cancel of the job behind is kept, whenever it comes
                behind, slot.behind = slot.behind, None
                if behind is None:
                    return
                slot.cancelled = behind.cancelled
            self._finish(behind.future, functools.partial(
                self._run, slot, behind.job, behind.listener, sent_to=behind.process,
                send_next=send_next))

    def _finish(self, future: Future[RunResult], run: Callable[[], RunResult]) -> None:
        self._count_busy(1)
        try:
            future.set_result(run())
        except Exception as exc:  # never let a slot die: the run fails, the slot goes on
            future.set_result(RunResult.failed("InternalError", f"tsq worker failure: {exc}"))
        finally:
            self._count_busy(-1)

    def _count_busy(self, change: int) -> None:
        with self._lock:
            self._busy += change

    def gauges(self) -> dict[str, int]:
        """How the pool stands now, for tsq.metrics."""
        with self._lock:
            busy, extra = self._busy, self._extra
        return {"size": len(self._slots), "alive": len(self.pids()), "busy": busy,
                "extra": extra}

    def _process(self, slot: _Slot) -> _Process:
        if slot.process is None or not slot.process.process.is_alive():
            slot.process = _started_ahead(self.options) or _Process(self.options)
            slot.process.wait_ready()
        return slot.process

    def _run(self, slot: _Slot, job: Job, listener: JobListener, *,
             borrowed: bool = False, sent_to: _Process | None = None, send_next: bool = False
             ) -> RunResult:
        """Run `job` in the slot's worker; `borrowed`: on a caller's thread (`run_now`), which
        leaves a replacement worker to the slot's own thread; `sent_to`: the process it was
        sent to behind another job. `cancel` finds it meanwhile."""
        with self._lock:
            self._running[job.run_id] = slot
            if sent_to is None:  # one sent behind keeps a cancel that came before its turn
                slot.cancelled = False
        try:
            return self._run_in(slot, job, listener, borrowed, sent_to, send_next)
        finally:
            with self._lock:
                self._running.pop(job.run_id, None)
                slot.running = None

    def _run_in(self, slot: _Slot, job: Job, listener: JobListener, borrowed: bool,
                sent_to: _Process | None, send_next: bool) -> RunResult:
        began = time.perf_counter()
        # A job sent behind another is in its process already, unless the slot replaced that
        # process meanwhile (killed for the job ahead): then it never started, and goes to the
        # new one. A process that died by itself may have started it, so it is not sent again
        # (its watch reports the death).
        if sent_to is None or sent_to is not slot.process:
            process = self._process(slot)  # a cold start when the slot had no live process
            if not self._hand_over(slot, process):
                return RunResult.cancelled("before its handler started")
            process.send(job)
        else:
            process = sent_to
            if not self._hand_over(slot, process):  # it starts as its turn comes: stop it
                process.kill()
                slot.process = self._replacement()
                return RunResult.cancelled("as it started; its worker process was stopped "
                                           "and is replaced")
        started_ms = (time.perf_counter() - began) * 1000
        listener.started(job)
        if send_next and not process.grown_too_much():
            self._send_next(slot, process)
        # A handler stopped at its deadline by the worker's watchdog leaves a healthy process
        # (V8 stops even a spin after an `await`); the process is killed only past the grace.
        watch = _Watch(process, job, listener)
        result = watch.until_done(lambda: self._take_back_if_late(slot, process))
        if self._was_cancelled(slot):  # killed by `cancel`: the next job starts a new process
            slot.process = None
            log.info("worker process %s stopped: run %s was cancelled", process.process.pid,
                     job.run_id, extra={"pid": process.process.pid, "run": job.run_id})
            return RunResult.cancelled("while it ran; its worker process was stopped and is "
                                       "replaced")
        if result.init_ms is not None:
            result = replace(result, init_ms=result.init_ms + started_ms)
        if watch.reported:  # the process answered, so it is alive: only its size may matter
            if slot.behind is None and process.grown_too_much():
                log.info("worker process %s grew past %s MB; starting a new one",
                         process.process.pid, RENEW_GROWTH_MB,
                         extra={"pid": process.process.pid})
                process.stop()
                slot.process = None if borrowed else self._replacement()
        else:  # killed at the deadline or over memory, or it died
            log.warning("worker process %s ended (%s) after run %s; starting a new one",
                        process.process.pid, process.death_reason(), job.run_id,
                        extra={"pid": process.process.pid, "run": job.run_id,
                               "status": result.status.value})
            slot.process = None if borrowed else self._replacement()
        return result

    def _send_next(self, slot: _Slot, process: _Process) -> None:
        """Send `process` the next waiting job, if there is one, behind the one it runs."""
        try:
            item = self._jobs.get_nowait()
        except queue.Empty:
            return
        if item is None:
            self._jobs.put(None)  # the pool is closing: the sentinel is a slot thread's
            return
        job, future, listener = item
        if not self._starts(job, future):
            return
        with self._lock:
            slot.behind = _Behind(job, future, listener, process, process.sent + 1,
                                  time.monotonic())
            self._running[job.run_id] = slot
        with contextlib.suppress(OSError):  # the process is gone: it goes to the replacement
            process.send(job)

    def _starts(self, job: Job, future: Future[RunResult]) -> bool:
        """Whether a job taken from the queue starts (False: cancelled while it waited)."""
        with self._lock:
            if self._taken_back.pop(job.run_id, None) is not None:
                return True  # taken back from behind another (its future is running)
        if future.running() or (future.done() and not future.cancelled()):
            return False  # taken back, then cancelled by `cancel`
        return future.set_running_or_notify_cancel()

    def _take_back_if_late(self, slot: _Slot, process: _Process) -> None:
        """Put the job behind `process`'s current one first in the queue again if it has
        waited BEHIND_WAIT_S and the process has not started it."""
        behind = slot.behind
        if behind is None or behind.process is not process \
                or time.monotonic() - behind.sent_at < BEHIND_WAIT_S \
                or not process.turns.take_back(behind.number):
            return
        with self._lock:
            slot.behind = None
            self._running.pop(behind.job.run_id, None)
            if not behind.cancelled:
                self._taken_back[behind.job.run_id] = behind.future
        if behind.cancelled:
            behind.future.set_result(RunResult.never_started())
            return
        with self._jobs.mutex:  # first: it has waited longer than any job in the queue
            self._jobs.queue.appendleft((behind.job, behind.future, behind.listener))
            self._jobs.unfinished_tasks += 1
            self._jobs.not_empty.notify()

    def _hand_over(self, slot: _Slot, process: _Process) -> bool:
        """Let `cancel` kill `process` from now on; False if the job was cancelled already."""
        with self._lock:
            if slot.cancelled:
                return False
            slot.running = process
            return True

    def _was_cancelled(self, slot: _Slot) -> bool:
        with self._lock:
            return slot.cancelled

    def _replacement(self) -> _Process | None:
        try:
            return _Process(self.options)
        except WorkerError:
            return None  # started again on the next job, where the error reaches the run


class _Watch:
    """Follows one job in one process until it reports, dies, times out or grows too big."""

    def __init__(self, process: _Process, job: Job, listener: JobListener) -> None:
        self.process = process
        self.job = job
        self.listener = listener
        self.deadline = time.monotonic() + job.limits.timeout_s + GRACE_S
        ceiling_mb = job.limits.memory_mb * 3 // 2 + RSS_SLACK_MB
        self.rss_ceiling = process.baseline_rss + (ceiling_mb << 20)
        self.reported = False  # the outcome came from the process itself

    def until_done(self, between: Callable[[], None]) -> RunResult:
        """The job's outcome; `between` is called each time the watch wakes."""
        while True:
            between()
            wait = min(WATCH_INTERVAL_S, self.deadline - time.monotonic())
            if wait <= 0:
                self.process.kill()
                return self.killed_at_deadline()
            try:
                if self.process.answered(wait):
                    message = self.process.conn.recv()
                    outcome = self.handle(message)
                    if outcome is not None:
                        return outcome
                elif self.process.rss() > self.rss_ceiling:
                    self.process.kill()
                    return self.killed_for_memory()
            except (EOFError, OSError):
                return self.died()

    def handle(self, message: tuple[str, Any]) -> RunResult | None:
        kind, payload = message
        if kind == "log":
            self.listener.logs(self.job, payload)
            return None
        if kind == "host":
            self.process.conn.send(self.answer(*payload))
            return None
        self.reported = True
        return RunResult.from_wire(payload)

    def answer(self, op: str, args: dict[str, Any], arrays: list[Any]) -> tuple[str, Any]:
        try:
            if self.listener.host is None:
                raise unavailable(op)
            return "answer", self.listener.host(op, args, arrays)
        except Exception as exc:  # even a failing store: the handler hears it, the slot goes on
            return "error", rejection(exc, op)

    def killed_at_deadline(self) -> RunResult:
        return RunResult.timed_out(self.job.limits.timeout_s, " and was stopped")

    def killed_for_memory(self) -> RunResult:
        return RunResult.over_memory(self.job.limits.memory_mb,
                                     "(typed arrays and buffers count too) and was stopped ")

    def died(self) -> RunResult:
        reason = self.process.death_reason()
        return RunResult.failed(
            "WorkerCrashed",
            f"the worker process running the handler died ({reason}); this usually means the "
            f"handler allocated more memory than the worker may use",
        )
