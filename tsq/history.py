"""Bounded run history: run records, their log lines and their artifacts are kept as each loop's
`history:` says (tsq.model.History), and swept in the background.

A sweep (thread `tsq-history`, every SWEEP_INTERVAL_S, and at once on `sweep()`) deletes
- the runs that ended longer ago than their loop's `keep` (a success) or `keep_failed` (any
  other end), with their log lines and artifacts, a pipeline as a whole: no run goes while
  another run of its pipeline is unfinished or still kept, so a resume finds every step it
  needs and replays;
- then, for each loop whose artifacts take more than its `max_artifacts_mb`, the artifacts of
  its oldest finished runs until they fit (the runs and their logs stay).

Two kinds of run stay whatever their age, because the service reads them back: the newest
scheduled run of each event (the scheduler's catch-up resumes from it), and every run of a loop
with a backfill still in progress (a backfill counts its progress from its runs; one that ended
is recorded so before a sweep, so a restart never takes swept runs for missing ones).

It is bounded: runs are deleted BATCH at a time, one transaction each, at most MAX_BATCHES per
loop and sweep, so a first sweep over a long history spreads over several sweeps and never
holds the database for long. Runs of a deleted loop follow the defaults.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tsq.clock import Clock, now_ms, wall
from tsq.db import artifacts, run_logs, runs, transaction
from tsq.db import loops as loop_rows
from tsq.isotime import format_ms
from tsq.loopstore import LoopStore
from tsq.model import History
from tsq.outcomes import RunStatus

__all__ = ["HistorySweeper", "Swept"]

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 300.0
BATCH = 500
MAX_BATCHES = 20  # per loop and sweep
Loop = tuple[str, str]  # (project, loop)
FINAL = [status.value for status in RunStatus.final()]
_DELETE_ARTIFACT = artifacts.delete().where(artifacts.c.run_id == sa.bindparam("b_run"),
                                            artifacts.c.name == sa.bindparam("b_name"))


@dataclass
class Swept:
    """What one sweep deleted."""

    at_ms: int = 0
    runs: int = 0
    logs: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0

    def add(self, other: Swept) -> None:
        self.runs += other.runs
        self.logs += other.logs
        self.artifacts += other.artifacts
        self.artifact_bytes += other.artifact_bytes

    def to_json(self) -> dict[str, Any]:
        return {"at": format_ms(self.at_ms, "seconds") if self.at_ms else None,
                "runs": self.runs, "logs": self.logs, "artifacts": self.artifacts,
                "artifactBytes": self.artifact_bytes}


@dataclass
class _Kept:
    """What is kept of one loop's history, and how large it is."""

    statuses: dict[str, int] = field(default_factory=dict)
    oldest_ms: int | None = None
    logs: int = 0
    log_bytes: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0


class HistorySweeper:
    def __init__(self, engine: Engine, loops: LoopStore, clock: Clock = wall,
                 interval_s: float | None = None,
                 held: Callable[[], set[Loop]] = set) -> None:
        self.engine = engine
        self.loops = loops
        self.held = held  # loops whose runs are not swept now (a backfill in progress)
        self.clock = clock
        self.interval_s = SWEEP_INTERVAL_S if interval_s is None else interval_s
        self.last = Swept()
        self._lock = threading.Lock()  # one sweep at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # What this sweep deletes nothing of: the held loops' runs, and the newest scheduled
        # run of each event, by its (project, loop, event)
        self._held: set[Loop] = set()
        self._newest: dict[tuple[str, str, str], int | None] = {}

    def start(self) -> None:
        self._stop.clear()  # a cluster's scheduler sweeps while it leads, and may lead again
        self._thread = threading.Thread(target=self._run, daemon=True, name="tsq-history")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep()
            except Exception:  # the database failed: the next sweep tries again
                log.exception("could not sweep the run history")

    # -- sweeping --------------------------------------------------------------------------

    def sweep(self) -> Swept:
        """Delete what the policies no longer keep; what was deleted."""
        with self._lock:
            now = now_ms(self.clock)
            policies = self._policies()
            self._held, self._newest = self.held(), {}
            swept = Swept(at_ms=now)
            for loop in self._loops():
                if loop not in self._held:
                    swept.add(self._sweep_runs(loop, policies, now))
            for loop, size in self._artifact_sizes().items():
                cap = policies.get(loop, History()).max_artifacts_mb << 20
                if size > cap:
                    swept.add(self._sweep_artifacts(loop, cap))
            self.last = swept
        if swept.runs or swept.artifacts:
            log.info("history sweep deleted %d runs, %d log lines and %d artifacts (%d bytes)",
                     swept.runs, swept.logs, swept.artifacts, swept.artifact_bytes,
                     extra=swept.to_json())
        return swept

    def _policies(self) -> dict[Loop, History]:
        return {(loop.project, loop.name): loop.latest.spec.history_policy()
                for loop in self.loops.live()}

    def _loops(self) -> list[Loop]:
        """Every loop ever deployed (a deleted one keeps its row, and its runs)."""
        with self.engine.connect() as db:
            return [(p, name) for p, name in db.execute(sa.select(loop_rows.c.project,
                                                                  loop_rows.c.name))]

    def _artifact_sizes(self) -> dict[Loop, int]:
        with self.engine.connect() as db:
            return {(p, name): int(size or 0) for p, name, _count, size in db.execute(
                _sizes(artifacts.c.name, artifacts.c.size, artifacts, artifacts.c.run_id))}

    def _sweep_runs(self, loop: Loop, policies: dict[Loop, History], now: int) -> Swept:
        policy = policies.get(loop, History())
        swept, after = Swept(), ""
        for _ in range(MAX_BATCHES):
            with self.engine.connect() as db:
                found = db.execute(_expired(loop, policy, now, after)).all()
            if not found:
                break
            after = str(found[-1].id)
            pipelines = {str(row.pipeline_id or row.id) for row in found}
            doomed = self._whole_pipelines(pipelines, policies, now)
            if doomed:
                with transaction(self.engine) as db:
                    swept.add(_delete_runs(db, doomed))
        return swept

    def _newest_scheduled(self, row: Any) -> bool:
        """Whether `row` is the newest scheduled run of its event (looked up once a sweep)."""
        if row.trigger != "schedule":
            return False
        event = (str(row.project), str(row.loop), str(row.event))
        if event not in self._newest:
            query = sa.select(sa.func.max(runs.c.scheduled_ms)).where(
                runs.c.project == event[0], runs.c.loop == event[1], runs.c.event == event[2],
                runs.c.trigger == "schedule")
            with self.engine.connect() as db:
                self._newest[event] = db.execute(query).scalar()
        return bool(row.scheduled_ms == self._newest[event])

    def _whole_pipelines(self, pipelines: set[str], policies: dict[Loop, History], now: int
                         ) -> list[str]:
        """The runs of those of `pipelines` whose every run the policies no longer keep."""
        members: dict[str, list[Any]] = {}
        with self.engine.connect() as db:
            for chunk in _chunks(sorted(pipelines)):
                query = sa.select(runs.c.id, runs.c.pipeline_id, runs.c.project, runs.c.loop,
                                  runs.c.status, runs.c.finished_ms, runs.c.trigger,
                                  runs.c.event, runs.c.scheduled_ms).where(
                    sa.or_(runs.c.pipeline_id.in_(chunk), runs.c.id.in_(chunk)))
                for row in db.execute(query):
                    members.setdefault(str(row.pipeline_id or row.id), []).append(row)
        return [str(row.id) for group in members.values()
                if all(_gone(row, policies.get((row.project, row.loop), History()), now)
                       and (row.project, row.loop) not in self._held
                       and not self._newest_scheduled(row) for row in group)
                for row in group]

    def _sweep_artifacts(self, loop: Loop, cap: int) -> Swept:
        """The artifacts of `loop`'s oldest finished runs, while they take more than `cap`."""
        query = (sa.select(artifacts.c.run_id, artifacts.c.name, artifacts.c.size,
                           runs.c.status)
                 .join(runs, runs.c.id == artifacts.c.run_id)
                 .where(runs.c.project == loop[0], runs.c.loop == loop[1])
                 .order_by(runs.c.queued_ms.desc(), runs.c.id.desc(), artifacts.c.name))
        with self.engine.connect() as db:
            rows = db.execute(query).all()
        total, doomed = 0, []
        for row in rows:
            total += int(row.size)
            if total > cap and row.status in FINAL:
                doomed.append(row)
        swept = Swept()
        for chunk in _chunks(doomed):
            with transaction(self.engine) as db:
                db.execute(_DELETE_ARTIFACT, [{"b_run": row.run_id, "b_name": row.name}
                                              for row in chunk])
            swept.artifacts += len(chunk)
            swept.artifact_bytes += sum(int(row.size) for row in chunk)
        return swept

    # -- what is kept ----------------------------------------------------------------------

    def kept(self) -> dict[str, Any]:
        """Per loop, what is kept (runs by status, log lines, artifacts), how large, since when,
        and under which policy; the totals; and what the last sweep deleted."""
        found: dict[Loop, _Kept] = {}
        with self.engine.connect() as db:
            for p, name, status, count, oldest in db.execute(
                    sa.select(runs.c.project, runs.c.loop, runs.c.status, sa.func.count(),
                              sa.func.min(runs.c.queued_ms))
                    .group_by(runs.c.project, runs.c.loop, runs.c.status)):
                kept = found.setdefault((p, name), _Kept())
                kept.statuses[str(status)] = int(count)
                kept.oldest_ms = min(int(oldest), kept.oldest_ms or int(oldest))
            for p, name, count, size in db.execute(_sizes(run_logs.c.id, sa.func.length(
                    run_logs.c.message), run_logs, run_logs.c.run_id)):
                found.setdefault((p, name), _Kept()).logs = int(count)
                found[p, name].log_bytes = int(size or 0)
            for p, name, count, size in db.execute(_sizes(artifacts.c.name, artifacts.c.size,
                                                          artifacts, artifacts.c.run_id)):
                found.setdefault((p, name), _Kept()).artifacts = int(count)
                found[p, name].artifact_bytes = int(size or 0)
        policies = self._policies()
        loops = [_kept_json(loop, kept, policies.get(loop, History()))
                 for loop, kept in sorted(found.items())]
        totals = {key: sum(item[key] for item in loops)
                  for key in ("runs", "logs", "logBytes", "artifacts", "artifactBytes")}
        return {"loops": loops, "total": totals, "lastSweep": self.last.to_json(),
                "sweepEveryS": self.interval_s}


def _expired(loop: Loop, policy: History, now: int, after: str) -> sa.Select[Any]:
    """The next BATCH runs of `loop` (by id, after `after`) that its policy no longer keeps."""
    failed = [status for status in FINAL if status != RunStatus.SUCCESS.value]
    return (sa.select(runs.c.id, runs.c.pipeline_id)
            .where(runs.c.project == loop[0], runs.c.loop == loop[1], runs.c.id > after,
                   sa.or_(sa.and_(runs.c.status == RunStatus.SUCCESS.value,
                                  runs.c.finished_ms < now - policy.keep_ms),
                          sa.and_(runs.c.status.in_(failed),
                                  runs.c.finished_ms < now - policy.keep_failed_ms)))
            .order_by(runs.c.id).limit(BATCH))


def _gone(row: Any, policy: History, now: int) -> bool:
    """Whether a run has ended long enough ago for its loop's policy."""
    return (row.status in FINAL and row.finished_ms is not None
            and int(row.finished_ms) < now - policy.kept_for_ms(str(row.status)))


def _delete_runs(db: Connection, run_ids: Sequence[str]) -> Swept:
    swept = Swept()
    for chunk in _chunks(run_ids):
        swept.artifact_bytes += int(db.execute(sa.select(sa.func.coalesce(
            sa.func.sum(artifacts.c.size), 0)).where(artifacts.c.run_id.in_(chunk))).scalar_one())
        swept.artifacts += db.execute(artifacts.delete().where(
            artifacts.c.run_id.in_(chunk))).rowcount
        swept.logs += db.execute(run_logs.delete().where(run_logs.c.run_id.in_(chunk))).rowcount
        swept.runs += db.execute(runs.delete().where(runs.c.id.in_(chunk))).rowcount
    return swept


def _sizes(counted: Any, size: Any, table: sa.Table, run_id: Any) -> sa.Select[Any]:
    """(project, loop, how many rows of `table`, their total `size`) per loop."""
    return (sa.select(runs.c.project, runs.c.loop, sa.func.count(counted), sa.func.sum(size))
            .select_from(table.join(runs, runs.c.id == run_id))
            .group_by(runs.c.project, runs.c.loop))


def _kept_json(loop: Loop, kept: _Kept, policy: History) -> dict[str, Any]:
    return {"project": loop[0], "loop": loop[1], "runs": sum(kept.statuses.values()),
            "statuses": kept.statuses,
            "oldest": format_ms(kept.oldest_ms, "seconds") if kept.oldest_ms else None,
            "logs": kept.logs, "logBytes": kept.log_bytes, "artifacts": kept.artifacts,
            "artifactBytes": kept.artifact_bytes, "policy": policy.to_json()}


def _chunks(items: Sequence[Any] | Iterable[Any], size: int = BATCH) -> list[list[Any]]:
    listed = list(items)
    return [listed[at:at + size] for at in range(0, len(listed), size)]
