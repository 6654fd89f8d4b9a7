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

import functools
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tsq.hostcalls import Host, HostAnswer
from tsq.isotime import format_ms
from tsq.loopstore import StoredVersion
from tsq.model import LoopSpec
from tsq.outcomes import RunResult
from tsq.run import Run
from tsq.runlog import LogLine
from tsq.runtimes.base import Limits
from tsq.worker_pool import GRACE_S, JobListener
from tsq.worker_process import Job

if TYPE_CHECKING:
    import httpx

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

    def run_now(self, run: Execution) -> RunResult | None:
        """Run on the calling thread if that can start at once; None if it cannot."""
        ...


class JobRunner(Protocol):
    """What runs handlers: the worker pool (or a test's scripted stand-in)."""

    def submit(self, job: Job, listener: JobListener) -> Future[RunResult]: ...

    def run_now(self, job: Job, listener: JobListener) -> RunResult | None:
        """Run `job` on the calling thread in an idle worker; None if none is idle."""
        ...

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


@functools.lru_cache(maxsize=4096)
def iso(ms: int) -> str:
    """`ms` as the event's ISO text. Kept: the runs of a burst share their scheduled time and
    window edges; formatting took 5 % of the service's busy time at 1,000 fires a second."""
    return format_ms(ms, "milliseconds")


class WorkerExecutor:
    in_service = False

    def __init__(self, workers: Callable[[], JobRunner], hosts: HostFactory | None) -> None:
        self.workers = workers  # called per run: the pool starts on first use
        self.hosts = hosts

    def submit(self, run: Execution) -> Future[RunResult]:
        return self.workers().submit(*self._job(run))

    def run_now(self, run: Execution) -> RunResult | None:
        return self.workers().run_now(*self._job(run))

    def _job(self, run: Execution) -> tuple[Job, JobListener]:
        spec, record = run.version.spec, run.record
        job = Job(
            run_id=record.id, runtime=spec.runtime, version_id=run.version.id,
            source=run.version.source, file_name=spec.handler, event=run.event,
            env=spec.environment, limits=Limits(spec.timeout_s, spec.memory_mb),
            info={"loop": spec.name, "project": spec.project, "version": run.version.id,
                  "runId": record.id, "attempt": record.attempt},
        )
        host = None if self.hosts is None else _on_first_call(
            self.hosts, record, run.version, spec.timeout_s + GRACE_S)
        return job, JobListener(started=lambda _job: None,
                                logs=lambda _job, lines: run.log(lines), host=host)


def _on_first_call(hosts: HostFactory, record: Run, version: StoredVersion,
                   within_s: float) -> Host:
    """The run's host, made when the handler first calls it: most runs never do, and making
    one (connectors, pipelines, metrics) was a twentieth of the service's time per run."""
    began = time.monotonic()
    made: list[Host] = []

    def host(op: str, args: dict[str, Any], arrays: list[Any]) -> HostAnswer:
        if not made:
            made.append(hosts(record, version, within_s - (time.monotonic() - began)))
        return made[0](op, args, arrays)

    return host


class TargetExecutor:
    in_service = True

    def __init__(self, threads: ThreadPoolExecutor, http: Callable[[], httpx.Client],
                 clock: Callable[[], float]) -> None:
        self.threads = threads
        self.http = http
        self.clock = clock

    def submit(self, run: Execution) -> Future[RunResult]:
        spec = run.version.spec
        url = spec.target_of(run.record.event)
        assert url is not None  # executor_key chose this executor because there is one
        from tsq.targets import call_target  # httpx loads with the first URL target

        return self.threads.submit(call_target, self.http(), url, run.event, spec.timeout_s,
                                   self.clock())

    def run_now(self, run: Execution) -> RunResult | None:
        return None  # on its thread pool, which bounds the calls in flight


class StepExecutor:
    in_service = True

    def __init__(self, threads: ThreadPoolExecutor, step: Step) -> None:
        self.threads = threads
        self.step = step

    def submit(self, run: Execution) -> Future[RunResult]:
        return self.threads.submit(self._run, run)

    def run_now(self, run: Execution) -> RunResult | None:
        return None

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
        ended = self._ended(run)
        if ended is None:
            return self.inner.submit(run)
        future: Future[RunResult] = Future()
        future.set_result(ended)
        return future

    def run_now(self, run: Execution) -> RunResult | None:
        ended = self._ended(run)
        return self.inner.run_now(run) if ended is None else ended

    def _ended(self, run: Execution) -> RunResult | None:
        """The guard's outcome, its log lines passed on; None if the run may go ahead."""
        ended = self.guard(run.record, run.version)
        if ended is None:
            return None
        result, lines = ended
        run.log(lines)
        return result
