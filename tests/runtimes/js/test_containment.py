"""What a handler cannot do to the runs after it: each run gets a fresh V8 context in the
worker's long-lived isolate, and the isolate's watchdog stops JavaScript at the deadline, after
which the same isolate serves the next run."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from tsq.hostcalls import HostAnswer
from tsq.outcomes import RunStatus
from tsq.runtimes.base import Limits, LogLine, RunContext, RunResult
from tsq.runtimes.js import JsRuntime


@pytest.fixture(scope="module")
def runtime() -> JsRuntime:
    made = JsRuntime()
    made.warm(runs=True)
    return made


def run(runtime: JsRuntime, source: str, *, timeout: float = 2.0, event: Any = None,
        host: Any = None, logs: list[LogLine] | None = None) -> RunResult:
    program = runtime.prepare(source, "handler.js")
    sink = logs if logs is not None else []
    ctx = RunContext(event or {}, {}, Limits(timeout_s=timeout, memory_mb=128), sink.extend,
                     {}, host)
    return program.run(ctx)


@pytest.mark.parametrize("made_ahead", [False, True], ids=["made-at-start", "made-ahead"])
def test_globals_and_prototypes_do_not_reach_the_next_run(runtime: JsRuntime,
                                                          made_ahead: bool) -> None:
    """Also when the worker makes the next run's context between runs (JsRuntime.idle)."""
    polluter = """export default async () => {
      globalThis.leaked = 1; Object.prototype.polluted = 2; Array.prototype.push = null;
      JSON.stringify = () => "poisoned"; return "set" }"""
    probe = """export default async () => [typeof leaked, ({}).polluted === undefined,
      typeof Array.prototype.push, JSON.stringify({a: 1})]"""

    def then(result: RunResult) -> Any:
        if made_ahead:
            runtime.idle()
        return result.result

    assert then(run(runtime, polluter)) == "set"
    expected = ["undefined", True, "function", '{"a":1}']
    assert then(run(runtime, probe)) == expected  # another loop
    assert then(run(runtime, polluter)) == "set"
    assert then(run(runtime, polluter.replace('"set"', "typeof leaked"))) == "number"
    assert then(run(runtime, probe)) == expected


@pytest.mark.parametrize("name, source", [
    ("spin", "export default async () => { while (true) {} }"),
    ("spin after await", "export default async () => { await null; while (true) {} }"),
    ("spin in a timer", "export default () => new Promise(() => setTimeout(() => { while (true) {} }, 1))"),
    ("microtask bomb", "export default async () => { const again = () => Promise.resolve().then(again); again() }"),
    ("never settles", "export default () => new Promise(() => {})"),
])
def test_the_watchdog_stops_it_at_the_deadline_and_the_isolate_goes_on(
        runtime: JsRuntime, name: str, source: str) -> None:
    started = time.monotonic()
    result = run(runtime, source, timeout=0.3)
    took = time.monotonic() - started
    assert result.status == RunStatus.TIMEOUT, (name, result)
    assert 0.3 <= took < 1.5, (name, took)
    assert run(runtime, "export default async () => 6 * 7").result == 42


def test_poisoned_intrinsics_do_not_fool_the_host(runtime: JsRuntime) -> None:
    source = """export default async () => {
      Promise.prototype.then = function () { return 13 };
      Promise.resolve = () => 13; JSON.parse = () => 13;
      return {kept: await new Promise(ok => setTimeout(() => ok(5), 1))} }"""
    assert run(runtime, source).result == {"kept": 5}


def test_deep_recursion_fails_clearly(runtime: JsRuntime) -> None:
    result = run(runtime, "function f(n) { return f(n + 1) + 1 }\nexport default async () => f(0)")
    assert result.status == RunStatus.FAILED and result.error is not None
    assert (result.error.type, result.error.message) == ("RangeError",
                                                        "Maximum call stack size exceeded")


def test_timers_fire_in_order_and_clear(runtime: JsRuntime) -> None:
    source = """export default () => new Promise(done => {
      const seen = [];
      setTimeout(() => seen.push("b"), 30);
      setTimeout(() => seen.push("a"), 0);
      const dropped = setTimeout(() => seen.push("never"), 10);
      clearTimeout(dropped);
      setTimeout((x, y) => { seen.push(x + y); done(seen) }, 60, "c", "!");
    })"""
    started = time.monotonic()
    assert run(runtime, source).result == ["a", "b", "c!"]
    assert time.monotonic() - started >= 0.06


def test_a_throwing_timer_fails_the_run(runtime: JsRuntime) -> None:
    source = "export default () => new Promise(() => setTimeout(() => { throw new TypeError('late') }, 5))"
    result = run(runtime, source)
    assert result.status == RunStatus.FAILED and result.error is not None
    assert (result.error.type, result.error.message) == ("TypeError", "late")


def test_bulk_numbers_cross_exactly_both_ways(runtime: JsRuntime) -> None:
    times = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 1.7e12 + 0.5])
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324, 1.7976931348623157e308])
    written: list[list[Any]] = []

    def host(op: str, args: dict[str, Any], arrays: list[Any]) -> HostAnswer:
        if op == "db.select":
            return HostAnswer({"series": [{"name": "x", "labels": {}, "count": len(times)}]},
                              (times, values))
        written.append(arrays)
        return HostAnswer({"written": len(arrays[0])})

    source = """export default async () => {
      const [s] = await db.select("x");
      await db.write({name: "y", labels: {}, timestamps: s.timestamps, values: s.values});
      return [s.values.length, Object.is(s.values[3], -0), s.values[4] === 5e-324] }"""
    result = run(runtime, source, host=host)
    assert result.result == [6, True, True], result
    (out_times, out_values), = written
    assert out_times.tobytes() == times.tobytes()
    assert out_values.tobytes() == values.tobytes()  # NaN, infinities and -0 bit for bit
