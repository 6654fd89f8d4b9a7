"""How a run is carried out, once the dispatcher has claimed it: one `Executor` protocol, and one
implementation for each way there is.

| executor | runs | where |
|---|---|---|
| `WorkerExecutor` | a handler in its runtime (each row of `tsq.runtimes.RUNTIMES`) | a worker |
| `TargetExecutor` | an event's `target:` URL, as Metronome's worker calls it | a service thread |
| `StepExecutor` | a step the service does itself (`retention:`) | a service thread |
| `GuardedExecutor` | another executor's runs, unless a check ends a run first | (theirs) |

The dispatcher picks one by table (`executor_key`), never by an if-chain: a URL target wins,
else the loop's runtime names it. What runs in the service takes a service thread's slot, not a
worker's, so a burst of webhooks never waits behind handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from tsq.hostcalls import Host
from tsq.isotime import format_ms
from tsq.loopstore import StoredVersion
from tsq.model import LoopSpec
from tsq.outcomes import RunResult
from tsq.run import Run
from tsq.runlog import LogLine
from tsq.runtimes.base import Limits
from tsq.targets import call_target
from tsq.worker_pool import GRACE_S, JobListener
from tsq.worker_process import Job

__all__ = [
    "TARGET",
    "Execution",
    "Executor",
    "Guard",
    "GuardedExecutor",
    "HostFactory",
    "JobRunner",
    "Step",
    "StepExecutor",
    "TargetExecutor",
    "WorkerExecutor",
    "event_payload",
    "executor_key",
    "iso",
]

TARGET = "target"  # the key of the URL-target executor; the others are runtime names
# (run, its loop version, seconds it may take) → its host: the version names its connector
HostFactory = Callable[[Run, StoredVersion, float], Host]
# A step the service runs itself: (run, version) → outcome, log lines
Step = Callable[[Run, StoredVersion], tuple[RunResult, list[LogLine]]]
# A check before a run: (run, version) → how it ends without running, or None to run it
Guard = Callable[[Run, StoredVersion], tuple[RunResult, list[LogLine]] | None]


@dataclass(frozen=True)
class Execution:
    """One claimed run, as an executor gets it."""

    record: Run
    version: StoredVersion
    event: dict[str, Any]  # what the handler receives (event_payload)
    log: Callable[[list[LogLine]], None]  # where its log lines go as they come


class Executor(Protocol):
    in_service: bool  # runs in this process, on a service thread (else in a worker)

    def submit(self, run: Execution) -> Future[RunResult]: ...


class JobRunner(Protocol):
    """What runs handlers: the worker pool (or a test's scripted stand-in)."""

    def submit(self, job: Job, listener: JobListener) -> Future[RunResult]: ...

    def lending(self) -> AbstractContextManager[None]:
        """While a handler waits for a step it called, its slot serves others."""
        ...

    def cancel(self, run_id: str) -> bool:
        """Stop run `run_id` where it runs; False if no worker has it (yet, or any more)."""
        ...

    def close(self) -> None: ...


def executor_key(spec: LoopSpec, event: str) -> str:
    return TARGET if spec.target_of(event) is not None else spec.runtime


def event_payload(record: Run, version: StoredVersion) -> dict[str, Any]:
    """The `event` a handler receives: times as ISO strings and epoch milliseconds."""
    scheduled = record.when_ms
    window = None
    if record.window is not None:
        start, end = record.window
        window = {"start": iso(start), "end": iso(end), "startMs": start, "endMs": end}
    epsilon = record.epsilon_ms
    return {
        "loop": record.loop, "name": record.event, "params": record.params,
        "scheduled": iso(scheduled), "scheduledMs": scheduled, "window": window,
        "epsilon": epsilon / 1000 if epsilon is not None else None,
        "attempt": record.attempt, "trigger": record.trigger, "version": version.id,
        "runId": record.id,
    }


def iso(ms: int) -> str:
    return format_ms(ms, "milliseconds")


class WorkerExecutor:
    in_service = False

    def __init__(self, workers: Callable[[], JobRunner], hosts: HostFactory | None) -> None:
        self.workers = workers  # called per run: the pool starts on first use
        self.hosts = hosts

    def submit(self, run: Execution) -> Future[RunResult]:
        spec, record = run.version.spec, run.record
        job = Job(
            run_id=record.id, runtime=spec.runtime, version_id=run.version.id,
            source=run.version.source, file_name=spec.handler, event=run.event,
            env=spec.environment, limits=Limits(spec.timeout_s, spec.memory_mb),
            info={"loop": spec.name, "project": spec.project, "version": run.version.id,
                  "runId": record.id, "attempt": record.attempt},
        )
        host = self.hosts(record, run.version, spec.timeout_s + GRACE_S) if self.hosts else None
        return self.workers().submit(job, JobListener(
            started=lambda _job: None, logs=lambda _job, lines: run.log(lines), host=host))


class TargetExecutor:
    in_service = True

    def __init__(self, threads: ThreadPoolExecutor, http: httpx.Client,
                 clock: Callable[[], float]) -> None:
        self.threads = threads
        self.http = http
        self.clock = clock

    def submit(self, run: Execution) -> Future[RunResult]:
        spec = run.version.spec
        url = spec.target_of(run.record.event)
        assert url is not None  # executor_key chose this executor because there is one
        return self.threads.submit(call_target, self.http, url, run.event, spec.timeout_s,
                                   self.clock())


class StepExecutor:
    in_service = True

    def __init__(self, threads: ThreadPoolExecutor, step: Step) -> None:
        self.threads = threads
        self.step = step

    def submit(self, run: Execution) -> Future[RunResult]:
        return self.threads.submit(self._run, run)

    def _run(self, run: Execution) -> RunResult:
        result, lines = self.step(run.record, run.version)
        run.log(lines)
        return result


class GuardedExecutor:
    """Runs what `inner` runs, unless `guard` ends a run first (a rollup whose source retention
    trimmed, tsq.trims): such a run takes no worker and ends as the guard says."""

    def __init__(self, inner: Executor, guard: Guard) -> None:
        self.inner = inner
        self.guard = guard
        self.in_service = inner.in_service

    def submit(self, run: Execution) -> Future[RunResult]:
        ended = self.guard(run.record, run.version)
        if ended is None:
            return self.inner.submit(run)
        result, lines = ended
        run.log(lines)
        future: Future[RunResult] = Future()
        future.set_result(result)
        return future
