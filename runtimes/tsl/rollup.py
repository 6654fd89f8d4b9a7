"""Rollup loops (the loop file's `rollup:` shorthand): a TSL loop whose result replaces its
window of the target series.

The generated TSL is the loop's source. A run evaluates it for its window and hands the result to
the store in one `series.replace` call, which deletes what the target series held in the window
before writing, so running a window again (a retry, a resume, a backfill) never duplicates it.
The run owns the buckets stamped in [start, end): a bucket is labelled by its start
(docs/time.md, tsq.shorthands).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tsq.errors import HostError, TslError
from tsq.hostcalls import series_message
from tsq.kernels.maps import subset
from tsq.runtimes.base import LogLine, Program, RunContext, RunResult, RunStatus
from tsq.series import NS_PER_MS, SeriesSet

from .runtime import TslProgram, TslRuntime

__all__ = ["RollupRuntime"]


class RollupProgram:
    def __init__(self, query: TslProgram) -> None:
        self.query = query

    def run(self, ctx: RunContext) -> RunResult:
        window = ctx.event.get("window")
        if not window:
            return RunResult.failed("NoWindow", (
                "a rollup runs for a window: let its schedule, an `after:` trigger or "
                "`tsq backfill` run it, not a plain manual run"))
        started = datetime.now(UTC)
        start, end = int(window["startMs"]) * NS_PER_MS, int(window["endMs"]) * NS_PER_MS
        try:
            results = self.query.results(ctx)
            output = results.statements[-1] if results.statements else SeriesSet.empty()
            if not isinstance(output, SeriesSet):
                return RunResult.failed("TslError", "a rollup's query must give series")
            stamps = output.timestamps
            output = subset(output, (stamps >= start) & (stamps < end))
            if output.points == 0:
                return _kept(ctx, window)
            meta, arrays = series_message(output)
            answer = ctx.host("series.replace", {**meta, "start": start, "end": end},
                              list(arrays))
        except TslError as error:
            return RunResult.failed("TslError", error.message, error.caret)
        except HostError as error:
            return RunResult.failed(error.kind, error.message)
        took_ms = (datetime.now(UTC) - started).total_seconds() * 1000
        written, replaced = answer.meta["written"], answer.meta["deleted"]
        ctx.log([LogLine(int(started.timestamp() * 1000), "info",
                         f"rolled up the window into {len(output)} series, {written} points "
                         f"({replaced} points of an earlier run replaced) in {took_ms:.1f} ms")])
        return RunResult(RunStatus.SUCCESS, result={
            "series": len(output), "written": written, "replaced": replaced,
            "window": [window["start"], window["end"]]})


def _kept(ctx: RunContext, window: dict[str, Any]) -> RunResult:
    """An empty window replaces nothing: its raw points may be gone (retention deletes them
    once rollups cover them), and running it again must not erase the rollup it made then."""
    ctx.log([LogLine(int(datetime.now(UTC).timestamp() * 1000), "warning",
                     "the source has no points in this window; whatever an earlier run wrote "
                     "for it is kept")])
    return RunResult(RunStatus.SUCCESS, result={"series": 0, "written": 0, "replaced": 0,
                                        "window": [window["start"], window["end"]]})


class RollupRuntime:
    name = "rollup"

    def __init__(self, *, max_result_bytes: int = 1 << 20) -> None:
        self.query = TslRuntime(max_result_bytes=max_result_bytes)

    def warm(self, *, runs: bool = False) -> None:
        self.query.warm(runs=runs)

    def idle(self) -> None:
        """Nothing to do ahead: a run's state is made from its event when it starts."""

    def prepare(self, source: str, file_name: str) -> Program:
        return RollupProgram(self.query.prepare(source, file_name))
