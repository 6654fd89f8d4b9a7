"""How a run stands and how it ended: one status enum and one enum of the failures tsq itself
reports, used from the scheduler to the API (their values are what the JSON carries).

    queued ─► running ─► success | failed | timeout | cancelled
       ├────────────────► expired     (never started: past its epsilon, or missed while stopped)
       └────────────────► cancelled   (never started: cancelled while it waited)

A handler's own error keeps its type (`TypeError`, `RunFailed`, …); the kinds below are the ones
the service gives a run it had to end or could not start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["UNFINISHED", "FailureKind", "RunError", "RunResult", "RunStatus"]


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in UNFINISHED

    @property
    def notified(self) -> bool:
        """Whether a loop's `notify:` webhook hears of a run that ended so."""
        return self in (RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.EXPIRED)

    @property
    def http_status(self) -> int:
        """What a synchronous run request answers when its run ended so."""
        return HTTP_STATUS.get(self, 500)

    @classmethod
    def final(cls) -> tuple[RunStatus, ...]:
        return tuple(status for status in cls if status.finished)


UNFINISHED = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
HTTP_STATUS = {RunStatus.SUCCESS: 200, RunStatus.TIMEOUT: 504, RunStatus.CANCELLED: 409}


class FailureKind(StrEnum):
    TIMEOUT = "Timeout"  # past the loop's timeout, or a step past its caller's
    INTERRUPTED = "Interrupted"  # the service stopped while it ran
    EXPIRED = "Expired"  # could not start within its epsilon
    MEMORY_LIMIT = "MemoryLimit"  # over the loop's `memory:`
    CANCELLED = "Cancelled"  # stopped, or never started, at a user's request

    @property
    def status(self) -> RunStatus:
        return _STATUS_OF_KIND.get(self, RunStatus.FAILED)

    def error(self, message: str) -> RunError:
        """A run's `error` for a failure of this kind."""
        return RunError(self.value, message)


_STATUS_OF_KIND = {FailureKind.TIMEOUT: RunStatus.TIMEOUT, FailureKind.EXPIRED: RunStatus.EXPIRED,
                   FailureKind.CANCELLED: RunStatus.CANCELLED}


@dataclass(frozen=True)
class RunError:
    """Why a run failed: the error's type (a handler's own, or a FailureKind), its message and
    the handler's stack, if any."""

    type: str
    message: str
    stack: str = ""

    @property
    def headline(self) -> str:
        return f"{self.type}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "stack": self.stack}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RunError | None:
        if not data:
            return None
        return cls(str(data.get("type") or "Error"), str(data.get("message") or ""),
                   str(data.get("stack") or ""))


@dataclass(frozen=True)
class RunResult:
    """How one execution of a run ended, as a runtime, a URL target or a step reports it."""

    status: RunStatus  # one of RunStatus.final()
    result: Any = None
    error: RunError | None = None
    # Time before the handler itself ran, ms: the runtime's set-up for this run (a fresh V8
    # context, the bootstrap, the handler's code) and, on a worker's first run of a version,
    # compiling it; as AWS Lambda's "Init Duration" is told apart from the duration.
    init_ms: float | None = None

    def __post_init__(self) -> None:
        if not RunStatus(self.status).finished:
            raise ValueError(f"a run's result is final, not {self.status}")
        object.__setattr__(self, "status", RunStatus(self.status))

    def to_wire(self) -> tuple[str, Any, tuple[str, str, str] | None, float | None]:
        """Plain values for a pipe: a worker's outcome is unpickled once per run, and a
        dataclass costs a class lookup and a field-by-field build each."""
        error = self.error
        return (self.status.value, self.result,
                None if error is None else (error.type, error.message, error.stack),
                self.init_ms)

    @classmethod
    def from_wire(cls, wire: tuple[str, Any, tuple[str, str, str] | None, float | None]
                  ) -> RunResult:
        status, result, error, init_ms = wire
        return cls(RunStatus(status), result, None if error is None else RunError(*error),
                   init_ms)

    @classmethod
    def failed(cls, kind: str, message: str, stack: str = "") -> RunResult:
        """The handler's own error (`kind` is its type: TypeError, RunFailed, …)."""
        return cls(RunStatus.FAILED, error=RunError(kind, message, stack))

    @classmethod
    def failure(cls, kind: FailureKind, message: str) -> RunResult:
        """A run the service ended, or could not start, for `kind`."""
        return cls(kind.status, error=kind.error(message))

    @classmethod
    def timed_out(cls, timeout_s: float, how: str = "") -> RunResult:
        """A handler past its loop's timeout (`how`: what was done about it)."""
        return cls.failure(FailureKind.TIMEOUT, f"the handler did not finish within its timeout "
                                                f"of {timeout_s:g} s{how}")

    @classmethod
    def cancelled(cls, how: str) -> RunResult:
        """A run cancelled at a user's request (`how`: where it was, what was done)."""
        return cls.failure(FailureKind.CANCELLED, f"cancelled by request {how}")

    @classmethod
    def never_started(cls) -> RunResult:
        """A run cancelled while it waited for a worker."""
        return cls.cancelled("before a worker took it; it never started")

    @classmethod
    def over_memory(cls, memory_mb: int, how: str = "") -> RunResult:
        """A handler over its loop's `memory:` (`how`: what counted, what was done)."""
        return cls.failure(FailureKind.MEMORY_LIMIT,
                           f"the handler went over its memory limit of {memory_mb} MiB {how}"
                           f"(set `memory:` in the loop file to raise it)")
