"""The JavaScript runtime: handlers run in V8 through mini-racer, one fresh instance per run.

How a run goes (see shared/notes/runtime-facts.md for the measurements behind each choice):
- `prepare` parses the handler with acorn in a trusted instance and rewrites ES module syntax
  into one function expression (transform.js); syntax errors carry line and column.
- `run` takes a fresh instance from an `InstancePool` (already bootstrapped, see bootstrap.js),
  starts the handler with an evaluation that has a timeout, then polls `__tsq.poll()`, a string
  the bootstrap builds, until the handler settles or the deadline passes. Nothing blocks on a
  JavaScript promise, and JavaScript cannot call into Python.
- The instance is always discarded afterwards, so no state leaks from one run to the next.
What polling cannot stop (a spin after an `await`, a fatal allocation) is handled one level up:
the worker supervisor kills the whole process at the deadline or memory ceiling.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np
import orjson
from py_mini_racer import (
    JSEvalException,
    JSOOMException,
    JSTimeoutException,
    MiniRacer,
)

from tsq.errors import CompileError, HostError, TsqError
from tsq.hostcalls import HostAnswer, handler_arguments, js_series, rejection
from tsq.runtimes.base import LogLine, RunContext, RunResult, RunStatus
from tsq.runtimes.js.pool import InstancePool, new_instance

__all__ = ["WORKER_OPS", "JsProgram", "JsRuntime"]

COMPILE_TIMEOUT_S = 5.0
INTERNAL_SOURCE = "tsq:internal"  # stack frames of the bootstrap, hidden from users
OUTPUT_CAPS = {"maxLines": 10_000, "maxLogChars": 4 << 20, "maxLineChars": 8192,
               "maxTimers": 10_000}
POLL_INTERVALS_S = (0.0, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


class _Compiler:
    """A trusted V8 instance holding acorn; used for parsing only, never for user code."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instance: MiniRacer | None = None

    def transform(self, source: str, file_name: str) -> str:
        with self._lock:
            if self._instance is None:
                self._instance = new_instance(_asset("vendor/acorn.js"), _asset("transform.js"))
            answer = self._instance.eval(
                f"tsqTransform({_js_string(source)})", timeout_sec=COMPILE_TIMEOUT_S
            )
        result: dict[str, Any] = orjson.loads(str(answer))
        if "error" in result:
            raise CompileError(result["error"], file=file_name, line=result.get("line"),
                               col=result.get("col"))
        return str(result["code"])


_compiler = _Compiler()


class JsRuntime:
    """`max_result_bytes` caps a run's JSON result; `pool_size` is how many fresh instances
    wait ready (each costs ~1 MB idle and ~6 ms to create)."""

    name = "js"

    def __init__(self, *, max_result_bytes: int = 1 << 20, pool_size: int = 2) -> None:
        self.max_result_bytes = max_result_bytes
        self.pool_size = pool_size
        self._pool: InstancePool | None = None

    @property
    def pool(self) -> InstancePool:
        if self._pool is None:
            caps = {**OUTPUT_CAPS, "maxResultChars": self.max_result_bytes}
            bootstrap = (f"{_asset('bootstrap.js')}({orjson.dumps(caps).decode()})"
                         f"\n//# sourceURL={INTERNAL_SOURCE}")
            self._pool = InstancePool(bootstrap, size=self.pool_size)
        return self._pool

    def warm(self, *, runs: bool = False) -> None:
        """Set V8 up now, on the calling thread: the compiler, and the pool if `runs`.

        Call it from the main thread: V8 instances first created on a short-lived thread
        (a web server's thread pool) crashed the process later (mini-racer 0.14).
        """
        _compiler.transform("module.exports = () => null", "warm-up.js")
        if runs:
            _ = self.pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def prepare(self, source: str, file_name: str) -> JsProgram:
        code = _compiler.transform(source, file_name)
        return JsProgram(code, file_name, self)


class JsProgram:
    def __init__(self, code: str, file_name: str, runtime: JsRuntime) -> None:
        self.code = code
        self.file_name = file_name
        self.runtime = runtime

    def run(self, ctx: RunContext) -> RunResult:
        instance = self.runtime.pool.take(ctx.limits.memory_mb)
        try:
            return _Execution(instance, self, ctx).run()
        finally:
            self.runtime.pool.discard(instance)


class _Execution:
    def __init__(self, instance: MiniRacer, program: JsProgram, ctx: RunContext) -> None:
        self.instance = instance
        self.program = program
        self.ctx = ctx
        self.deadline = time.monotonic() + ctx.limits.timeout_s
        self.answers: list[list[Any]] = []  # host answers waiting for the next poll

    def run(self) -> RunResult:
        try:
            self.start()
            return self.wait()
        except JSTimeoutException:
            return self.timed_out()
        except JSOOMException:
            return self.out_of_memory()
        except JSEvalException as exc:
            if self.instance.was_hard_memory_limit_reached():
                return self.out_of_memory()
            return RunResult.failed("Error", str(exc).strip().splitlines()[-1], str(exc))

    def start(self) -> None:
        deadline_ms = int((time.time() + self.ctx.limits.timeout_s) * 1000)
        context = {**self.ctx.info, "deadlineMs": deadline_ms}
        script = (
            f"__tsq.start({self.program.code}, {_js_json(self.ctx.event)}, "
            f"{_js_json(context)}, {_js_json(self.ctx.env)})"
            f"\n//# sourceURL={self.program.file_name}"
        )
        self.instance.eval(script, timeout_sec=self.remaining())

    def wait(self) -> RunResult:
        attempt = 0
        while True:
            answers, self.answers = self.answers, []
            call = f"__tsq.poll({_js_json(answers)})" if answers else "__tsq.poll()"
            report = orjson.loads(str(self.instance.eval(call, timeout_sec=self.remaining())))
            self.forward_logs(report["logs"])
            if report["requests"]:
                for request in report["requests"]:
                    self.serve(request)
                attempt = 0
                continue  # the answers go in with the next poll
            outcome = report["outcome"]
            if outcome is not None or time.monotonic() >= self.deadline:
                self.note_dropped(report["dropped"])
                return self.timed_out() if outcome is None else self.settled(outcome)
            time.sleep(POLL_INTERVALS_S[min(attempt, len(POLL_INTERVALS_S) - 1)])
            attempt += 1

    def serve(self, request: dict[str, Any]) -> None:
        """Answer one host call of the handler (db.*, tsl(), Loop.run, artifacts.*); the answer
        reaches JavaScript with the next poll, bulk numbers through a buffer filled in place."""
        rid, op, args = int(request["id"]), str(request["op"]), request["args"]
        try:
            answer = self.answer(rid, op, args)
            if answer.arrays:
                times, values = answer.arrays
                view = self.float_view(f"__tsq.allocate({rid}, {len(times)})")
                view[:len(times)] = times
                view[len(times):] = values
            self.answers.append([rid, True, answer.meta])
        except TsqError as exc:
            kind, message = rejection(exc, op)
            self.answers.append([rid, False, {"type": kind, "message": message}])

    def answer(self, rid: int, op: str, args: dict[str, Any]) -> HostAnswer:
        """The worker's ops of the contract (tsl(), the artifacts) are made here; the rest goes
        to the service."""
        local = WORKER_OPS.get(op)
        if local is not None:
            return local(self, rid, op, args)
        arrays = []
        if op == "db.write" and "series" in args:
            packed = self.float_view(f"__tsq.buffer({rid})").copy()  # V8 may free it later
            arrays = [packed[:len(packed) // 2], packed[len(packed) // 2:]]
        return self.ctx.host(op, args, arrays)

    def tsl(self, _rid: int, _op: str, args: dict[str, Any]) -> HostAnswer:
        """tsl(query): evaluated here, in the worker, reading the store through host calls."""
        from tsq.runtimes.tsl.runtime import evaluate_for_run  # TSL loads only when used

        found = evaluate_for_run(str(args["query"]), dict(args.get("variables") or {}),
                                 self.ctx)
        return js_series(found, "tsl() returns numbers; the query")

    def ws(self, _rid: int, _op: str, args: dict[str, Any]) -> HostAnswer:
        """ws(script): run here, in the worker, on the WarpScript VM, FETCH and UPDATE reaching
        the store through host calls; answers the stack, top first, as JSON."""
        from tsq.runtimes.ws.runtime import execute_for_run  # the VM loads only when used

        stack = execute_for_run(str(args["script"]), dict(args.get("variables") or {}),
                                self.ctx, timeout_s=self.remaining())
        return HostAnswer({"stack": stack})

    def artifact(self, rid: int, op: str, args: dict[str, Any]) -> HostAnswer:
        """artifacts.*: the file's bytes made here (a CSV or chart rendered from the handler's
        series, or the text or bytes it gave), then kept with the run by the service as
        `artifact.put`, so only the finished file crosses the pipe."""
        method = str(args.get("method"))
        with handler_arguments():
            data, content_type = self.artifact_content(rid, op, method, args)
        put = {"name": args["name"], "contentType": content_type}
        try:
            return self.ctx.host("artifact.put", put, [np.frombuffer(data, dtype=np.uint8)])
        except TsqError as exc:
            kind, message = rejection(exc, "artifact.put")
            raise HostError(kind, f"artifacts.{method}({args['name']!r}): {message}") from None

    def artifact_content(self, rid: int, op: str, method: str, args: dict[str, Any]
                         ) -> tuple[bytes, str | None]:
        """The bytes of the artifact asked for and its content type (None: the extension's)."""
        from tsq import reports  # pandas and matplotlib load only when a report is made

        name = reports.check_name(method, args.get("name"))
        if op == "artifacts.put":
            content_type = reports.check_content_type(method, args.get("contentType"))
            if "text" in args:
                return str(args["text"]).encode(), content_type
            return self.byte_view(f"__tsq.buffer({rid})").tobytes(), content_type
        series = reports.series_from_js(method, args.get("series"),
                                        self.float_view(f"__tsq.buffer({rid})"))
        if op == "artifacts.csv":
            return reports.csv_bytes(series), None
        options = reports.chart_options(args.get("options"))
        return reports.chart_bytes(series, options, reports.chart_format(name)), None

    def byte_view(self, script: str) -> Any:
        """A uint8 numpy view of the ArrayBuffer `script` returns (valid during this call)."""
        buffer = self.instance.eval(script, timeout_sec=self.remaining())
        if not isinstance(buffer, memoryview):
            raise HostError("TypeError", "the series to write must hold numbers")
        return np.frombuffer(buffer, dtype=np.uint8)

    def float_view(self, script: str) -> Any:
        """A float64 numpy view of the ArrayBuffer `script` returns (valid during this call)."""
        return self.byte_view(script).view(np.float64)

    def settled(self, outcome: dict[str, Any]) -> RunResult:
        if outcome["ok"]:
            return RunResult(RunStatus.SUCCESS, result=orjson.loads(outcome["value"]))
        error: dict[str, Any] = outcome["error"]
        if self.instance.was_hard_memory_limit_reached():
            return self.out_of_memory()
        return RunResult.failed(str(error.get("type") or "Error"), str(error.get("message", "")),
                                _user_frames(str(error.get("stack", ""))))

    def forward_logs(self, rows: list[list[Any]]) -> None:
        if rows:
            self.ctx.log([LogLine(int(ts), level, message) for ts, level, message in rows])

    def note_dropped(self, dropped: int) -> None:
        if dropped:
            message = f"{dropped} more log lines were dropped: a run keeps at most " \
                      f"{OUTPUT_CAPS['maxLines']} lines and {OUTPUT_CAPS['maxLogChars']} characters"
            self.ctx.log([LogLine(int(time.time() * 1000), "warning", message)])

    def remaining(self) -> float:
        return max(0.001, self.deadline - time.monotonic())

    def timed_out(self) -> RunResult:
        return RunResult.timed_out(self.ctx.limits.timeout_s)

    def out_of_memory(self) -> RunResult:
        return RunResult.over_memory(self.ctx.limits.memory_mb)


# The contract's worker ops (tsq.hostcalls, side "worker"), each made here by its method.
WORKER_OPS: dict[str, Callable[[_Execution, int, str, dict[str, Any]], HostAnswer]] = {
    "tsl": _Execution.tsl,
    "ws": _Execution.ws,
    "artifacts.put": _Execution.artifact,
    "artifacts.csv": _Execution.artifact,
    "artifacts.chart": _Execution.artifact,
}


def _user_frames(stack: str) -> str:
    return "\n".join(line for line in stack.splitlines() if INTERNAL_SOURCE not in line)


def _js_string(text: str) -> str:
    return orjson.dumps(text).decode()


def _js_json(value: Any) -> str:
    """A JS string literal holding the JSON of `value` (parsed inside V8 by the bootstrap)."""
    return _js_string(orjson.dumps(value).decode())


