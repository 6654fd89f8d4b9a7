"""V8 through stpyv8: one long-lived isolate per thread, a fresh context per run, a watchdog.

Why this shape (measured; docs/javascript.md has the figures):
- A new context in a warm isolate costs a fraction of a millisecond, where a new isolate (what
  mini-racer gives, one context per isolate) costs about 5 ms: every run gets a new global
  object and new intrinsics, nothing of the last run, for the price of a context.
- V8 keeps compiled scripts per isolate, keyed by their source, so a script evaluated again in
  a new context (the bootstrap, a loop version's handler) is not compiled again.
- stpyv8 ties an isolate to the thread that entered it, and JavaScript has no timeout of its
  own: `JSEngine.terminateAllThreads()` stops the *calling thread's* isolate, so the watchdog
  thread enters the isolate it guards before it can stop it (from a thread that has not, the
  call crashes the process).
- Only `eval` of source text crosses into V8. Calling a JavaScript function object from Python
  with arguments crashed the process after about a thousand contexts (stpyv8 13.1), so every
  value the host passes is written into the source, as JSON.
- Flags cannot be set once stpyv8 is imported (V8 aborts), so there is no per-isolate heap
  limit: the worker's supervisor watches the process's memory instead.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import STPyV8

__all__ = ["Context", "Isolate", "ScriptFailed", "Stopped", "isolate"]

class Stopped(Exception):
    """The watchdog stopped the evaluation at its deadline."""


class ScriptFailed(Exception):
    """An exception escaped the evaluated script (the host's scripts catch the handler's)."""


class _Watchdog:
    """Stops the isolate's JavaScript when the deadline of the current evaluation passes."""

    def __init__(self, js_isolate: Any) -> None:
        self._js_isolate = js_isolate
        self._changed = threading.Condition()
        self._deadline: float | None = None
        self._waking_at: float | None = None  # when the watchdog wakes next; None: when told
        self._fired = False
        threading.Thread(target=self._watch, name="v8-watchdog", daemon=True).start()

    @contextlib.contextmanager
    def guard(self, deadline: float) -> Iterator[Callable[[], bool]]:
        """While inside, JavaScript of this isolate is stopped at `deadline` (monotonic);
        yields a function telling whether it was."""
        with self._changed:
            self._deadline, self._fired = deadline, False
            # A run evaluates several scripts under one deadline: the watchdog is woken only
            # when it would otherwise wake too late, not once per script (each wake-up costs
            # the running thread a GIL hand-over).
            if self._waking_at is None or deadline < self._waking_at:
                self._changed.notify()
        try:
            yield lambda: self._fired
        finally:
            with self._changed:
                self._deadline = None

    def _watch(self) -> None:
        self._js_isolate.enter()
        with self._changed:
            while True:
                if self._deadline is None:
                    self._waking_at = None
                    self._changed.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._waking_at = self._deadline
                    self._changed.wait(left)
                    continue
                self._deadline, self._fired = None, True
                STPyV8.JSEngine.terminateAllThreads()


class Isolate:
    """A V8 isolate entered by the thread that made it, used from that thread only."""

    def __init__(self) -> None:
        self._js_isolate = STPyV8.JSIsolate()
        self._js_isolate.enter()
        self._owner = threading.get_ident()
        self._watchdog = _Watchdog(self._js_isolate)

    def context(self) -> Context:
        """A fresh context (a new global object and intrinsics): `with isolate.context() as c`."""
        if threading.get_ident() != self._owner:
            raise RuntimeError("a V8 isolate is used from the thread that made it only")
        return Context(self)

    def guard(self, deadline: float) -> contextlib.AbstractContextManager[Callable[[], bool]]:
        return self._watchdog.guard(deadline)

    def settle(self) -> None:
        """Take a termination the watchdog requested after the script it aimed at had ended,
        so that it cannot stop the next one."""
        with contextlib.suppress(Exception), STPyV8.JSContext() as scratch:
            scratch.eval("for (let i = 0; i < 2; i++) {}")


class Context:
    def __init__(self, owner: Isolate) -> None:
        self._isolate = owner
        self._js = STPyV8.JSContext()

    def __enter__(self) -> Context:
        self._js.enter()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._js.leave()

    def eval(self, script: str, deadline: float) -> Any:
        """The value of `script` (strings, numbers, booleans and None come back as Python's);
        microtasks it queued have run when it returns. Raises Stopped past `deadline`."""
        with self._isolate.guard(deadline) as fired:
            try:
                value = self._js.eval(script)
            except Exception as exc:  # stpyv8 maps JS errors to Python ones (RangeError…)
                if fired():
                    raise Stopped from None
                raise ScriptFailed(str(exc)) from None
        if fired():
            self._isolate.settle()
            raise Stopped
        return value


_local = threading.local()


def isolate() -> Isolate:
    """The calling thread's isolate, made on first use."""
    found: Isolate | None = getattr(_local, "isolate", None)
    if found is None:
        found = _local.isolate = Isolate()
    return found
