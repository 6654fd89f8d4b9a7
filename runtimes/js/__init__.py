"""The JavaScript runtime: handlers run in V8 through stpyv8, a fresh context per run.

How a run goes (engine.py says why V8 is used this way, docs/javascript.md shows the figures):
- `prepare` parses the handler with acorn in a trusted context and rewrites ES module syntax
  into one function expression (transform.js); syntax errors carry line and column.
- `run` makes a fresh context in the worker's long-lived isolate, evaluates the bootstrap
  (bootstrap.js) and the handler's code in it (both compiled once per isolate: V8 caches scripts
  by their source), starts the handler, then evaluates `__tsq.poll()` and `__tsq.report()`,
  a string the bootstrap builds, until the handler settles or the deadline passes. Nothing
  blocks on a JavaScript promise, and JavaScript cannot call into Python.
- Every evaluation runs under the isolate's watchdog, which stops JavaScript at the run's
  deadline, a spin after an `await` included; the isolate then serves the next run.
- The context is dropped afterwards, so no state leaks from one run to the next.
What the watchdog cannot stop (a fatal allocation: V8 aborts the process) is handled one level
up: the worker supervisor replaces the process and reports the run.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from importlib import resources
from typing import Any

import numpy as np
import orjson

from tsq.errors import CompileError, HostError, TsqError
from tsq.hostcalls import HostAnswer, handler_arguments, js_series, rejection
from tsq.runtimes.base import LogLine, RunContext, RunResult, RunStatus
from tsq.runtimes.js.engine import Context, ScriptFailed, Stopped, isolate

__all__ = ["WORKER_OPS", "JsProgram", "JsRuntime"]

COMPILE_TIMEOUT_S = 5.0
INTERNAL_SOURCE = "tsq:internal"  # stack frames of the bootstrap, hidden from users
OUTPUT_CAPS = {"maxLines": 10_000, "maxLogChars": 4 << 20, "maxLineChars": 8192,
               "maxTimers": 10_000}
POLL_INTERVALS_S = (0.0, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _compact(script: str) -> str:
    """`script` (tsq's own JavaScript, which has no multi-line strings or template literals)
    without comment lines or indentation, and in ASCII: stpyv8 keeps the source of every script
    it evaluates for as long as the process lives, so the bootstrap, evaluated in every run's
    fresh context, costs its size in memory per run. One non-ASCII character would make V8
    store it with two bytes a character."""
    lines = (line.strip() for line in script.splitlines())
    kept = "\n".join(line for line in lines if line and not line.startswith("//"))
    return _NON_ASCII.sub(lambda found: f"\\u{ord(found.group()):04x}", kept)


_NON_ASCII = re.compile("[\u0080-\uffff]")


class _Compiler:
    """A trusted context holding acorn, used for parsing only, never for user code. It lives on
    a thread of its own, as V8 is used from the thread that made the isolate, and deploys
    arrive on whichever thread the web server picks."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="v8-compiler")
        self._context: Context | None = None

    def transform(self, source: str, file_name: str) -> str:
        answer = self._thread.submit(self._transform, source).result()
        result: dict[str, Any] = orjson.loads(answer)
        if "error" in result:
            raise CompileError(result["error"], file=file_name, line=result.get("line"),
                               col=result.get("col"))
        return str(result["code"])

    def _transform(self, source: str) -> str:
        deadline = time.monotonic() + COMPILE_TIMEOUT_S
        if self._context is None:
            self._context = isolate().context().__enter__()
            self._context.eval(_asset("vendor/acorn.js"), deadline)
            self._context.eval(_asset("transform.js"), deadline)
        return str(self._context.eval(f"tsqTransform({_js_string(source)})", deadline))


_compiler = _Compiler()
_spare = threading.local()  # the next run's context of this thread's isolate (JsRuntime.idle)


class JsRuntime:
    """`max_result_bytes` caps a run's JSON result."""

    name = "js"

    def __init__(self, *, max_result_bytes: int = 1 << 20) -> None:
        self.max_result_bytes = max_result_bytes
        caps = {**OUTPUT_CAPS, "maxResultChars": max_result_bytes}
        self.bootstrap = (f"{_compact(_asset('bootstrap.js'))}({orjson.dumps(caps).decode()})"
                          f"\n//# sourceURL={INTERNAL_SOURCE}")

    def warm(self, *, runs: bool = False) -> None:
        """Set V8 up now: the compiler, and if `runs`, this thread's isolate with the next
        run's context ready, so that the first run pays neither."""
        _compiler.transform("module.exports = () => null", "warm-up.js")
        if runs:
            self.idle()

    def idle(self) -> None:
        """Make the next run's context now, between runs: a new context with only the
        bootstrap evaluated in it. No handler has touched it, so it is as fresh as one made at
        the run's start, and making it (two thirds of a no-op run) leaves the run's path."""
        if getattr(_spare, "context", None) is None:
            context = isolate().context()
            with context:
                context.eval(self.bootstrap, time.monotonic() + COMPILE_TIMEOUT_S)
            _spare.context, _spare.bootstrap = context, self.bootstrap

    def fresh_context(self) -> Context:
        """The context made ahead for this thread's next run, or a new one; used once."""
        context: Context | None = getattr(_spare, "context", None)
        if context is not None and _spare.bootstrap == self.bootstrap:
            _spare.context = None
            return context
        context = isolate().context()
        with context:
            context.eval(self.bootstrap, time.monotonic() + COMPILE_TIMEOUT_S)
        return context

    def close(self) -> None:
        """Nothing to release: the isolate lives as long as its thread."""

    def prepare(self, source: str, file_name: str) -> JsProgram:
        code = _compiler.transform(source, file_name)
        return JsProgram(code, file_name, self)


class JsProgram:
    def __init__(self, code: str, file_name: str, runtime: JsRuntime) -> None:
        self.file_name = file_name
        self.runtime = runtime
        # One source per version, so V8 compiles it once per isolate and reuses it after.
        self.load = f"__tsq.load({code})\n//# sourceURL={file_name}"

    def run(self, ctx: RunContext) -> RunResult:
        began = time.perf_counter()
        with self.runtime.fresh_context() as context:
            return _Execution(context, self, ctx, began).run()


class _Execution:
    def __init__(self, context: Context, program: JsProgram, ctx: RunContext,
                 began: float) -> None:
        self.began = began
        self.init_ms: float | None = None  # the context, the bootstrap and the handler's code
        self.context = context
        self.program = program
        self.ctx = ctx
        self.deadline = time.monotonic() + ctx.limits.timeout_s
        self.answers: list[list[Any]] = []  # host answers waiting for the next poll

    def run(self) -> RunResult:
        return replace(self.outcome(), init_ms=self.init_ms)

    def outcome(self) -> RunResult:
        try:
            self.start()
            return self.wait()
        except Stopped:
            return self.timed_out()
        except ScriptFailed as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else "Error"
            return RunResult.failed("Error", message, str(exc))

    def eval(self, script: str) -> Any:
        return self.context.eval(script, self.deadline)

    def start(self) -> None:
        deadline_ms = int((time.time() + self.ctx.limits.timeout_s) * 1000)
        context = {**self.ctx.info, "deadlineMs": deadline_ms}
        self.eval(self.program.load)
        self.init_ms = (time.perf_counter() - self.began) * 1000
        self.eval(f"__tsq.start({_js_json(self.ctx.event)}, {_js_json(context)}, "
                  f"{_js_json(self.ctx.env)})")

    def wait(self) -> RunResult:
        attempt = 0
        while True:
            answers, self.answers = self.answers, []
            if answers:
                self.eval(f"__tsq.poll({_js_json(answers)})")
                attempt = 0
            elif attempt:
                self.eval("__tsq.poll()")
            report = orjson.loads(str(self.eval("__tsq.report()")))
            self.forward_logs(report["logs"])
            if report["requests"]:
                for request in report["requests"]:
                    self.serve(request)
                continue  # the answers go in with the next poll
            outcome = report["outcome"]
            if outcome is not None or time.monotonic() >= self.deadline:
                self.note_dropped(report["dropped"])
                return self.timed_out() if outcome is None else self.settled(outcome)
            pause = POLL_INTERVALS_S[min(attempt, len(POLL_INTERVALS_S) - 1)]
            if report["nextTimerMs"] is not None:
                pause = min(pause, report["nextTimerMs"] / 1000) if attempt else 0.0
            time.sleep(max(0.0, min(pause, self.deadline - time.monotonic())))
            attempt += 1

    def serve(self, request: dict[str, Any]) -> None:
        """Answer one host call of the handler (db.*, tsl(), Loop.run, artifacts.*); the answer
        reaches JavaScript with the next poll, bulk numbers ahead of it as exact words."""
        rid, op, args = int(request["id"]), str(request["op"]), request["args"]
        try:
            answer = self.answer(rid, op, args)
            if answer.arrays:
                packed = np.concatenate([np.asarray(a, dtype=np.float64) for a in answer.arrays])
                words = orjson.dumps(packed.view(np.int32), option=orjson.OPT_SERIALIZE_NUMPY)
                self.eval(f"__tsq.fill({rid}, {words.decode()})")
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
            packed = self.numbers(rid)
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
            return self.raw_bytes(rid), content_type
        series = reports.series_from_js(method, args.get("series"), self.numbers(rid))
        if op == "artifacts.csv":
            return reports.csv_bytes(series), None
        options = reports.chart_options(args.get("options"))
        return reports.chart_bytes(series, options, reports.chart_format(name)), None

    def numbers(self, rid: int) -> Any:
        """The doubles of request `rid` (times then values), bit for bit."""
        return _words(self.eval(f"__tsq.numbers({rid})"), np.int32).view(np.float64)

    def raw_bytes(self, rid: int) -> bytes:
        """The bytes of request `rid` (artifacts.save)."""
        return bytes(_words(self.eval(f"__tsq.bytes({rid})"), np.uint8).tobytes())

    def settled(self, outcome: dict[str, Any]) -> RunResult:
        if outcome["ok"]:
            return RunResult(RunStatus.SUCCESS, result=orjson.loads(outcome["value"]))
        error: dict[str, Any] = outcome["error"]
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


def _words(text: Any, dtype: Any) -> Any:
    """The integers of a comma-separated list (how typed arrays cross from V8: only text does)."""
    if not text:
        return np.empty(0, dtype=dtype)
    return np.fromstring(str(text), dtype=dtype, sep=",")


def _js_string(text: str) -> str:
    return orjson.dumps(text).decode()


def _js_json(value: Any) -> str:
    """A JS string literal holding the JSON of `value` (parsed inside V8 by the bootstrap)."""
    return _js_string(orjson.dumps(value).decode())


