"""TSL loops (`runtime: tsl`): the handler file is a TSL script.

The script is parsed once per loop version (when its program is prepared) and bound again for
each run, because each run defines its own variables before the script (specs/loops.md §2):
`start` and `end` (the window, epoch ms), `scheduled`, `period` (a duration such as "5m") and
every event param. Evaluation happens in the worker; the store is reached through the host calls
`series.select/write/delete`, so reads come as whole columns and nothing runs in the service.
The result of a run is the last statement's series set.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tsq.connectors.base import Capabilities
from tsq.errors import CompileError, HostError, TslError
from tsq.hostcalls import (
    Host,
    sampling_message,
    selector_message,
    series_from_message,
    series_message,
)
from tsq.kernels import Aggregator, Buckets, Fill, Grouping
from tsq.runtimes.base import LogLine, RunContext, RunResult, RunStatus, within_cap
from tsq.selector import Selector
from tsq.series import SeriesSet

from .binder import Value, bind
from .evaluate import Evaluation, Results
from .syntax import Assign, Chain, parse_script

__all__ = ["HostConnector", "TslProgram", "TslRuntime", "evaluate_for_run",
           "evaluation_for_run", "run_variables"]


class HostConnector:
    """The loop's connector (or the one of its loop file `name`s) as seen from a worker: every
    call is a host call."""

    # The service samples (and groups) before answering: in the back-end where it can do so
    # exactly, else with its own kernels; either way only the buckets or groups cross the pipe.
    capabilities = Capabilities(sampling=True, grouping=True)

    def __init__(self, host: Host, name: str | None = None) -> None:
        self._host = host
        self.name = name

    def host(self, op: str, args: dict[str, Any], arrays: list[Any]) -> Any:
        routed = args if self.name is None else {**args, "connector": self.name}
        return self._host(op, routed, arrays)

    def select(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> SeriesSet:
        return self._select(selector, start, end, {})

    def select_sampled(self, selector: Selector, start: int | None, end: int | None,
                       grid: Buckets, aggregator: Aggregator,
                       fills: Sequence[Fill] = ()) -> SeriesSet:
        return self._select(selector, start, end,
                            {"sample": sampling_message(grid, aggregator, fills)})

    def select_grouped(self, selector: Selector, start: int | None, end: int | None,
                       grid: Buckets, aggregator: Aggregator, fills: Sequence[Fill],
                       group: Grouping) -> SeriesSet:
        return self._select(selector, start, end,
                            {"sample": sampling_message(grid, aggregator, fills, group)})

    def _select(self, selector: Selector, start: int | None, end: int | None,
                extra: dict[str, Any]) -> SeriesSet:
        answer = self.host("series.select", {**selector_message(selector), "start": start,
                                             "end": end, **extra}, [])
        return series_from_message(answer.meta, list(answer.arrays))

    def describe(self, selector: Selector) -> list[tuple[str, dict[str, str]]]:
        answer = self.host("series.describe", selector_message(selector), [])
        return [(str(name), dict(labels)) for name, labels in answer.meta["series"]]

    def write(self, series: SeriesSet) -> int:
        meta, arrays = series_message(series)
        return int(self.host("series.write", meta, list(arrays)).meta["written"])

    def delete(self, selector: Selector, start: int | None = None, end: int | None = None) -> int:
        answer = self.host("series.delete", {**selector_message(selector), "start": start,
                                             "end": end}, [])
        return int(answer.meta["deleted"])


def run_variables(event: dict[str, Any]) -> dict[str, Value]:
    """The variables a run defines before its script: the window, the scheduled time, the
    period and the event's params (params never override the four built-in names)."""
    values: dict[str, Value] = {}
    for key, value in dict(event.get("params") or {}).items():
        if isinstance(value, str | int | float | bool):
            values[str(key)] = value
    window = event.get("window") or {}
    for name, given in (("start", window.get("startMs")), ("end", window.get("endMs")),
                        ("scheduled", event.get("scheduledMs"))):
        if given is not None:
            values[name] = int(given)
    if window.get("startMs") is not None and window.get("endMs") is not None:
        values["period"] = f"{int(window['endMs']) - int(window['startMs'])}ms"
    return values


def evaluate_for_run(source: str, variables: dict[str, Value], ctx: RunContext) -> SeriesSet:
    """A query made by a running handler (JavaScript's `tsl()`): the run's variables, then the
    caller's, on the loop's store."""
    return evaluation_for_run(ctx).run(source, {**run_variables(ctx.event), **variables})


def evaluation_for_run(ctx: RunContext) -> Evaluation:
    """Evaluation for a run: its loop's store, and `last()` counting back from its time."""
    return Evaluation(HostConnector(ctx.host), now=_now(ctx.event),
                      connectors=_Named(ctx.host))


class _Named(dict[str, HostConnector]):
    """`connect(type, name)`: any name reaches the service, which knows the loop file's
    connectors and names them when the name is not one of them."""

    def __init__(self, host: Host) -> None:
        super().__init__()
        self.host = host

    def get(self, name: str, default: Any = None) -> HostConnector:
        return self.setdefault(name, HostConnector(self.host, name))


def _now(event: dict[str, Any]) -> datetime:
    """The time `last()` counts back from: the window's end, else the scheduled time, else now."""
    window = event.get("window") or {}
    moment = window.get("endMs") or event.get("scheduledMs")
    return datetime.fromtimestamp(moment / 1000, UTC) if moment else datetime.now(UTC)


class TslProgram:
    def __init__(self, source: str, script: tuple[Assign | Chain, ...],
                 max_result_bytes: int) -> None:
        self.source = source
        self.script = script
        self.max_result_bytes = max_result_bytes

    def results(self, ctx: RunContext) -> Results:
        """Every statement's value for this run (TslError, HostError)."""
        instructions = bind(self.script, self.source, values=run_variables(ctx.event))
        return evaluation_for_run(ctx).results(instructions, self.source)

    def run(self, ctx: RunContext) -> RunResult:
        started = datetime.now(UTC)
        try:
            results = self.results(ctx)
        except TslError as error:
            return RunResult.failed("TslError", error.message, error.caret)
        except HostError as error:
            return RunResult.failed(error.kind, error.message)
        last = results.statements[-1] if results.statements else SeriesSet.empty()
        took_ms = (datetime.now(UTC) - started).total_seconds() * 1000
        gave = (f"gave {len(last)} series, {last.points} points" if isinstance(last, SeriesSet)
                else f"listed {len(last)} item(s)")
        ctx.log([LogLine(int(started.timestamp() * 1000), "info",
                         f"{len(results.statements)} statement(s); the last {gave} "
                         f"in {took_ms:.1f} ms")])
        if not isinstance(last, SeriesSet):   # names(), labels(), …: the list is the result
            return RunResult(RunStatus.SUCCESS, result={"meta": last})
        return within_cap({"series": last.to_json()}, self.max_result_bytes, lambda: {
            "series": [{"name": s.name, "labels": dict(s.labels), "points": len(s.timestamps)}
                       for s in last]}, "the points are")


class TslRuntime:
    name = "tsl"

    def __init__(self, *, max_result_bytes: int = 1 << 20) -> None:
        self.max_result_bytes = max_result_bytes

    def warm(self, *, runs: bool = False) -> None:
        parse_script('select("warm").last(1m)')

    def idle(self) -> None:
        """Nothing to do ahead: a run's state is made from its event when it starts."""

    def prepare(self, source: str, file_name: str) -> TslProgram:
        try:   # names are bound per run: the params differ from one event to the next
            script = tuple(parse_script(source))
        except TslError as error:
            raise CompileError(error.with_place, file=file_name, line=error.line,
                               col=error.char) from None
        return TslProgram(source, script, self.max_result_bytes)
