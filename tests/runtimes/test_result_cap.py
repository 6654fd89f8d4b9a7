"""A run's result is capped in bytes of JSON in every runtime: over the cap, the record keeps a
summary and says what was left out (the data itself belongs in the store)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tsq.hostcalls import HostAnswer, series_message
from tsq.outcomes import RunStatus
from tsq.runtimes.base import Limits, RunContext
from tsq.runtimes.tsl.runtime import TslRuntime
from tsq.runtimes.ws.runtime import WsRuntime
from tsq.series import SeriesSet

POINTS = 50
SERIES = SeriesSet(("cpu", "cpu"), ({"host": "a"}, {"host": "b"}),
                   np.tile(np.arange(POINTS, dtype=np.int64) * 60_000, 2),
                   np.arange(2 * POINTS, dtype=np.float64), np.array([0, POINTS, 2 * POINTS]))


def host(op: str, args: dict[str, Any], arrays: list[Any]) -> HostAnswer:
    assert op == "series.select", op
    return HostAnswer(*series_message(SERIES))


def context() -> RunContext:
    return RunContext({}, {}, Limits(timeout_s=5, memory_mb=128), lambda lines: None, {}, host)


@pytest.mark.parametrize("cap, kept", [(1 << 20, True), (300, False)])
def test_tsl_keeps_the_points_under_the_cap_and_counts_them_over_it(cap: int, kept: bool
                                                                    ) -> None:
    program = TslRuntime(max_result_bytes=cap).prepare('select("cpu")', "q.tsl")
    result = program.run(context())
    assert result.status == RunStatus.SUCCESS and isinstance(result.result, dict)
    if kept:
        assert "truncated" not in result.result
        assert [len(s["values"]) for s in result.result["series"]] == [POINTS, POINTS]
    else:
        assert result.result["series"] == [
            {"name": "cpu", "labels": {"host": "a"}, "points": POINTS},
            {"name": "cpu", "labels": {"host": "b"}, "points": POINTS}]
        assert result.result["truncated"] == ("the points are left out: the result is over "
                                              "300 bytes as JSON")


@pytest.mark.parametrize("cap, kept", [(1 << 20, True), (100, False)])
def test_warpscript_keeps_the_stack_under_the_cap_and_names_its_types_over_it(
        cap: int, kept: bool) -> None:
    program = WsRuntime(max_result_bytes=cap).prepare(f"'{'x' * 200}' 42", "s.mc2")
    result = program.run(context())
    assert result.status == RunStatus.SUCCESS and isinstance(result.result, dict)
    if kept:
        assert result.result == {"stack": [42, "x" * 200]}
    else:
        assert result.result == {"stack": ["int", "str"], "truncated": (
            "the stack is left out: the result is over 100 bytes as JSON")}
