"""Data into JS: 10,000 points of a series handed to a JavaScript handler (db.select) and back
(db.write), through the production path (the doubles' exact bits as integer lists), beside a
JSON round trip of the same points in one V8 context."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson

from benchmarks.report import Report
from tsq.runtimes.base import HostAnswer, Limits, RunContext
from tsq.runtimes.js import JsRuntime, _Execution
from tsq.runtimes.js.engine import isolate

POINTS = 10_000
HANDLER = """export default async () => {
  const series = await db.select("bench");
  await db.write(series);
  return series[0].values.length;
}"""


def run(report: Report, *, quick: bool) -> None:
    repeat = 20 if quick else 300
    times = np.arange(POINTS, dtype=np.float64) * 10_000 + 1.7e12
    values = np.random.default_rng(1).uniform(0, 100, POINTS)
    answer = HostAnswer({"series": [{"name": "bench", "labels": {}, "count": POINTS}]},
                        (times, values))
    written: list[Any] = []

    def host(op: str, _args: dict[str, Any], arrays: list[Any]) -> HostAnswer:
        if op == "db.select":
            return answer
        written.append(arrays)
        return HostAnswer({"written": len(arrays[1])})

    spent: dict[str, list[float]] = {"db.select": [], "db.write": []}
    serve = _Execution.serve

    def timed(self: _Execution, request: dict[str, Any]) -> None:
        start = time.perf_counter()
        serve(self, request)
        spent[request["op"]].append(time.perf_counter() - start)

    runtime = JsRuntime()
    runtime.warm(runs=True)
    program = runtime.prepare(HANDLER, "bench.js")
    _Execution.serve = timed  # type: ignore[method-assign]
    try:
        for _ in range(repeat):
            result = program.run(RunContext({}, {}, Limits(10, 256), lambda lines: None, {},
                                            host))
            assert result.status == "success" and result.result == POINTS, result
    finally:
        _Execution.serve = serve  # type: ignore[method-assign]
    np.testing.assert_array_equal(written[-1][1], values)  # what came back is what went in
    into, back = _json_round_trip(times, values, repeat)
    report.add("data_into_js", "JSON into JS (10k points)", into)
    report.add("data_into_js", "tsq db.select into a Float64Array (10k)", spent["db.select"],
               "JSON into JS (10k points)")
    report.add("data_into_js", "JSON out of JS (10k points)", back)
    report.add("data_into_js", "tsq db.write from a Float64Array (10k)", spent["db.write"],
               "JSON out of JS (10k points)")
    runtime.close()


def _json_round_trip(times: Any, values: Any, repeat: int) -> tuple[list[float], list[float]]:
    payload = orjson.dumps({"timestamps": times.tolist(), "values": values.tolist()}).decode()
    literal = orjson.dumps(payload).decode()
    into, back = [], []
    deadline = time.monotonic() + 600
    with isolate().context() as context:
        for _ in range(repeat):
            start = time.perf_counter()
            context.eval(f"globalThis.held = JSON.parse({literal}); 0", deadline)
            into.append(time.perf_counter() - start)
            start = time.perf_counter()
            out = orjson.loads(str(context.eval("JSON.stringify(globalThis.held)", deadline)))
            back.append(time.perf_counter() - start)
    assert len(out["values"]) == POINTS
    return into, back
