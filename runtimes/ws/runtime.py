"""WarpScript loops (`runtime: ws`, handlers `.mc2` / `.ws`): the script is read once at deploy
(a bad word or an unclosed macro fails the deploy with its line and column) and run per event.

Before the script runs, tsq stores the variables of the loop contract: `start`, `end` (the
window, epoch milliseconds), `scheduled` (epoch ms), `period` (ms) and every event param, and
the same four in WarpScript ticks (µs): `startTick`, `endTick`, `scheduledTick`, `periodTick`.
FETCH reads `(end - span, end]`, so `$endTick 1 - $periodTick` reads the window `[start, end)`.
NOW is the window's end (else the scheduled time), so a backfilled run reads the window it is
for. FETCH, FIND, UPDATE and DELETE reach the loop's connector through host calls. The run's
result is the stack, top first.
"""

from __future__ import annotations

import time
from typing import Any

from tsq.errors import CompileError, HostError, WarpScriptError
from tsq.runlog import LogLine
from tsq.runtimes.base import RunContext, RunResult, within_cap
from tsq.runtimes.tsl.runtime import HostConnector

from .jsonstack import to_js, to_json
from .values import Macro
from .vm import Limits, Vm

__all__ = ["WsProgram", "WsRuntime", "execute_for_run", "run_variables"]

STU = 1_000_000


def run_variables(event: dict[str, Any]) -> dict[str, Any]:
    """The loop contract's variables: the event's params, then start, end, scheduled and period
    (epoch ms) and the same as `startTick`, … (µs), which params never override."""
    values: dict[str, Any] = {str(k): v for k, v in dict(event.get("params") or {}).items()
                              if isinstance(v, str | int | float | bool)}
    window = event.get("window") or {}
    for name, given in (("start", window.get("startMs")), ("end", window.get("endMs")),
                        ("scheduled", event.get("scheduledMs"))):
        if given is not None:
            values[name] = int(given)
    if window.get("startMs") is not None and window.get("endMs") is not None:
        values["period"] = int(window["endMs"]) - int(window["startMs"])
    # the same times in platform ticks (µs), so a script can FETCH exactly [start, end)
    for name in ("start", "end", "scheduled", "period"):
        if name in values:
            values[f"{name}Tick"] = values[name] * (STU // 1000)
    return values


def execute_for_run(script: str, variables: dict[str, Any], ctx: RunContext,
                    timeout_s: float | None = None) -> list[Any]:
    """A script run by a running handler (JavaScript's `ws()`): the run's variables, then the
    caller's, on the loop's store; the stack, top first, as JavaScript values."""
    vm = Vm(connector=HostConnector(ctx.host), variables={**run_variables(ctx.event), **variables},
            limits=Limits(timeout_s=timeout_s), now_us=_now_us(ctx.event))
    return [to_js(value) for value in vm.execute(Vm.compile(script))]


def _now_us(event: dict[str, Any]) -> int:
    window = event.get("window") or {}
    moment = window.get("endMs") or event.get("scheduledMs")
    return int(moment) * 1000 if moment else int(time.time() * STU)


class WsProgram:
    def __init__(self, code: Macro, max_result_bytes: int) -> None:
        self.code = code
        self.max_result_bytes = max_result_bytes

    def run(self, ctx: RunContext) -> RunResult:
        started = time.time()
        vm = Vm(connector=HostConnector(ctx.host), variables=run_variables(ctx.event),
                limits=Limits(timeout_s=ctx.limits.timeout_s), now_us=_now_us(ctx.event))
        try:
            stack = vm.execute(self.code)
        except WarpScriptError as error:
            # Where it failed and whose failure it is (the script's FAIL, a VM fault, a limit).
            at = f"    at {error.word or 'the script'} ({error.kind})"
            return RunResult.failed("WarpScriptError", error.message, at)
        except HostError as error:
            return RunResult.failed(error.kind, error.message)
        took_ms = (time.time() - started) * 1000
        ctx.log([LogLine(int(started * 1000), "info",
                         f"{vm.ops} words run; {len(stack)} item(s) left on the stack "
                         f"in {took_ms:.1f} ms")])
        return within_cap({"stack": to_json(stack)}, self.max_result_bytes,
                          lambda: {"stack": [type(v).__name__ for v in stack]}, "the stack is")


class WsRuntime:
    name = "ws"

    def __init__(self, *, max_result_bytes: int = 1 << 20) -> None:
        self.max_result_bytes = max_result_bytes

    def warm(self, *, runs: bool = False) -> None:
        Vm.compile("NOW DROP")

    def idle(self) -> None:
        """Nothing to do ahead: a run's state is made from its event when it starts."""

    def prepare(self, source: str, file_name: str) -> WsProgram:
        try:
            code = Vm.compile(source)
        except WarpScriptError as error:
            raise CompileError(error.reason, file=file_name, line=error.line,
                               col=error.col) from None
        return WsProgram(code, self.max_result_bytes)
