"""The WarpScript stack VM.

Words are methods found by name, as byterun finds `byte_<OP>`: the word `DUP` is `w_DUP`, and
words that are not Python names (`+`, `->LIST`, `mapper.sum`) come from tables: `SYMBOLS` maps
a word to its method, and operator families (arithmetic, comparisons, math functions, time
units) are tables of one function each, turned into words by one generic method. The frameworks
and their functions (BUCKETIZE, MAP, …, `mapper.*`, `reducer.*`) live in `frameworks.py`.

Two kinds of failure are kept apart: a `Fault` is the VM refusing a word (an empty stack, a
wrong type, an unknown variable, a limit), a `Fail` is the script's own FAIL, ASSERT or MSGFAIL.
Both become `WarpScriptError` with the line and column of the word, and its `kind`.

Limits, as Warp 10's (each can be lowered by the script, and raised only up to its hard value):
MAXOPS (words run), MAXDEPTH (stack depth), MAXLOOP (ms a single loop may spin), MAXRECURSION
(nested macros), MAXBUCKETS (buckets a BUCKETIZE may make), and size caps on lists, maps, strings
and GTS (`max_items`), plus the run's own deadline.
"""

from __future__ import annotations

import math
import operator
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from tsq import querybudget
from tsq.errors import TsqError, WarpScriptError
from tsq.regex import Pattern, RegexError, compile_user

from . import frameworks, gtswords, store, timewords
from .faults import Fail, Fault, LimitHit
from .faults import describe as _describe
from .faults import is_number as _is_number
from .reader import EARLY, LOAD, MACRO, PUSH, RUN, WORD, Op, read
from .values import MARK, Gts, Macro, type_name

__all__ = ["Fail", "Fault", "Limits", "Vm"]

STU = 1_000_000  # platform time units per second: microseconds, Warp 10's default


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Return(Exception):
    def __init__(self, levels: int = 1) -> None:
        super().__init__()
        self.levels = levels


class _Stop(Exception):
    pass


@dataclass(frozen=True)
class Limits:
    maxops: int = 50_000_000
    maxdepth: int = 100_000
    maxloop_ms: int = 60_000
    maxrecursion: int = 64
    maxbuckets: int = 1_000_000
    max_items: int = 10_000_000  # elements of a list/map/set, characters of a string, GTS points
    timeout_s: float | None = None  # the run's deadline, from its loop's `timeout`


_LIMIT_WORDS = {"MAXOPS": "maxops", "MAXDEPTH": "maxdepth", "MAXLOOP": "maxloop_ms",
                "MAXRECURSION": "maxrecursion", "MAXBUCKETS": "maxbuckets",
                "LIMIT": "max_items", "MAXPIXELS": "max_items"}

# -- operator families -------------------------------------------------------------------------


_INTERNAL = {
    IndexError: "it reached past the end of a LIST or GTS it was given",
    KeyError: "a key it needs is missing from a MAP it was given",
    ZeroDivisionError: "it divided by zero",
    OverflowError: "a number went out of range",
}


def _internal(op: Op | None, error: Exception) -> str:
    """A Python error inside a word, as a message about the word (never Python's own text)."""
    word = op.text if op is not None else "the script"
    what = next((text for kind, text in _INTERNAL.items() if isinstance(error, kind)),
                "its arguments are not of the types it takes")
    return (f"{word} could not run on the stack it was given: {what}; check its arguments "
            f"against the word's reference page")


def _java_div(a: int, b: int) -> int:
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b >= 0) else -quotient


def _div(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        if b == 0:
            raise Fault("division by zero of two LONGs")
        return _java_div(a, b)
    return a / b if b != 0 else (math.copysign(math.inf, a) * math.copysign(1, b)
                                 if a != 0 and not math.isnan(a) else math.nan)


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        if b == 0:
            raise Fault("modulo by zero of two LONGs")
        return a - b * _java_div(a, b)
    return math.fmod(a, b) if b != 0 else math.nan


def _pow(a: Any, b: Any) -> float:
    try:
        return float(math.pow(a, b))
    except (OverflowError, ValueError):
        return math.nan


ARITHMETIC: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": _div, "%": _mod,
    "**": _pow,
}
# the same on numpy columns (GTS and a constant, or two GTS)
ARRAY_ARITHMETIC: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide, "%": np.fmod,
    "**": np.power,
}
COMPARISONS: Mapping[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt,
    "<=": operator.le, ">=": operator.ge,
}
ARRAY_COMPARISONS: Mapping[str, Callable[[Any, Any], Any]] = {
    "==": np.equal, "!=": np.not_equal, "<": np.less, ">": np.greater, "<=": np.less_equal,
    ">=": np.greater_equal,
}


def _round(x: float) -> int:
    return math.floor(x + 0.5)


MATH: Mapping[str, Callable[[float], Any]] = {
    "SQRT": math.sqrt, "EXP": math.exp, "LOG": math.log, "LOG10": math.log10,
    "SIN": math.sin, "COS": math.cos, "TAN": math.tan, "ASIN": math.asin, "ACOS": math.acos,
    "ATAN": math.atan, "SINH": math.sinh, "COSH": math.cosh, "TANH": math.tanh,
    "TODEGREES": math.degrees, "TORADIANS": math.radians,
}
# a number's unit word → units of the platform (µs): `2 m` is two minutes
UNITS: Mapping[str, float] = {
    "w": 604_800 * STU, "d": 86_400 * STU, "h": 3_600 * STU, "m": 60 * STU, "s": STU,
    "ms": STU / 1_000, "us": STU / 1_000_000, "ns": 1e-9 * STU, "ps": 1e-12 * STU,
}
CONSTANT_WORDS: Mapping[str, Any] = {
    "e": math.e, "E": math.e, "pi": math.pi, "PI": math.pi, "MAXLONG": 2**63 - 1,
    "MINLONG": -(2**63), "STU": STU,
}

# words that are not Python names → the method that runs them
SYMBOLS: Mapping[str, str] = {
    "&&": "w_AND", "||": "w_OR", "!": "w_NOT", "[": "w_MARK", "{": "w_MARK", "(": "w_MARK",
    "]": "w_close_list", "}": "w_close_map", ")": "w_close_set", "[]": "w_empty_list",
    "{}": "w_empty_map", "()": "w_empty_set", "->LIST": "w_to_list", "LIST->": "w_list_to",
    "->MAP": "w_to_map", "MAP->": "w_map_to", "->SET": "w_to_set", "SET->": "w_set_to",
    "ISNaN": "w_ISNAN", "~=": "w_approx",
}


class Vm:
    """One script execution: a stack, its variables, its limits and its connector."""

    WORDS: ClassVar[dict[str, Callable[[Vm], None]]] = {}

    def __init__(self, *, connector: Any = None, variables: Mapping[str, Any] | None = None,
                 limits: Limits | None = None, now_us: int | None = None) -> None:
        self.stack: list[Any] = []
        self.vars: dict[str, Any] = dict(variables or {})
        self.hard = limits or Limits()
        self.limits = self.hard
        self.connector = connector
        self.now_us = now_us
        self.ops = 0
        self.depth = 0
        started = time.monotonic()
        self.deadline = (started + self.hard.timeout_s if self.hard.timeout_s is not None
                         else math.inf)
        self.attributes: dict[str, Any] = {}

    # -- running -------------------------------------------------------------------------------

    @classmethod
    def compile(cls, text: str) -> Macro:
        return read(text, cls.WORDS)

    def execute(self, code: Macro) -> list[Any]:
        """Run a script's code; the stack, top first (WarpScriptError if it fails)."""
        try:
            self.run(code)
        except _Stop:
            pass
        except _Return:
            pass
        except (_Break, _Continue):
            raise WarpScriptError("BREAK or CONTINUE outside of a loop", kind="fault") from None
        except Fault as error:
            op = error.op
            raise WarpScriptError(error.message, line=op.line if op else None,
                                  col=op.col if op else None, kind=error.kind,
                                  word=op.text if op else "") from None
        except MemoryError:
            raise WarpScriptError("the script ran out of memory (the loop's memory limit)",
                                  kind="limit") from None
        except RecursionError:
            raise WarpScriptError(f"macros nest too deep (MAXRECURSION "
                                  f"{self.limits.maxrecursion})", kind="limit") from None
        return self.stack[::-1]

    def run(self, code: Macro) -> None:  # noqa: PLR0912 - the dispatch loop stays in one place
        self.depth += 1
        if self.depth > self.limits.maxrecursion:
            self.depth -= 1
            raise LimitHit(f"macros nest deeper than MAXRECURSION ({self.limits.maxrecursion})")
        stack, push = self.stack, self.stack.append
        maxops, maxdepth = self.limits.maxops, self.limits.maxdepth
        op: Op | None = None
        try:
            for op in code.ops:
                self.ops += 1
                kind = op.kind
                if kind == WORD:
                    op.payload(self)
                elif kind == PUSH:
                    push(op.payload)
                elif kind == LOAD:
                    push(self.load(op.payload))
                elif kind == MACRO:
                    push(self.bind_early(op.payload) if op.payload.early else op.payload)
                elif kind == RUN:
                    self.eval(self.load(op.payload))
                else:  # EARLY outside a macro: the value now
                    push(self.load(op.payload))
                if self.ops > maxops or len(stack) > maxdepth or not self.ops & 1023:
                    self.check(maxops, maxdepth)
        except Fault as error:
            if error.op is None:
                error.op = op
            raise
        except _Return as returned:
            if returned.levels > 1:
                raise _Return(returned.levels - 1) from None
        except TsqError as error:  # a kernel's refusal (BadRequest): its message is the user's
            fault = Fault(error.message)
            fault.op = op
            raise fault from None
        except (ArithmeticError, TypeError, ValueError, IndexError, KeyError) as error:
            fault = Fault(_internal(op, error))
            fault.op = op
            raise fault from None
        finally:
            self.depth -= 1

    def check(self, maxops: int, maxdepth: int) -> None:
        if self.ops > maxops:
            raise LimitHit(f"the script ran more than MAXOPS ({maxops}) words")
        if len(self.stack) > maxdepth:
            raise LimitHit(f"the stack is deeper than MAXDEPTH ({maxdepth})")
        if time.monotonic() > self.deadline:
            raise LimitHit(f"the script ran past its time limit ({self.hard.timeout_s} s)")
        if querybudget.stopped():
            raise LimitHit("the script was stopped: the client that asked for it went away")

    def eval(self, value: Any) -> None:
        if isinstance(value, Macro):
            self.run(value)
        elif isinstance(value, str):
            self.run(self.compile(value))
        else:
            raise Fault(f"EVAL needs a MACRO or a STRING, got {_describe(value)}")

    def bind_early(self, macro: Macro) -> Macro:
        """The macro with each `!$name` replaced by the value `name` has now."""
        ops: list[Op] = []
        for op in macro.ops:
            if op.kind == EARLY:
                ops.append(Op(PUSH, self.load(op.payload), op.line, op.col, op.text))
            elif op.kind == MACRO and op.payload.early:
                ops.append(op._replace(payload=self.bind_early(op.payload)))
            else:
                ops.append(op)
        return replace(macro, ops=tuple(ops), early=False)

    def loop_clock(self) -> Callable[[], None]:
        """A check to call once per iteration: MAXLOOP and the run's deadline."""
        limit = time.monotonic() + self.limits.maxloop_ms / 1000

        def check() -> None:
            now = time.monotonic()
            if now > limit:
                raise LimitHit(f"a loop ran longer than MAXLOOP ({self.limits.maxloop_ms} ms)")
            if now > self.deadline:
                raise LimitHit(f"the script ran past its time limit ({self.hard.timeout_s} s)")
        return check

    # -- stack access --------------------------------------------------------------------------

    def pop(self) -> Any:
        try:
            return self.stack.pop()
        except IndexError:
            raise Fault("the stack is empty") from None

    def pops(self, n: int) -> list[Any]:
        """The top n items, deepest first."""
        if n < 0:
            raise Fault(f"a count cannot be negative, got {n}")
        if len(self.stack) < n:
            raise Fault(f"the stack holds {len(self.stack)} item(s), {n} needed")
        if n == 0:
            return []
        items = self.stack[-n:]
        del self.stack[-n:]
        return items

    def pop_type(self, kinds: type | tuple[type, ...], what: str) -> Any:
        value = self.pop()
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in (
                kinds if isinstance(kinds, tuple) else (kinds,))):
            raise Fault(f"expected {what}, got {_describe(value)}")
        return value

    def pop_long(self, what: str = "a LONG") -> int:
        value = self.pop()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Fault(f"expected {what}, got {_describe(value)}")
        return int(value)

    def pop_number(self, what: str = "a number") -> int | float:
        value = self.pop()
        if not _is_number(value):
            raise Fault(f"expected {what}, got {_describe(value)}")
        return value  # type: ignore[no-any-return]

    def pop_str(self, what: str = "a STRING") -> str:
        return self.pop_type(str, what)  # type: ignore[no-any-return]

    def pop_list(self, what: str = "a LIST") -> list[Any]:
        return self.pop_type(list, what)  # type: ignore[no-any-return]

    def pop_map(self, what: str = "a MAP") -> dict[Any, Any]:
        return self.pop_type(dict, what)  # type: ignore[no-any-return]

    def pop_macro(self, what: str = "a MACRO") -> Macro:
        return self.pop_type(Macro, what)  # type: ignore[no-any-return]

    def pop_gts(self, what: str = "a GTS") -> Gts:
        return self.pop_type(Gts, what)  # type: ignore[no-any-return]

    def pop_bool(self, what: str = "a BOOLEAN") -> bool:
        return self.pop_type(bool, what)  # type: ignore[no-any-return]

    def sized(self, size: int, what: str) -> None:
        if size > self.limits.max_items:
            raise LimitHit(f"{what} would hold {size} items, over the limit of "
                           f"{self.limits.max_items}")

    def load(self, name: str) -> Any:
        try:
            return self.vars[name]
        except KeyError:
            raise Fault(f"unknown variable {name!r}; store it first: value '{name}' STORE"
                        ) from None

    def condition(self, value: Any, word: str) -> bool:
        """IFT's and WHILE's condition: a BOOLEAN, or a macro that leaves one."""
        if isinstance(value, Macro):
            self.run(value)
            value = self.pop()
        if not isinstance(value, bool):
            raise Fault(f"{word}: the condition must leave a BOOLEAN, got {_describe(value)}")
        return value

    def per_gts(self, apply: Callable[[Gts], Any], what: str) -> None:
        """Words that take a GTS or a list of GTS (the result is a list then)."""
        value = self.pop()
        if isinstance(value, Gts):
            self.stack.append(apply(value))
        elif isinstance(value, list) and all(isinstance(v, Gts) for v in value):
            self.stack.append([apply(v) for v in value])
        else:
            raise Fault(f"{what} needs a GTS or a LIST of GTS, got {_describe(value)}")

    # -- stack words ---------------------------------------------------------------------------

    def w_DUP(self) -> None:
        value = self.pop()
        self.stack += (value, value)

    def w_DROP(self) -> None:
        self.pop()

    def w_SWAP(self) -> None:
        b, a = self.pop(), self.pop()
        self.stack += (b, a)

    def w_ROT(self) -> None:
        a, b, c = self.pops(3)
        self.stack += (b, c, a)

    def w_ROLL(self) -> None:
        n = self.pop_long()
        if n <= 0:
            return
        items = self.pops(n)
        self.stack += items[1:] + items[:1]

    def w_ROLLD(self) -> None:
        n = self.pop_long()
        if n <= 0:
            return
        items = self.pops(n)
        self.stack += items[-1:] + items[:-1]

    def w_PICK(self) -> None:
        n = self.pop_long()
        if not 0 < n <= len(self.stack):
            raise Fault(f"PICK {n}: the stack holds {len(self.stack)} item(s)")
        self.stack.append(self.stack[-n])

    def w_DUPN(self) -> None:
        n = self.pop_long()
        items = self.pops(n)
        self.stack += items + items

    def w_DROPN(self) -> None:
        self.pops(self.pop_long())

    def w_DEPTH(self) -> None:
        self.stack.append(len(self.stack))

    def w_CLEAR(self) -> None:
        self.stack.clear()

    def w_MARK(self) -> None:
        self.stack.append(MARK)

    def _to_mark(self, word: str) -> list[Any]:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index] is MARK:
                items = self.stack[index + 1:]
                del self.stack[index:]
                return items
        raise Fault(f"{word} found no mark: no [ {{ ( or MARK below it")

    def w_COUNTTOMARK(self) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index] is MARK:
                self.stack.append(len(self.stack) - index - 1)
                return
        raise Fault("COUNTTOMARK found no mark")

    def w_CLEARTOMARK(self) -> None:
        self._to_mark("CLEARTOMARK")

    def w_close_list(self) -> None:
        self.stack.append(self._to_mark("]"))

    def w_close_map(self) -> None:
        items = self._to_mark("}")
        if len(items) % 2:
            raise Fault(f"}} needs key/value pairs, got {len(items)} items")
        self.stack.append(self._pairs(items))

    def _pairs(self, items: list[Any]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, value in zip(items[::2], items[1::2], strict=True):
            if isinstance(key, list | dict | set | Gts):
                raise Fault(f"a MAP key cannot be a {type_name(key)}")
            out[key] = value
        return out

    def w_close_set(self) -> None:
        self.stack.append(self._set(self._to_mark(")")))

    def _set(self, items: Iterable[Any]) -> set[Any]:
        try:
            return set(items)
        except TypeError:
            raise Fault("a SET holds only LONG, DOUBLE, BOOLEAN or STRING values") from None

    def w_empty_list(self) -> None:
        self.stack.append([])

    def w_empty_map(self) -> None:
        self.stack.append({})

    def w_empty_set(self) -> None:
        self.stack.append(set())

    # -- variables -----------------------------------------------------------------------------

    def w_STORE(self) -> None:
        names = self.pop()
        if isinstance(names, list):
            values = self.pop_list("a LIST of values to store")
            if len(values) != len(names):
                raise Fault(f"STORE: {len(names)} names and {len(values)} values")
            for name, value in zip(names, values, strict=True):
                if name is not None:
                    self.vars[self._name(name)] = value
            return
        self.vars[self._name(names)] = self.pop()

    def _name(self, name: Any) -> str:
        if not isinstance(name, str):
            raise Fault(f"a variable name is a STRING, got {_describe(name)}")
        return name

    def w_CSTORE(self) -> None:
        name = self._name(self.pop())
        value = self.pop()
        self.vars.setdefault(name, value)

    def w_LOAD(self) -> None:
        self.stack.append(self.load(self._name(self.pop())))

    def w_FORGET(self) -> None:
        name = self.pop()
        if name is None:
            self.vars.clear()
        else:
            self.vars.pop(self._name(name), None)

    def w_DEFINED(self) -> None:
        self.stack.append(self._name(self.pop()) in self.vars)

    # -- control flow --------------------------------------------------------------------------

    def w_EVAL(self) -> None:
        self.eval(self.pop())

    def w_IFT(self) -> None:
        then = self.pop_macro("a MACRO to run (IFT)")
        if self.condition(self.pop(), "IFT"):
            self.run(then)

    def w_IFTE(self) -> None:
        otherwise = self.pop_macro("a MACRO for the else branch (IFTE)")
        then = self.pop_macro("a MACRO for the then branch (IFTE)")
        self.run(then if self.condition(self.pop(), "IFTE") else otherwise)

    def w_SWITCH(self) -> None:
        cases = self.pop_long("the number of cases (SWITCH)")
        default = self.pop_macro("the default MACRO (SWITCH)")
        pairs = self.pops(2 * cases)
        for cond, body in zip(pairs[::2], pairs[1::2], strict=True):
            if self.condition(cond, "SWITCH"):
                self.eval(body)
                return
        self.run(default)

    def _loop(self, body: Callable[[], None], check: Callable[[], None]) -> bool:
        """One iteration; False once BREAK asks to stop."""
        check()
        try:
            body()
        except _Continue:
            pass
        except _Break:
            return False
        return True

    def w_WHILE(self) -> None:
        body = self.pop_macro("a MACRO body (WHILE)")
        cond = self.pop_macro("a MACRO condition (WHILE)")
        check = self.loop_clock()
        while self.condition(cond, "WHILE"):
            if not self._loop(lambda: self.run(body), check):
                break

    def w_UNTIL(self) -> None:
        cond = self.pop_macro("a MACRO condition (UNTIL)")
        body = self.pop_macro("a MACRO body (UNTIL)")
        check = self.loop_clock()
        while self._loop(lambda: self.run(body), check):
            if self.condition(cond, "UNTIL"):
                break

    def w_FOR(self) -> None:
        body = self.pop_macro("a MACRO body (FOR)")
        end, start = self.pop_number("the last index (FOR)"), self.pop_number("the first "
                                                                                "index (FOR)")
        step = 1 if start <= end else -1
        index, check, push = int(start), self.loop_clock(), self.stack.append
        while (index <= end) if step > 0 else (index >= end):
            push(index)
            if not self._loop(lambda: self.run(body), check):
                break
            index += step

    def w_FORSTEP(self) -> None:
        body = self.pop_macro("a MACRO body (FORSTEP)")
        step = self.pop_macro("a MACRO computing the next index (FORSTEP)")
        end, index = self.pop_number(), self.pop_number()
        check = self.loop_clock()
        ascending = True
        while (index <= end) if ascending else (index >= end):
            self.stack.append(index)
            if not self._loop(lambda: self.run(body), check):
                break
            self.stack.append(index)
            self.run(step)
            after = self.pop_number("the next index (FORSTEP)")
            ascending = after >= index
            index = after

    def w_FOREACH(self) -> None:
        body = self.pop_macro("a MACRO body (FOREACH)")
        items = self.pop()
        check = self.loop_clock()
        if isinstance(items, dict):
            sequence: Iterable[tuple[Any, ...]] = list(items.items())
        elif isinstance(items, list | set | str):
            sequence = ((item,) for item in list(items))
        elif isinstance(items, Gts):
            sequence = ((items.point(i),) for i in range(len(items)))
        else:
            raise Fault(f"FOREACH needs a LIST, MAP, SET or GTS, got {_describe(items)}")
        for pushed in sequence:
            self.stack += pushed
            if not self._loop(lambda: self.run(body), check):
                break

    def w_LMAP(self) -> None:
        body = self.pop_macro("a MACRO (LMAP)")
        items = self.pop_list("a LIST (LMAP)")
        check, out = self.loop_clock(), []
        for index, item in enumerate(items):
            self.stack += (item, index)
            if not self._loop(lambda: self.run(body), check):
                break
            out.append(self.pop())
        self.stack.append(out)

    def w_BREAK(self) -> None:
        raise _Break

    def w_CONTINUE(self) -> None:
        raise _Continue

    def w_RETURN(self) -> None:
        raise _Return

    def w_NRETURN(self) -> None:
        raise _Return(self.pop_long())

    def w_STOP(self) -> None:
        raise _Stop

    def w_FAIL(self) -> None:
        raise Fail("the script called FAIL")

    def w_MSGFAIL(self) -> None:
        raise Fail(str(self.pop()))

    def w_ASSERT(self) -> None:
        value = self.pop()
        if value is not True:
            raise Fail(f"assertion failed: ASSERT got {_describe(value)}")

    def w_ASSERTMSG(self) -> None:
        message, value = self.pop(), self.pop()
        if value is not True:
            raise Fail(str(message))

    # -- arithmetic and logic ------------------------------------------------------------------

    def binary(self, word: str) -> None:
        b, a = self.pop(), self.pop()
        if isinstance(a, Gts) or isinstance(b, Gts):
            self.stack.append(gtswords.gts_binary(word, a, b))
            return
        if word == "+":
            if isinstance(a, str) and isinstance(b, str):
                self.sized(len(a) + len(b), "a STRING")
                self.stack.append(a + b)
                return
            if isinstance(a, list):
                self.sized(len(a) + 1, "a LIST")
                self.stack.append([*a, b])
                return
        if not (_is_number(a) and _is_number(b)):
            raise Fault(f"{word} needs two numbers (or two STRINGs for +), got "
                        f"{_describe(a)} and {_describe(b)}")
        result = ARITHMETIC[word](a, b)
        if isinstance(result, int) and not -(2**63) <= result < 2**63:
            result = (result + 2**63) % 2**64 - 2**63  # LONGs wrap around as in Java
        self.stack.append(result)

    def compare(self, word: str) -> None:
        b, a = self.pop(), self.pop()
        if isinstance(a, Gts) or isinstance(b, Gts):
            self.stack.append(gtswords.gts_binary(word, a, b))
            return
        if word in ("==", "!="):  # NaN equals NaN, as in Warp 10
            equal = (a == b) if not (_is_number(a) and _is_number(b)) else (
                float(a) == float(b) or (math.isnan(a) and math.isnan(b)))
            self.stack.append(equal if word == "==" else not equal)
            return
        if not ((_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
            raise Fault(f"{word} compares two numbers or two STRINGs, got {_describe(a)} and "
                        f"{_describe(b)}")
        self.stack.append(COMPARISONS[word](a, b))

    def logic(self, word: str) -> None:
        b, a = self.pop(), self.pop()
        if isinstance(a, list) and isinstance(b, list):
            raise Fault(f"{word} on two LISTs is not supported")
        if isinstance(b, list):  # [ … ] AND: every/any element
            items = b
            a_items = [a]
            self.stack.append((all if word == "AND" else any)(self._bool(x, word)
                                                               for x in a_items + items))
            return
        x, y = self._bool(a, word), self._bool(b, word)
        self.stack.append((x and y) if word == "AND" else (x or y))

    def _bool(self, value: Any, word: str) -> bool:
        if not isinstance(value, bool):
            raise Fault(f"{word} works on BOOLEANs, got {_describe(value)}")
        return value

    def w_AND(self) -> None:
        if self.stack and isinstance(self.stack[-1], list):
            self.stack.append(all(self._bool(x, "AND") for x in self.pop()))
            return
        self.logic("AND")

    def w_OR(self) -> None:
        if self.stack and isinstance(self.stack[-1], list):
            self.stack.append(any(self._bool(x, "OR") for x in self.pop()))
            return
        self.logic("OR")

    def w_NOT(self) -> None:
        value = self.pop()
        if isinstance(value, Gts):
            self.stack.append(gtswords.gts_not(value))
            return
        self.stack.append(not self._bool(value, "NOT"))

    def unary(self, word: str) -> None:
        value = self.pop()
        if isinstance(value, Gts):
            self.stack.append(gtswords.gts_math(word, value))
            return
        if not _is_number(value):
            raise Fault(f"{word} needs a number, got {_describe(value)}")
        if word in MATH:
            try:
                self.stack.append(float(MATH[word](float(value))))
            except (ValueError, OverflowError):
                self.stack.append(math.nan)
        elif word == "ABS":
            self.stack.append(abs(value))
        elif word == "ROUND":
            self.stack.append(value if isinstance(value, int) or not math.isfinite(value)
                              else _round(value))
        elif word == "FLOOR":
            self.stack.append(value if isinstance(value, int) else float(math.floor(value))
                              if math.isfinite(value) else value)
        elif word == "CEIL":
            self.stack.append(value if isinstance(value, int) else float(math.ceil(value))
                              if math.isfinite(value) else value)

    def w_POW(self) -> None:
        self.binary("**")

    def w_approx(self) -> None:
        tolerance = self.pop_number("a tolerance (~=)")
        b, a = self.pop_number(), self.pop_number()
        self.stack.append(abs(a - b) <= tolerance)

    def w_MAX(self) -> None:
        b, a = self.pop_number(), self.pop_number()
        self.stack.append(math.nan if (isinstance(a, float) and math.isnan(a)) or (
            isinstance(b, float) and math.isnan(b)) else max(a, b))

    def w_MIN(self) -> None:
        b, a = self.pop_number(), self.pop_number()
        self.stack.append(math.nan if (isinstance(a, float) and math.isnan(a)) or (
            isinstance(b, float) and math.isnan(b)) else min(a, b))

    def w_unit(self, unit: str) -> None:
        amount = self.pop_number(f"a number of {unit}")
        units = amount * UNITS[unit]
        self.stack.append(int(units) if float(units).is_integer() else units)

    # -- types ---------------------------------------------------------------------------------

    def w_TYPEOF(self) -> None:
        self.stack.append(type_name(self.pop()))

    def w_ISNULL(self) -> None:
        self.stack.append(self.pop() is None)

    def w_ISNAN(self) -> None:
        value = self.pop()
        self.stack.append(isinstance(value, float) and math.isnan(value))

    def w_TOLONG(self) -> None:
        value = self.pop()
        if isinstance(value, bool):
            self.stack.append(int(value))
        elif isinstance(value, int):
            self.stack.append(value)
        elif isinstance(value, float):
            self.stack.append(0 if math.isnan(value) else 2**63 - 1 if value >= 2**63 else
                              -(2**63) if value < -(2**63) else int(value))
        elif isinstance(value, str):
            try:
                self.stack.append(int(value.strip(), 0) if value.strip()[:2].lower() == "0x"
                                  else int(value.strip()))
            except ValueError:
                raise Fault(f"TOLONG cannot read {value!r} as a LONG") from None
        else:
            raise Fault(f"TOLONG needs a number, BOOLEAN or STRING, got {_describe(value)}")

    def w_TODOUBLE(self) -> None:
        value = self.pop()
        if isinstance(value, int | float):
            self.stack.append(float(value))
        elif isinstance(value, str):
            try:
                self.stack.append(float(value))
            except ValueError:
                raise Fault(f"TODOUBLE cannot read {value!r} as a DOUBLE") from None
        else:
            raise Fault(f"TODOUBLE needs a number, BOOLEAN or STRING, got {_describe(value)}")

    def w_TOBOOLEAN(self) -> None:
        value = self.pop()
        if isinstance(value, str):
            self.stack.append(value.lower() == "true")
        elif isinstance(value, int | float):
            self.stack.append(bool(value) and not (isinstance(value, float) and
                                                   math.isnan(value)))
        else:
            raise Fault(f"TOBOOLEAN needs a number, BOOLEAN or STRING, got {_describe(value)}")

    def w_TOSTRING(self) -> None:
        self.stack.append(to_string(self.pop()))

    # -- strings -------------------------------------------------------------------------------

    def w_SUBSTRING(self) -> None:
        length: int | None = None
        top = self.pop_long("a start or length (SUBSTRING)")
        if self.stack and not isinstance(self.stack[-1], str):
            length, start = top, self.pop_long("a start (SUBSTRING)")
        else:
            start = top
        text = self.pop_str("a STRING (SUBSTRING)")
        if start < 0 or start > len(text) or (length is not None and (
                length < 0 or start + length > len(text))):
            raise Fault(f"SUBSTRING {start} {length}: out of the string's {len(text)} chars")
        self.stack.append(text[start:] if length is None else text[start:start + length])

    def w_JOIN(self) -> None:
        top = self.pop()
        if isinstance(top, int) and not isinstance(top, bool):
            sep = self.pop_str("a separator (JOIN)")
            items = self.pops(top)
        else:
            if not isinstance(top, str):
                raise Fault(f"JOIN needs a separator STRING, got {_describe(top)}")
            sep, items = top, self.pop_list("a LIST of STRINGs (JOIN)")
        self.stack.append(sep.join(to_string(i) if not isinstance(i, str) else i for i in items))

    def w_SPLIT(self) -> None:
        sep = self.pop_str("a separator (SPLIT)")
        text = self.pop_str("a STRING (SPLIT)")
        if len(sep) != 1:
            raise Fault(f"SPLIT's separator is one character, got {sep!r}")
        parts = text.split(sep)
        while parts and parts[-1] == "":  # Java's String.split drops trailing empties
            parts.pop()
        self.stack.append(parts)

    def w_REPLACE(self) -> None:
        replacement = self.pop_str("a replacement (REPLACE)")
        pattern = self.pop_str("a regular expression (REPLACE)")
        text = self.pop_str("a STRING (REPLACE)")
        self.stack.append(_regex(pattern).sub(_java_replacement(replacement), text, count=1))

    def w_REPLACEALL(self) -> None:
        replacement = self.pop_str()
        pattern = self.pop_str()
        text = self.pop_str()
        self.stack.append(_regex(pattern).sub(_java_replacement(replacement), text))

    def w_TOUPPER(self) -> None:
        self.stack.append(self.pop_str().upper())

    def w_TOLOWER(self) -> None:
        self.stack.append(self.pop_str().lower())

    def w_TRIM(self) -> None:
        self.stack.append(self.pop_str().strip())

    def w_MATCHER(self) -> None:
        pattern = self.pop_str("a regular expression (MATCHER)")
        _regex(pattern)
        self.stack.append(pattern)

    def w_MATCH(self) -> None:
        pattern = self.pop_str("a regular expression (MATCH)")
        text = self.pop_str("a STRING (MATCH)")
        found = _regex(pattern).fullmatch(text)
        self.stack.append([] if found is None else [found.group(0), *found.groups()])

    def w_TEMPLATE(self) -> None:
        values = self.pop_map("a MAP of values (TEMPLATE)")
        text = self.pop_str("a template STRING (TEMPLATE)")
        self.stack.append(re.sub(r"\{\{\s*([^}\s]+)\s*\}\}", lambda m: to_string(
            values.get(m.group(1), m.group(0))) if not isinstance(values.get(m.group(1)), str)
            else str(values[m.group(1)]), text))

    # -- lists, maps and sets ------------------------------------------------------------------

    def w_GET(self) -> None:
        key = self.pop()
        container = self.pop()
        if isinstance(container, dict):
            self.stack.append(container.get(key))
        elif isinstance(container, list | str):
            if isinstance(key, list):
                value: Any = container
                for index in key:
                    value = _at(value, index)
                self.stack.append(value)
            else:
                self.stack.append(_at(container, key))
        else:
            raise Fault(f"GET needs a LIST or a MAP, got {_describe(container)}")

    def w_PUT(self) -> None:
        key, value = self.pop(), self.pop()
        container = self.pop()
        if isinstance(container, dict):
            container[key] = value
        elif isinstance(container, list):
            container[_index(container, key)] = value
        else:
            raise Fault(f"PUT needs a MAP or a LIST, got {_describe(container)}")
        self.stack.append(container)

    def w_REMOVE(self) -> None:
        key = self.pop()
        container = self.pop()
        if isinstance(container, dict):
            removed = container.pop(key, None)
        elif isinstance(container, list):
            removed = container.pop(_index(container, key)) if container else None
        else:
            raise Fault(f"REMOVE needs a MAP or a LIST, got {_describe(container)}")
        self.stack += (container, removed)

    def w_APPEND(self) -> None:
        top = self.pop()
        below = self.pop()
        if isinstance(below, list) and isinstance(top, list):
            self.sized(len(below) + len(top), "a LIST")
            below.extend(top)
        elif isinstance(below, dict) and isinstance(top, dict):
            below.update(top)
        elif isinstance(below, Gts) and isinstance(top, Gts):
            gtswords.append_gts(below, top)
        else:
            raise Fault(f"APPEND needs two LISTs, two MAPs or two GTS, got {_describe(below)} "
                        f"and {_describe(top)}")
        self.stack.append(below)

    def w_CONTAINSKEY(self) -> None:
        key = self.pop()
        container = self.pop_map("a MAP (CONTAINSKEY)")
        self.stack += (container, key in container)

    def w_CONTAINS(self) -> None:
        item = self.pop()
        container = self.pop()
        if not isinstance(container, list | set):
            raise Fault(f"CONTAINS needs a LIST or a SET, got {_describe(container)}")
        self.stack += (container, item in container)

    def w_CONTAINSVALUE(self) -> None:
        item = self.pop()
        container = self.pop_map()
        self.stack += (container, item in container.values())

    def w_KEYLIST(self) -> None:
        self.stack.append(list(self.pop_map("a MAP (KEYLIST)").keys()))

    def w_VALUELIST(self) -> None:
        self.stack.append(list(self.pop_map("a MAP (VALUELIST)").values()))

    def w_SIZE(self) -> None:
        value = self.pop()
        if isinstance(value, list | dict | set | str | Gts):
            self.stack.append(len(value))
        elif isinstance(value, Macro):
            self.stack.append(len(value.ops))
        else:
            raise Fault(f"SIZE needs a LIST, MAP, SET, STRING or GTS, got {_describe(value)}")

    def w_list_to(self) -> None:
        items = self.pop_list("a LIST (LIST->)")
        self.stack += items
        self.stack.append(len(items))

    def w_to_list(self) -> None:
        count = self.pop_long("a count (->LIST)")
        self.stack.append(self.pops(count))

    def w_to_map(self) -> None:
        count = self.pop_long("a count (->MAP)")
        if count % 2:
            raise Fault(f"->MAP needs an even count of items, got {count}")
        self.stack.append(self._pairs(self.pops(count)))

    def w_map_to(self) -> None:
        pairs = self.pop_map("a MAP (MAP->)")
        for key, value in pairs.items():
            self.stack += (key, value)
        self.stack.append(2 * len(pairs))

    def w_to_set(self) -> None:
        self.stack.append(self._set(self.pop_list("a LIST (->SET)")))

    def w_set_to(self) -> None:
        value = self.pop()
        if not isinstance(value, set):
            raise Fault(f"SET-> needs a SET, got {_describe(value)}")
        self.stack.append(list(value))

    def w_UNION(self) -> None:
        b, a = self.pop_type(set, "a SET"), self.pop_type(set, "a SET")
        self.stack.append(a | b)

    def w_INTERSECTION(self) -> None:
        b, a = self.pop_type(set, "a SET"), self.pop_type(set, "a SET")
        self.stack.append(a & b)

    def w_DIFFERENCE(self) -> None:
        b, a = self.pop_type(set, "a SET"), self.pop_type(set, "a SET")
        self.stack.append(a - b)

    def w_SUBLIST(self) -> None:
        indexes = self.pop_list("a LIST of indexes (SUBLIST)")
        items = self.pop_list("a LIST (SUBLIST)")
        picked = [_index(items, i, clamp=True) for i in indexes]
        if len(indexes) == 2:
            low, high = picked
            self.stack.append(items[low:high + 1] if low <= high else [])
        else:
            self.stack.append([items[i] for i in picked])

    def w_SUBMAP(self) -> None:
        keys = self.pop_list("a LIST of keys (SUBMAP)")
        pairs = self.pop_map()
        self.stack.append({k: pairs[k] for k in keys if k in pairs})

    def w_FLATTEN(self) -> None:
        out: list[Any] = []

        def walk(items: list[Any]) -> None:
            for item in items:
                if isinstance(item, list):
                    walk(item)
                else:
                    out.append(item)
                    if len(out) > self.limits.max_items:
                        self.sized(len(out), "FLATTEN's LIST")
        walk(self.pop_list("a LIST (FLATTEN)"))
        self.stack.append(out)

    def w_UNIQUE(self) -> None:
        items = self.pop_list("a LIST (UNIQUE)")
        seen: list[Any] = []
        for item in items:
            if item not in seen:
                seen.append(item)
        self.stack.append(seen)

    def w_REVERSE(self) -> None:
        value = self.pop()
        if isinstance(value, list):
            value.reverse()
            self.stack.append(value)
        elif isinstance(value, str):
            self.stack.append(value[::-1])
        elif isinstance(value, Gts):
            self.stack.append(gtswords.reversed_gts(value))
        else:
            raise Fault(f"REVERSE needs a LIST, STRING or GTS, got {_describe(value)}")

    def w_CLONEREVERSE(self) -> None:
        value = self.pop()
        if isinstance(value, (list, str)):
            self.stack.append(value[::-1])
        else:
            raise Fault(f"CLONEREVERSE needs a LIST or STRING, got {_describe(value)}")

    def w_LSORT(self) -> None:
        items = self.pop_list("a LIST (LSORT)")
        try:
            items.sort()
        except TypeError:
            raise Fault("LSORT sorts a LIST of numbers or of STRINGs") from None
        self.stack.append(items)

    def w_SORTBY(self) -> None:
        key = self.pop_macro("a MACRO computing each item's key (SORTBY)")
        items = self.pop_list("a LIST (SORTBY)")
        keys = []
        for item in items:
            self.stack.append(item)
            self.run(key)
            keys.append(self.pop())
        try:
            order = sorted(range(len(items)), key=lambda i: keys[i])
        except TypeError:
            raise Fault("SORTBY's keys must all be numbers or all STRINGs") from None
        self.stack.append([items[i] for i in order])

    def w_ZIP(self) -> None:
        # Warp 10 repeats a one-element LIST (and a value that is no LIST) at every index
        lists = self.pop_list("a LIST of LISTs (ZIP)")
        sizes = sorted({len(x) for x in lists if isinstance(x, list) and len(x) != 1})
        if len(sizes) > 1:
            raise Fault(f"ZIP zips LISTs of one size (a LIST of one element is repeated), got "
                        f"sizes {sizes}")
        length = sizes[0] if sizes else int(any(isinstance(x, list) for x in lists))
        self.stack.append([[(x[0] if len(x) == 1 else x[i]) if isinstance(x, list) else x
                            for x in lists] for i in range(length)])

    # -- data access (store.py) ----------------------------------------------------------------

    def w_AUTHENTICATE(self) -> None:
        self.pop_str("a token (AUTHENTICATE)")  # accepted as it is: tokens come with auth
        self.attributes["authenticated"] = True

    def w_STACKATTRIBUTE(self) -> None:
        name = self.pop_str("an attribute name (STACKATTRIBUTE)")
        known = {"stack.maxops.hard": self.hard.maxops, "stack.maxops": self.limits.maxops,
                 "fetch.limit.hard": self.hard.max_items, "fetch.limit": self.limits.max_items,
                 "stack.maxdepth": self.limits.maxdepth}
        self.stack.append(known.get(name))

    def set_limit(self, word: str) -> None:
        field = _LIMIT_WORDS[word]
        value = self.pop_long(f"a LONG ({word})")
        hard = getattr(self.hard, field)
        if value > hard:
            raise LimitHit(f"{word} {value} is over the hard limit {hard}")
        self.limits = replace(self.limits, **{field: value})


def _regex(pattern: str) -> Pattern:
    try:
        return compile_user(pattern)
    except RegexError as error:
        raise Fault(f"bad regular expression {pattern!r}: {error}") from None


def _java_replacement(text: str) -> str:
    return re.sub(r"\$(\d)", r"\\\1", text)


def _index(items: list[Any] | str, key: Any, *, clamp: bool = False) -> int:
    if isinstance(key, bool) or not isinstance(key, int):
        raise Fault(f"a LIST index is a LONG, got {_describe(key)}")
    index = key + len(items) if key < 0 else key
    if clamp:
        return max(0, min(index, len(items) - 1))
    if not 0 <= index < len(items):
        raise Fault(f"index {key} is out of a LIST of {len(items)}")
    return index


def _at(items: Any, key: Any) -> Any:
    if not isinstance(items, list | str):
        raise Fault(f"GET with an index needs a LIST, got {_describe(items)}")
    return items[_index(items, key)]


def java_double(value: float) -> str:
    """A DOUBLE as Java's Double.toString writes it (what TOSTRING and ->JSON show)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1, value) < 0 else "0.0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e7:
        text = repr(value)
        return text if "." in text or "e" in text else text + ".0"
    mantissa, exponent = f"{value:.17e}".split("e")
    digits = repr(float(f"{float(mantissa):.16g}"))
    shortest = repr(value)
    if "e" in shortest:
        mantissa, exponent = shortest.split("e")
        digits = mantissa if "." in mantissa else mantissa + ".0"
    else:
        digits = repr(value / 10 ** int(exponent))
        digits = digits if "." in digits else digits + ".0"
    return f"{digits}E{int(exponent)}"


def to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return java_double(value)
    if value is None:
        return "null"
    if isinstance(value, str | int):
        return str(value)
    from .jsonstack import to_json_text
    return to_json_text(value)


def _binary(word: str) -> Callable[[Vm], None]:
    return lambda vm: vm.binary(word)


def _compare(word: str) -> Callable[[Vm], None]:
    return lambda vm: vm.compare(word)


def _unary(word: str) -> Callable[[Vm], None]:
    return lambda vm: vm.unary(word)


def _unit(word: str) -> Callable[[Vm], None]:
    return lambda vm: vm.w_unit(word)


def _constant(value: Any) -> Callable[[Vm], None]:
    return lambda vm: vm.stack.append(value)


def _limit(word: str) -> Callable[[Vm], None]:
    return lambda vm: vm.set_limit(word)


def _install() -> None:
    """The word table: w_ methods by name, then the symbols and the operator families."""
    words: dict[str, Callable[[Vm], None]] = {}
    for attribute in dir(Vm):
        if attribute.startswith("w_") and attribute[2:].isupper():
            words[attribute[2:]] = getattr(Vm, attribute)
    for symbol, attribute in SYMBOLS.items():
        words[symbol] = getattr(Vm, attribute)
    words.update({word: _binary(word) for word in ARITHMETIC if word != "**"})
    words["**"] = Vm.w_POW
    words.update({word: _compare(word) for word in COMPARISONS})
    words.update({word: _unary(word) for word in (*MATH, "ABS", "ROUND", "FLOOR", "CEIL")})
    words.update({word: _unit(word) for word in UNITS})
    words.update({word: _constant(value) for word, value in CONSTANT_WORDS.items()})
    words.update({word: _limit(word) for word in _LIMIT_WORDS})
    words.update(timewords.WORDS)
    words.update(frameworks.WORDS)
    words.update(store.WORDS)
    Vm.WORDS = words


_install()
