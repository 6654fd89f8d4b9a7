"""The Runtime protocol: how tsq runs one loop's handler, whatever its language.

`Runtime.prepare(source, file_name)` parses/compiles once (and raises CompileError with the
line and column); `Program.run(ctx)` runs it once for one event and says how it ended. Programs
run inside worker processes; they report log lines through `ctx.log` as they happen, so the lines
survive even when the worker is killed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tsq.hostcalls import Host, HostAnswer, unavailable
from tsq.outcomes import FailureKind

__all__ = ["Limits", "LogLine", "Program", "RunContext", "RunResult", "Runtime"]

Outcome = Literal["success", "failed", "timeout", "expired", "cancelled"]


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_mb: int


@dataclass(frozen=True)
class LogLine:
    ts_ms: int
    level: str  # debug | info | warning | error
    message: str


def _no_host(op: str, _args: dict[str, Any], _arrays: list[Any]) -> HostAnswer:
    raise unavailable(op)


@dataclass(frozen=True)
class RunContext:
    """What one run of a program gets: its event, environment, limits and a log sink."""

    event: dict[str, Any]
    env: dict[str, str]
    limits: Limits
    log: Callable[[list[LogLine]], None]
    info: dict[str, Any] = field(default_factory=dict)  # loop, version, run id, attempt
    host: Host = _no_host  # answers its service host calls (tsq.hostcalls)


@dataclass(frozen=True)
class RunResult:
    status: Outcome
    result: Any = None
    error: dict[str, Any] | None = None  # {type, message, stack}

    @classmethod
    def failed(cls, kind: str, message: str, stack: str = "") -> RunResult:
        """The handler's own error (`kind` is its type: TypeError, RunFailed, …)."""
        return cls("failed", error={"type": kind, "message": message, "stack": stack})

    @classmethod
    def failure(cls, kind: FailureKind, message: str) -> RunResult:
        """A run the service ended, or could not start, for `kind`."""
        status: Outcome = kind.status.value  # type: ignore[assignment]
        return cls(status, error=kind.error(message))


class Program(Protocol):
    def run(self, ctx: RunContext) -> RunResult: ...


class Runtime(Protocol):
    name: str

    def warm(self, *, runs: bool = False) -> None:
        """Get ready to prepare (and, with `runs`, to run) without delay."""

    def prepare(self, source: str, file_name: str) -> Program: ...
