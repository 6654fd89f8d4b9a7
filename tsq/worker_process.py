"""The worker process: receives jobs on a pipe, runs them, sends back log lines and outcomes.

User code runs only here, never in the API process. The process caps its own data segment
(RLIMIT_DATA: V8 then fails a huge ArrayBuffer inside JavaScript instead of the machine paging)
and is otherwise disposable: the supervisor (`tsq.worker_pool`) kills it at a run's deadline or
memory ceiling and starts another.
"""

from __future__ import annotations

import os
import resource
import select
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

import psutil

from tsq import heap
from tsq.errors import CompileError, HostError
from tsq.hostcalls import HostAnswer
from tsq.parentage import die_with_parent
from tsq.runtimes import create_runtime
from tsq.runtimes.base import (
    Limits,
    LogLine,
    Program,
    RunContext,
    RunResult,
    Runtime,
)

__all__ = ["Job", "Turns", "WorkerOptions", "worker_main"]

PROGRAM_CACHE_SIZE = 4096  # handlers; a prepared JS handler is its rewritten source


@dataclass(frozen=True)
class Job:
    run_id: str
    runtime: str
    version_id: str
    source: str
    file_name: str
    event: dict[str, Any]
    env: dict[str, str]
    limits: Limits
    info: dict[str, Any] = field(default_factory=dict)


# A job crosses the pipe as a tuple of plain values: unpickling a dataclass looks its class up
# by name and builds it field by field, a tenth of a no-op run's time in the worker. The handler's
# source goes with a version's first job to a process only; both ends remember the last
# KNOWN_VERSIONS versions sent, in the same order, so they agree on which the worker holds.
KNOWN_VERSIONS = PROGRAM_CACHE_SIZE
WireJob = tuple[str, str, str, str | None, str, dict[str, Any], dict[str, str], float, int,
                dict[str, Any]]


class KnownVersions:
    """The versions whose source a worker process holds, least recently used first: kept the
    same way by the supervisor (which sends) and the worker (which receives)."""

    def __init__(self) -> None:
        self.sources: OrderedDict[str, str] = OrderedDict()

    def sent(self, job: Job) -> WireJob:
        """The job as it crosses: without its source if the worker holds it."""
        known = job.version_id in self.sources
        self._use(job.version_id, job.source)
        return (job.run_id, job.runtime, job.version_id, None if known else job.source,
                job.file_name, job.event, job.env, job.limits.timeout_s, job.limits.memory_mb,
                job.info)

    def received(self, wire: WireJob) -> Job:
        run_id, runtime, version_id, source, file_name, event, env, timeout_s, memory_mb, \
            info = wire
        if source is None:
            source = self.sources[version_id]
        self._use(version_id, source)
        return Job(run_id, runtime, version_id, source, file_name, event, env,
                   Limits(timeout_s, memory_mb), info)

    def _use(self, version_id: str, source: str) -> None:
        self.sources[version_id] = source
        self.sources.move_to_end(version_id)
        if len(self.sources) > KNOWN_VERSIONS:
            self.sources.popitem(last=False)


class Turns:
    """Whether a job sent to a process behind another still starts there. A slot takes back the
    job it sent behind one that runs long, for a free worker to run; the process starts a job
    only if it was not taken back, and a job it started cannot be. Both ends number the jobs
    sent to the process in order; one word they share says which started last (n) or was taken
    back (-n), and changes under its lock."""

    def __init__(self, context: BaseContext) -> None:
        self._word = context.Value("q", 0)

    def start(self, number: int) -> bool:
        """In the process: whether job `number` starts (False: its slot took it back)."""
        with self._word.get_lock():
            if self._word.value == -number:
                return False
            self._word.value = number
            return True

    def take_back(self, number: int) -> bool:
        """In the supervisor: whether job `number` was taken back before the process started
        it (the process starts jobs in order, so it has started it if it started any later)."""
        with self._word.get_lock():
            if self._word.value >= number:
                return False
            self._word.value = -number
            return True


@dataclass(frozen=True)
class WorkerOptions:
    memory_mb: int  # the worker's data segment cap
    max_result_bytes: int


def worker_main(conn: Connection, options: WorkerOptions, turns: Turns) -> None:
    die_with_parent()
    heap.keep_large_blocks()  # the points a run reads reuse the heap, not fresh pages
    worker = _Worker(conn, options)
    _cap_data_segment(options.memory_mb)  # after V8's start-up, which reserves ~1.7 GB
    conn.send(("ready", None))
    known = KnownVersions()
    number = 0  # of the jobs received, as the supervisor counts those it sent
    while True:
        try:
            wire: WireJob | None = worker.next_message()
        except (EOFError, KeyboardInterrupt):
            return
        if wire is None:
            return
        number += 1
        job = known.received(wire)  # its source is kept even if it does not start
        if not turns.start(number):
            continue  # taken back by its slot, for a free worker to run
        conn.send(("done", worker.run(job).to_wire()))
        # Linux wakes a pipe's reader on the writer's core, expecting the writer to sleep; this
        # one goes on to make the next run's context (0.6 ms), and the supervisor's thread
        # waited behind it for the outcome: 0.7 ms from the send to its read, 0.1 ms after a
        # yield, which lets the woken thread run first. Not when the next job is here already:
        # under load the next run comes first (the scheduler benchmark's starts were no sooner
        # with the yield, and its service took more CPU).
        if not worker.has_message():
            os.sched_yield()
        worker.idle()


class _Worker:
    def __init__(self, conn: Connection, options: WorkerOptions) -> None:
        self.conn = conn
        self.options = options
        # The supervisor sends the next job while this one runs (tsq.worker_pool), so it may
        # come before the answer to a host call: kept here until this run ends.
        self.waiting: deque[WireJob | None] = deque()
        # One poll object for the pipe, as the supervisor keeps (Connection.poll builds a
        # selector per call, and `has_message` asks once a run).
        self._poller = select.poll()
        self._poller.register(conn.fileno(), select.POLLIN)
        self.runtimes: dict[str, Runtime] = {}
        self.programs: OrderedDict[str, Program] = OrderedDict()
        self.runtime("js")  # start the V8 instance pool on the main thread, before any run

    def run(self, job: Job) -> RunResult:
        try:
            began = time.perf_counter()
            program = self.program(job)  # compiled on a worker's first run of the version
            compiled_ms = (time.perf_counter() - began) * 1000
            result = program.run(RunContext(job.event, job.env, job.limits, self.log, job.info,
                                            self.host))
            return replace(result, init_ms=(result.init_ms or 0.0) + compiled_ms)
        except CompileError as exc:
            return RunResult.failed("CompileError", exc.message)
        except Exception as exc:  # a fault of tsq, not of the handler: say so, keep the worker
            return RunResult.failed("InternalError", f"tsq could not run the handler: {exc!r}")

    def idle(self) -> None:
        """Between runs, after the outcome is sent: each runtime prepares its next run."""
        for runtime in self.runtimes.values():
            runtime.idle()

    def log(self, lines: list[LogLine]) -> None:
        self.conn.send(("log", lines))

    def host(self, op: str, args: dict[str, Any], arrays: list[Any]) -> HostAnswer:
        """A host call, answered by the supervisor (which holds the store) over the pipe; a
        failed one comes back as its rejection (tsq.hostcalls.rejection)."""
        self.conn.send(("host", (op, args, arrays)))
        while not _is_answer(message := self.conn.recv()):
            self.waiting.append(message)
        kind, payload = message
        if kind == "error":
            raise HostError(*payload)
        answer: HostAnswer = payload
        return answer

    def has_message(self) -> bool:
        """Whether a message waits (the next job, sent behind the last one)."""
        return bool(self.waiting) or bool(self._poller.poll(0))

    def next_message(self) -> WireJob | None:
        """The next job (None: stop), one that came during the last run first."""
        return self.waiting.popleft() if self.waiting else self.conn.recv()

    def runtime(self, name: str) -> Runtime:
        if name not in self.runtimes:
            self.runtimes[name] = create_runtime(
                name, max_result_bytes=self.options.max_result_bytes)
            self.runtimes[name].warm(runs=True)
        return self.runtimes[name]

    def program(self, job: Job) -> Program:
        """The prepared program of `job`'s handler, cached (least recently used out). Keyed by
        the code, not the version: loops deployed from one handler file share one program."""
        programs = self.programs
        key = f"{job.runtime}:{job.file_name}:{job.source}"
        program = programs.get(key)
        if program is None:
            program = self.runtime(job.runtime).prepare(job.source, job.file_name)
            programs[key] = program
            if len(programs) > PROGRAM_CACHE_SIZE:
                programs.popitem(last=False)
        programs.move_to_end(key)
        return program


def _is_answer(message: Any) -> bool:
    """Whether `message` answers a host call (`("answer" | "error", payload)`), not a job."""
    return isinstance(message, tuple) and len(message) == 2


def _cap_data_segment(memory_mb: int) -> None:
    """Let the data segment grow `memory_mb` past its size now (VmData counts the address
    space V8 reserved, not only what it uses)."""
    limit = int(psutil.Process().memory_info().data) + (memory_mb << 20)
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))

