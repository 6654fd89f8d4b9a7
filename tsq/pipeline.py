"""Pipelines: loops that call loops (`Loop.run`), and how a pipeline resumes.

Every run belongs to a pipeline: its own (it is the first step) or the one of the run that
started it, by `after:` or by `Loop.run`. A pipeline pins its versions when it starts: each step
runs the version its loop pointed at then (`LoopStore.version_at`), so a deploy mid-pipeline
affects the pipelines that start later, and a deletion stops the steps still to come.

A `Loop.run` step is journaled as a run keyed by its caller, the loop, its params and how many
such calls came before. When a pipeline runs its caller again (a resume, a restart), the calls
replay: a step that succeeded answers with its recorded result and does not run again; a step
that did not is run again as its next attempt. The caller's own code between steps runs again,
so it should leave its side effects to steps, as a durable workflow does.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tsq.artifacts import ArtifactStore
from tsq.clock import now_ms
from tsq.config import PipelineLimits
from tsq.connectors.base import Connector
from tsq.dispatcher import Dispatcher
from tsq.errors import Conflict, HostError, NotFound
from tsq.hostcalls import Host, KeptFile, LoopCall
from tsq.hostrouter import HostRouter, RunServices
from tsq.loopstore import LoopStore
from tsq.outcomes import UNFINISHED, FailureKind, RunError, RunResult, RunStatus
from tsq.redaction import redactor_for
from tsq.run import Run
from tsq.runlog import LogLine
from tsq.runstore import NewRun, RunStore, Settlement

__all__ = ["Pipelines", "resumable", "step_key"]


def step_key(parent_id: str, loop: str, digest: str, count: int) -> str:
    """The journal key of a `Loop.run` step: the `count`-th call of `loop` with the params of
    `digest` by run `parent_id` (a replay makes the same calls in the same order, so finds the
    same keys)."""
    return f"call:{parent_id}:{loop}:{digest}:{count}"


def params_digest(params: dict[str, Any]) -> str:
    """The same params give the same digest, whatever the order of their keys."""
    return hashlib.sha256(orjson.dumps(params, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


@dataclass
class _Caller:
    """One attempt of a running run, as its `Loop.run` calls see it."""

    record: Run
    deadline: float  # time.monotonic() past which the caller itself is stopped
    calls: dict[tuple[str, str], int] = field(default_factory=dict)


class Pipelines:
    def __init__(self, runs: RunStore, loops: LoopStore, dispatcher: Dispatcher,
                 artifacts: ArtifactStore, limits: PipelineLimits) -> None:
        self.runs = runs
        self.artifacts = artifacts
        self.loops = loops
        self.dispatcher = dispatcher
        self.limits = limits
        self._chains: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def host_for(self, record: Run, timeout_s: float, connector: Connector,
                 named: Callable[[str], Connector]) -> Host:
        """The host calls one attempt of `record` may make: its loop's `connector` (and the
        others its loop file `named`), its artifacts, and `Loop.run`."""
        caller = _Caller(record, time.monotonic() + timeout_s)
        return HostRouter(RunServices(connector, named, lambda file: self.save(caller, file),
                                      lambda call: self.call(caller, call)))

    # -- Loop.run ----------------------------------------------------------------------------

    def call(self, caller: _Caller, call: LoopCall) -> dict[str, Any]:
        """Run loop `call.loop` with `call.params` as a step of the caller's pipeline, wait for
        it, and answer its result (or raise its error for the caller's promise to reject)."""
        parent = caller.record
        name, params = call.loop, call.params
        chain = self.chain(parent)
        if name in chain:
            raise HostError("PipelineCycle", f"Loop.run({name!r}) would make a cycle: "
                                             f"{' → '.join([*chain, name])}; a loop cannot call "
                                             f"itself, directly or through other loops")
        if len(chain) >= self.limits.max_depth:
            raise HostError("PipelineTooDeep", f"Loop.run({name!r}) would make the chain "
                                               f"{' → '.join([*chain, name])} deeper than "
                                               f"{self.limits.max_depth} loops (TSQ_PIPELINE_MAX_"
                                               f"DEPTH)")
        try:
            version = self.loops.version_at(parent.project, name, parent.pipeline_ms)
        except NotFound as exc:
            raise HostError("LoopNotFound", f"Loop.run({name!r}): {exc.message}") from None
        digest = params_digest(params)
        count = caller.calls[name, digest] = caller.calls.get((name, digest), 0) + 1
        key = step_key(parent.id, name, digest, count)
        step = self._journaled(parent, key)
        if step is not None and step.status == RunStatus.SUCCESS:
            self.runs.append_logs(parent.id, [LogLine(
                now_ms(self.runs.clock), "info", f"Loop.run({name!r}): step {step.id} succeeded "
                                                 f"before; its result is reused and it is not "
                                                 f"run again")])
            return {"result": step.result, "runId": step.id}
        if step is None:
            self._check_size(parent, name)
            created = self.runs.create_new([NewRun(
                project=parent.project, loop=name, event="call", version_id=version.id,
                trigger="call", params=params, key=key, scheduled_ms=parent.scheduled_ms,
                window=_window(parent), pipeline_id=parent.pipeline_id,
                parent_id=parent.id, pipeline_ms=parent.pipeline_ms)])
            if not created:
                raise HostError("Conflict", f"Loop.run({name!r}): step {key} is being created "
                                            f"by another run")
            step = created[0]
        elif step.status in UNFINISHED:
            raise HostError("Conflict", f"Loop.run({name!r}): step {step.id} is "
                                        f"{step.status} elsewhere")
        else:
            step = self.runs.requeue(step.id, attempt=step.attempt + 1,
                                     not_before_ms=None,
                                     message=f"run again: pipeline {parent.pipeline_id} "
                                             f"was resumed and this step had {step.status}")
        with self._lock:
            self._chains[step.id] = (*chain, name)
        try:
            final = self.dispatcher.run_step(step, caller.deadline - time.monotonic())
        finally:
            with self._lock:
                self._chains.pop(step.id, None)
        if final.status == RunStatus.SUCCESS:
            return {"result": final.result, "runId": final.id}
        error = final.error or RunError("StepFailed", "")
        raise HostError(error.type, f"Loop.run({name!r}) {final.status} (run {final.id}): "
                                    f"{error.message}")

    def save(self, caller: _Caller, file: KeptFile) -> dict[str, Any]:
        """Keep a file the run produced (`artifact.put`), as the run's listing shows it, without
        its loop's secrets (tsq.redaction)."""
        version = self.loops.version(caller.record.version_id)
        data = redactor_for(version.id, version.spec).data(file.data)
        saved = self.artifacts.put(caller.record.id, file.name, file.content_type, data)
        return saved.to_json()

    def _journaled(self, parent: Run, key: str) -> Run | None:
        return self.runs.by_keys(parent.project, [key]).get(key)

    def _check_size(self, parent: Run, name: str) -> None:
        steps = self.runs.count(pipeline=parent.pipeline_id)
        if steps >= self.limits.max_steps:
            raise HostError("PipelineTooLarge", f"Loop.run({name!r}): pipeline "
                                                f"{parent.pipeline_id} has {steps} steps "
                                                f"already, its limit (TSQ_PIPELINE_MAX_STEPS); "
                                                f"a loop that calls loops in a loop runs away")

    def chain(self, record: Run) -> tuple[str, ...]:
        """The loops from the pipeline's first `Loop.run` caller down to `record`'s."""
        with self._lock:
            known = self._chains.get(record.id)
        if known is not None:
            return known
        names = [record.loop]
        parent_id = record.parent_id
        while parent_id is not None and len(names) <= self.limits.max_depth:
            parent = self.runs.get(parent_id)
            names.append(parent.loop)
            parent_id = parent.parent_id
        return tuple(reversed(names))

    # -- restart and resume ---------------------------------------------------------------------

    def recover(self, unfinished: list[Run]) -> int:
        """Take over the runs a stopped service left, finishing the pipelines they belong to.

        A pipeline step that was running is run again: a step started by `after:`, a run that
        had started `Loop.run` steps (its calls replay, so finished steps do not run again), a run
        that other loops follow. `Loop.run` steps themselves are recorded interrupted; their
        callers run them again. Every other run is taken over as `Dispatcher.recover` does.
        """
        calls = [r for r in unfinished if r.trigger == "call"]
        if calls:
            self.runs.settle_many([Settlement(r, RunResult.failure(
                FailureKind.INTERRUPTED, "the service stopped while this step ran; its caller "
                                         "runs it again when it resumes")) for r in calls])
        running = [r for r in unfinished if r.trigger != "call" and r.status == RunStatus.RUNNING]
        callers = self.runs.callers([r.id for r in running])
        followed = self.dispatcher.followers.followed()
        resumed = [r for r in running if r.trigger == "after" or r.id in callers
                   or (r.project, r.loop) in followed]
        for record in resumed:
            self.dispatcher.offer(self.runs.requeue(
                record.id, attempt=record.attempt + 1, not_before_ms=None,
                message="resumed at restart: the service stopped while this pipeline step ran"))
        taken = {r.id for r in (*calls, *resumed)}
        rest = [r for r in unfinished if r.id not in taken]
        return len(taken) + self.dispatcher.recover(rest)


    def resume(self, run_id: str) -> dict[str, Any]:
        """Run again the failed steps of `run_id`'s pipeline and what follows them; steps that
        succeeded keep their results and do not run again."""
        pipeline_id = self.runs.get(run_id).pipeline_id
        steps = self.runs.pipeline(pipeline_id)
        busy = [s.id for s in steps if s.status in UNFINISHED]
        if busy:
            raise Conflict(f"pipeline {pipeline_id} is still running ({', '.join(busy)}); "
                           f"resume it once it has ended", details={"running": busy})
        resumed = resumable(steps)
        if not resumed:
            raise Conflict(f"pipeline {pipeline_id} has nothing to resume: every step "
                           f"succeeded", details={"pipeline": pipeline_id})
        records = [self.runs.requeue(s.id, attempt=s.attempt + 1, not_before_ms=None,
                                     message=f"resumed: this step had {s.status}; the steps "
                                             f"of pipeline {pipeline_id} that succeeded are "
                                             f"not run again")
                   for s in resumed]
        for record in records:
            self.dispatcher.offer(record)
        return {"pipeline": pipeline_id, "resumed": [r.id for r in records],
                "steps": len(steps)}


def resumable(steps: list[Run]) -> list[Run]:
    """The steps to run again to finish a pipeline: the ones that did not succeed, except
    `Loop.run` steps, which their callers run again when they replay."""
    return [s for s in steps if s.status not in (RunStatus.SUCCESS, *UNFINISHED)
            and s.trigger != "call"]


def _window(record: Run) -> tuple[int, int] | None:
    start, end = record.window_start_ms, record.window_end_ms
    return None if start is None or end is None else (int(start), int(end))

