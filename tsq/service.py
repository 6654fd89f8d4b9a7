"""The application core that the HTTP API and the local CLI both call.

Every method returns plain JSON-ready data, so the API serialises it as is and the CLI prints the
same thing whether it talks to a server or works on the data directory itself.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from tsq import metronome
from tsq.config import Settings
from tsq.db import connect
from tsq.errors import Conflict, NotFound
from tsq.loopfile import FileReader, load_loop_file
from tsq.loopstore import LoopStore, StoredLoop
from tsq.runstore import RunFilter, RunStore
from tsq.runtimes import get_runtime, runtime_names
from tsq.runtimes.base import Limits, LogLine, RunResult
from tsq.worker import Job, WorkerOptions
from tsq.workers import JobListener, WorkerPool

__all__ = ["Service", "SubmittedRun"]

NEXT_FIRE_TIMES = 3


@dataclass(frozen=True)
class SubmittedRun:
    record: dict[str, Any]
    done: Future[dict[str, Any]]  # the final run record


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        engine = connect(settings.database_url)
        self.loops = LoopStore(engine)
        self.runs = RunStore(engine)
        self._pool: WorkerPool | None = None
        for name in runtime_names():
            get_runtime(name).warm()

    @property
    def pool(self) -> WorkerPool:
        if self._pool is None:
            self._pool = WorkerPool(self.settings.workers, WorkerOptions(
                memory_mb=self.settings.worker_memory_mb,
                max_result_bytes=self.settings.max_result_bytes,
            ))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    # -- loops -----------------------------------------------------------------------------

    def deploy(self, text: str, file_name: str, read: FileReader) -> dict[str, Any]:
        """Validate a whole loop file, then store a version of each loop; all or nothing."""
        items = load_loop_file(text, file_name, read, _compile,
                               deployed_after=self.loops.after_graph)
        outcomes = [self.loops.deploy(item) for item in items]
        return {"loops": [{**o.loop.to_json(), "created": o.created} for o in outcomes]}

    def list_loops(self, project: str | None = None) -> dict[str, Any]:
        return {"loops": [loop.to_json() for loop in self.loops.live(project)]}

    def get_loop(self, name: str, project: str | None = None) -> dict[str, Any]:
        loop = self._loop(name, project)
        data = loop.to_json()
        data["versions"] = [v.to_json() for v in self.loops.versions(loop.project, name)]
        data["events"] = [_event_json(event.name, event.rate, event.after, event.params)
                          for event in loop.latest.spec.events]
        return data

    def rollback(self, name: str, project: str | None = None,
                 to: str | None = None) -> dict[str, Any]:
        loop = self._loop(name, project)
        return self.loops.rollback(loop.project, name, to).to_json()

    def delete_loop(self, name: str, project: str | None = None) -> dict[str, Any]:
        loop = self._loop(name, project)
        self.loops.delete(loop.project, name)
        return {"deleted": name, "project": loop.project}

    def _loop(self, name: str, project: str | None) -> StoredLoop:
        if project is not None:
            return self.loops.get(project, name)
        projects = self.loops.projects_of(name)
        if not projects:
            raise NotFound(f"no loop named {name!r}; `tsq loops` lists the deployed ones")
        if len(projects) > 1:
            raise Conflict(f"loop {name!r} exists in projects {', '.join(projects)}; "
                           f"say which with project=…", details={"projects": projects})
        return self.loops.get(projects[0], name)

    # -- runs ------------------------------------------------------------------------------

    def submit(self, name: str, params: dict[str, Any] | None = None, *,
               project: str | None = None, event: str | None = None,
               trigger: str = "manual") -> SubmittedRun:
        """Queue a run of the loop's latest version; `done` resolves to the final record."""
        loop = self._loop(name, project)
        version = loop.latest
        spec = version.spec
        event_params = self._event_params(loop, event)
        merged = {**event_params, **(params or {})}
        record = self.runs.create(project=loop.project, loop=name, event=event or trigger,
                                  version_id=version.id, trigger=trigger, params=merged)
        now_ms = int(time.time() * 1000)
        job = Job(
            run_id=record["id"], runtime=spec.runtime, version_id=version.id,
            source=version.source, file_name=spec.handler,
            event=_event_payload(loop, event or trigger, merged, now_ms, record),
            env=spec.environment, limits=Limits(spec.timeout_s, spec.memory_mb),
            info={"loop": name, "project": loop.project, "version": version.id,
                  "runId": record["id"], "attempt": record["attempt"]},
        )
        done: Future[dict[str, Any]] = Future()
        listener = JobListener(started=lambda j: self.runs.mark_running(j.run_id),
                               logs=lambda j, lines: self.runs.append_logs(j.run_id, lines))
        self.pool.submit(job, listener).add_done_callback(
            lambda result: done.set_result(self._finish(job, result.result())))
        return SubmittedRun(record, done)

    def run(self, name: str, params: dict[str, Any] | None = None, **options: Any
            ) -> dict[str, Any]:
        """Run and wait; the final run record."""
        return self.submit(name, params, **options).done.result()

    def _finish(self, job: Job, result: RunResult) -> dict[str, Any]:
        if result.status != "success" and result.error:
            stamp = int(time.time() * 1000)
            self.runs.append_logs(job.run_id, [LogLine(stamp, "error", _error_line(result))])
        return self.runs.finish(job.run_id, result)

    def _event_params(self, loop: StoredLoop, event: str | None) -> dict[str, Any]:
        if event is None:
            return {}
        for candidate in loop.latest.spec.events:
            if candidate.name == event:
                return dict(candidate.params)
        known = ", ".join(e.name for e in loop.latest.spec.events) or "none"
        raise NotFound(f"loop {loop.name!r} has no event {event!r}; its events: {known}")

    def list_runs(self, where: RunFilter) -> dict[str, Any]:
        return {"runs": self.runs.find(where)}

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self.runs.get(run_id)

    def run_logs(self, run_id: str) -> dict[str, Any]:
        return {"run": run_id, "logs": self.runs.logs(run_id)}


def _compile(runtime: str, source: str, file_name: str) -> None:
    get_runtime(runtime).prepare(source, file_name)


def _event_payload(loop: StoredLoop, name: str, params: dict[str, Any], now_ms: int,
                   record: dict[str, Any]) -> dict[str, Any]:
    return {
        "loop": loop.name, "name": name, "params": params,
        "scheduled": _iso(now_ms), "scheduledMs": now_ms, "window": None, "epsilon": None,
        "attempt": record["attempt"], "version": loop.latest.id, "runId": record["id"],
    }


def _event_json(name: str, rate: str | None, after: str | None,
                params: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name, "rate": rate, "after": after, "params": params}
    if rate is not None:
        upcoming = metronome.parse(rate).fire_times(datetime.now(UTC), datetime.max.replace(
            tzinfo=UTC))
        data["next"] = [t.isoformat() for t in islice(upcoming, NEXT_FIRE_TIMES)]
    return data


def _error_line(result: RunResult) -> str:
    error = result.error or {}
    stack = error.get("stack") or ""
    head = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return stack if stack.startswith(head) else f"{head}\n{stack}".rstrip()


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
