"""The Runtime protocol: how tsq runs one loop's handler, whatever its language.

`Runtime.prepare(source, file_name)` parses/compiles once (and raises CompileError with the
line and column); `Program.run(ctx)` runs it once for one event and says how it ended. Programs
run inside worker processes; they report log lines through `ctx.log` as they happen, so the lines
survive even when the worker is killed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from tsq.hostcalls import Host, HostAnswer, unavailable
from tsq.outcomes import RunError, RunResult, RunStatus
from tsq.runlog import LogLine

# RunResult, its parts and LogLine are the service's own types (tsq.outcomes, tsq.runlog),
# named here too because the Runtime protocol speaks of them.
__all__ = ["Limits", "LogLine", "Program", "RunContext", "RunError", "RunResult", "RunStatus",
           "Runtime", "within_cap"]


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_mb: int



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



class Program(Protocol):
    def run(self, ctx: RunContext) -> RunResult: ...


class Runtime(Protocol):
    name: str

    def warm(self, *, runs: bool = False) -> None:
        """Get ready to prepare (and, with `runs`, to run) without delay."""

    def prepare(self, source: str, file_name: str) -> Program: ...

    def idle(self) -> None:
        """Called by the worker between runs: do now what the next run would otherwise wait
        for (it must stay as fresh as if it were done at its start)."""


def within_cap(result: dict[str, Any], max_bytes: int, summary: Callable[[], dict[str, Any]],
               left_out: str) -> RunResult:
    """A successful run's result, or its `summary()` with a `truncated` note when the result's
    JSON is over `max_bytes` (a run record stays small; the data belongs in the store)."""
    if len(orjson.dumps(result)) > max_bytes:
        result = {**summary(), "truncated": f"{left_out} left out: the result is over "
                                            f"{max_bytes} bytes as JSON"}
    return RunResult(RunStatus.SUCCESS, result=result)
