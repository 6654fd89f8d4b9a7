"""A run, as the service keeps it: one frozen record from the moment it is queued to its end.

The dispatcher, the scheduler, the pipelines and the run store pass `Run` values; each change
of state makes a new one (`Run.evolve`). JSON is made only at the edges, by `to_json`
(the API, the local client, a webhook), and read back by `Run.from_json`. Times are epoch
milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from tsq.outcomes import RunError, RunStatus

__all__ = ["Run", "RunFilter"]


@dataclass(frozen=True)
class Run:
    id: str
    project: str
    loop: str
    event: str
    version_id: str
    trigger: str  # schedule, after, backfill, manual, call
    status: RunStatus
    params: dict[str, Any]
    queued_ms: int
    pipeline_id: str  # the id of its pipeline's first run (its own, if it began one)
    pipeline_ms: int  # when its pipeline started: versions are pinned then
    attempt: int = 1
    key: str | None = None  # `loop:event:scheduled_ms` for keyed (exactly-once) runs
    result: Any = None
    error: RunError | None = None
    parent_id: str | None = None  # the run whose Loop.run started it
    scheduled_ms: int | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    window_start_ms: int | None = None  # [start, end)
    window_end_ms: int | None = None
    epsilon_ms: int | None = None
    not_before_ms: int | None = None  # a retry waits until then
    init_ms: float | None = None  # of the duration, the part before the handler ran

    @property
    def window(self) -> tuple[int, int] | None:
        if self.window_start_ms is None or self.window_end_ms is None:
            return None
        return self.window_start_ms, self.window_end_ms

    @property
    def when_ms(self) -> int:
        """The time the run stands for: its scheduled time, else when it was queued."""
        return self.scheduled_ms if self.scheduled_ms is not None else self.queued_ms

    @property
    def duration_ms(self) -> int | None:
        if self.finished_ms is None or not self.started_ms:
            return None
        return self.finished_ms - self.started_ms

    @property
    def queue_delay_ms(self) -> int | None:
        return None if self.started_ms is None else self.started_ms - self.queued_ms

    @property
    def is_step(self) -> bool:
        """Whether it belongs to a pipeline another run started."""
        return self.pipeline_id != self.id

    def started(self, now_ms: int) -> Run:
        return self.evolve(status=RunStatus.RUNNING, started_ms=now_ms)

    def evolve(self, **changes: Any) -> Run:
        """`dataclasses.replace` for the run path, which makes three of these per run:
        `replace` re-reads the fields and runs `__init__`, ten times slower, for checks a `Run`
        does not have. Unknown names are refused all the same."""
        unknown = changes.keys() - _FIELDS_SET
        if unknown:
            raise TypeError(f"Run has no field {', '.join(sorted(unknown))}")
        made = object.__new__(Run)
        made.__dict__.update(self.__dict__)
        made.__dict__.update(changes)
        return made

    def identity(self) -> dict[str, Any]:
        """Who the run is, as the `extra` of a log line about it."""
        return {"run": self.id, "project": self.project, "loop": self.loop,
                "event": self.event, "trigger": self.trigger, "attempt": self.attempt}

    def row(self) -> dict[str, Any]:
        """The columns of the `runs` table."""
        row = dict(self.__dict__)
        row["status"] = self.status.value
        row["error"] = None if self.error is None else self.error.to_json()
        return row

    def to_json(self) -> dict[str, Any]:
        """The run as the API answers it: its columns and how long it waited and ran."""
        return {**self.row(), "duration_ms": self.duration_ms,
                "queue_delay_ms": self.queue_delay_ms}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Run:
        """A run from its `to_json` or its table row (keys beyond the columns are ignored)."""
        values = {name: data[name] for name in _COLUMNS if name in data}
        values["status"] = RunStatus(values["status"])
        values["error"] = RunError.from_json(values.get("error"))
        return cls(**values)


_COLUMNS = tuple(field.name for field in fields(Run))


@dataclass(frozen=True)
class RunFilter:
    """Which runs a listing shows (the API's and the CLI's filters)."""

    project: str | None = None
    loop: str | None = None
    status: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = 50
    event: str | None = None
    trigger: str | None = None
    pipeline: str | None = None
    # Runs queued, started or finished at or after this epoch ms: what changed since a poll
    # (a follower sees a run's status move, not only new runs).
    changed_since_ms: int | None = None


_FIELDS_SET = frozenset(field.name for field in fields(Run))
