"""TSL → PromQL: one Prometheus request per statement, as the reference generates it.

A port of ovh/tsl `tsl/generatePromQl.go` (`ProtoParser.GeneratePromQl`, called once per
statement by the proxy), reproducing its output byte for byte, bugs included: the spec (§8 of
`tsl.md`) lists the ones users can see, such as the unbalanced `q offset d)` of a lone
`shift`, `groupWithout` emitting `by`, or `window(mean, 1m)` giving `[0]`.

Each select must start with `sampleBy(span, last)`; its span becomes the request's `step`. The
time range defaults to the hour before `now` (seconds, with millisecond decimals); `from(a, b)`
copies its literals and `last(d)` counts back from `now` with Go's `time.ParseDuration`, so
`1d` fails with Go's own message. The Go library behaviour the output depends on (ParseDuration,
ParseFloat, Atoi, FormatFloat and the `fmt.Sprintf` the where clauses go through) is reproduced
by the small `_go_*` helpers at the end of this module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from tsq.errors import TslError

from .ast import EMPTY, Field, Instruction, Match, Method, Pos, Prefix, Select, Tok, Where
from .goquote import go_quote
from .messages import backend_error

__all__ = ["PromRequest", "to_promql", "to_promql_one"]

BACKEND = "prometheus"

# The reference's `toPromQl` table (its where-operator entries are `_MATCH` below).
_PROMQL: Mapping[Tok, str] = {
    Tok.MEAN: "avg", Tok.ADDSERIES: "+", Tok.ANDL: "and", Tok.ORL: "or", Tok.SUBSERIES: "-",
    Tok.MULSERIES: "*", Tok.DIVSERIES: "/", Tok.EQUAL: "==", Tok.NOTEQUAL: "!=",
    Tok.PERCENTILE: "quantile", Tok.GREATEROREQUAL: ">=", Tok.GREATERTHAN: ">",
    Tok.LESSOREQUAL: "<=", Tok.LESSTHAN: "<", Tok.WEEKDAY: "day_of_week",
    Tok.DAY: "day_of_month", Tok.MAXWITH: "clamp_min", Tok.MINWITH: "clamp_max",
    Tok.SORTDESC: "sort_desc", Tok.TOPN: "topk", Tok.BOTTOMN: "bottomk",
}
_MATCH: Mapping[Match, str] = {
    Match.EQUAL: "=", Match.NOT_EQUAL: "!=", Match.REGEX: "=~", Match.NOT_REGEX: "!~",
}

# Method families, as the cases of the reference's switch in promFrameworksOp.
_SAMPLERS = frozenset({Tok.SAMPLE, Tok.SAMPLEBY})
_ARITHMETIC = frozenset({
    Tok.ADDSERIES, Tok.ANDL, Tok.SUBSERIES, Tok.MULSERIES, Tok.DIVSERIES, Tok.EQUAL,
    Tok.GREATEROREQUAL, Tok.GREATERTHAN, Tok.NOTEQUAL, Tok.LESSOREQUAL, Tok.LESSTHAN, Tok.ORL})
_OVER_TIME = frozenset({
    Tok.MEAN, Tok.MIN, Tok.MAX, Tok.SUM, Tok.COUNT, Tok.STDDEV, Tok.STDVAR, Tok.RATE, Tok.DELTA,
    Tok.PERCENTILE, Tok.WINDOW})
_GROUPS = frozenset({Tok.GROUPBY, Tok.GROUP, Tok.GROUPWITHOUT})
_FUNCTIONS = frozenset({
    Tok.ABS, Tok.DAY, Tok.LN, Tok.LOG2, Tok.LOG10, Tok.CEIL, Tok.FLOOR, Tok.ROUND, Tok.HOUR,
    Tok.MAXWITH, Tok.MINUTE, Tok.MINWITH, Tok.MONTH, Tok.SQRT, Tok.RESETS, Tok.TIMESTAMP,
    Tok.YEAR, Tok.WEEKDAY, Tok.SORT, Tok.SORTDESC, Tok.TOPN, Tok.BOTTOMN})
_NUMBERS = frozenset({Tok.INTEGER, Tok.NUMBER, Tok.NEGINTEGER, Tok.NEGNUMBER})
_PLAIN_GROUP_AGGREGATORS = frozenset({
    Tok.SUM, Tok.MIN, Tok.MAX, Tok.STDDEV, Tok.STDVAR, Tok.COUNT})

_NS_PER_MS = 1_000_000
_HOUR_NS = 3_600_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PromRequest:
    """One Prometheus request (the reference's `Ql`, less the API and token)."""

    query: str
    start: str
    end: str
    step: str
    instant_query: bool

    def to_json(self) -> dict[str, str | bool]:
        return {"query": self.query, "start": self.start, "end": self.end, "step": self.step,
                "instant_query": self.instant_query}


_NO_REQUEST = PromRequest("", "", "", "", False)


def to_promql(instructions: Sequence[Instruction], *, now: datetime) -> list[PromRequest]:
    """The requests of a parsed script, one per statement; `now` must be timezone-aware."""
    return [to_promql_one(instruction, now) for instruction in instructions]


def to_promql_one(instruction: Instruction, now: datetime) -> PromRequest:
    """The reference's GeneratePromQl for one statement."""
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    return _generate(instruction, _unix_nanos(now))


def _error(message: str, pos: Pos) -> TslError:
    return backend_error(BACKEND, message, pos)


def _generate(instruction: Instruction, now_ns: int) -> PromRequest:
    if instruction.has_select:
        return _select_request(instruction.select, now_ns)
    if instruction.is_operator:
        return _operator_request(instruction, now_ns)
    return _NO_REQUEST


# --- operators: add(a, b).on(…) -------------------------------------------------------------

def _operator_request(instruction: Instruction, now_ns: int) -> PromRequest:
    operator = instruction.operator
    joiner = " " + _PROMQL.get(operator.op, "")
    # Prometheus matches on all labels by default: only an explicit list is written out.
    if operator.ignoring:
        joiner += " " + _on_labels(operator.ignoring, Tok.IGNORING.text, operator.group,
                                   operator.group_labels)
    elif operator.labels:
        joiner += " " + _on_labels(operator.labels, Tok.ON.text, operator.group,
                                   operator.group_labels)
    joiner += " "

    request = _NO_REQUEST
    for index, operand in enumerate(operator.operands):
        inner = _generate(operand, now_ns)
        if index == 0:
            request = inner
            continue
        if (request.step, request.start, request.end) != (inner.step, inner.start, inner.end):
            raise _error("expects same time properties for each metrics selector of an operator"
                         f" at method {operator.op.text}", operator.pos)
        request = _with_query(request, request.query + joiner + inner.query)

    methods = instruction.select.methods
    if methods:
        query, instant = _methods(methods, request.query, request.step, skip_sample=True)
        request = PromRequest(query, request.start, request.end, request.step, instant)
    return request


def _with_query(request: PromRequest, query: str) -> PromRequest:
    return PromRequest(query, request.start, request.end, request.step, request.instant_query)


def _on_labels(labels: Sequence[str], keyword: str, group: Field,
               group_labels: Sequence[str]) -> str:
    text = keyword + "(" + ",".join(labels) + ")"
    if group.lit != "":
        text += " " + group.lit
        if group_labels:
            text += "(" + ",".join(group_labels) + ")"
    return text


# --- selects --------------------------------------------------------------------------------

def _select_request(select: Select, now_ns: int) -> PromRequest:
    if select.select_all:
        raise _error("select all metrics not supported", select.pos)

    start, end = _time_range(select, now_ns)
    methods = select.methods
    if not methods or methods[0].op not in _SAMPLERS:
        # All PromQL requests are stepped: the first method must say by how much.
        raise _error("expects a default sample for each select statement", select.pos)
    step = _step(methods[0])

    query = select.metric
    if select.where:
        query += _where_labels(select.where)
    query, instant = _methods(methods, query, step, skip_sample=False)
    return PromRequest(query, start, end, step, instant)


def _time_range(select: Select, now_ns: int) -> tuple[str, str]:
    end = _seconds(now_ns)
    start = _seconds(now_ns - _HOUR_NS)
    if select.has_from:
        start = select.from_.start.lit
        if select.from_.has_end:
            end = select.from_.end.lit
    if select.has_last:
        if not select.last.is_duration:
            raise _error("last supports only duration values in select statement", select.pos)
        # Go's now.Add(-d), where negating the smallest duration gives it back.
        start = _seconds(now_ns + _int64(-_go_parse_duration(select.last.last)))
    return start, end


def _seconds(unix_ns: int) -> str:
    """Go's `float64(t.UnixNano()/int64(time.Millisecond)) / 1000.0`, formatted with 'f', -1."""
    millis = _go_quotient(_int64(unix_ns), _NS_PER_MS)
    return _go_format_float(float(millis) / 1000.0)


def _step(sampler: Method) -> str:
    aggregator = sampler.named.get(Prefix.SAMPLE_AGGREGATOR)
    if aggregator is not None and aggregator.tok is not Tok.LAST:
        raise _error("steps are used to control query jump to sample data. Only the last"
                     " aggregator is allowed in sampleBy methods", sampler.pos)
    span = sampler.named.get(Prefix.SPAN)
    if span is None:
        raise _error("sampling expects a sample span as duration value (1m) as first parameter",
                     sampler.pos)
    return span.lit


def _where_labels(where: Sequence[Where]) -> str:
    # The reference builds each matcher with Sprintf(key + op + "%q", value): the key is part
    # of the format, so a `%` in it is read as a verb.
    return "{" + ",".join(_go_sprintf(w.key + _MATCH[w.op] + "%q", w.value) for w in where) + "}"


# --- methods --------------------------------------------------------------------------------

@dataclass
class _Chain:
    """What promFrameworksOp accumulates while it walks a select's methods."""

    query: str
    step: str
    prefixes: list[str]
    window: str = ""
    suffix: str = ""
    has_window: bool = False
    has_offset: bool = False
    offset: str = ""
    keep_last: bool = False


def _methods(methods: Sequence[Method], query: str, step: str, *,
             skip_sample: bool) -> tuple[str, bool]:
    """The query with the methods applied, and whether it became an instant query."""
    chain = _Chain(query, step, [])
    for index, method in enumerate(methods):
        if index == 0 and method.op in _SAMPLERS:
            continue
        if chain.keep_last:
            raise _error("keepLastValues need to be the last method call on a Prometheus query",
                         method.pos)
        _apply(chain, method, skip_sample=skip_sample)

    head = "".join(reversed(chain.prefixes))
    if chain.has_window:
        return head + chain.window + chain.suffix, chain.keep_last
    if chain.has_offset:
        # No over_time to hold the offset: the reference leaves its closing parenthesis alone.
        return head + chain.query + " offset " + chain.offset + ")" + chain.suffix, chain.keep_last
    return head + chain.query + chain.suffix, chain.keep_last


def _apply(chain: _Chain, method: Method, *, skip_sample: bool) -> None:
    op = method.op
    if op is Tok.SHIFT:
        if chain.has_offset:
            raise _error("shift can be done only once", method.pos)
        chain.has_offset = True
        chain.offset = method.named.get(Prefix.VALUE, EMPTY).lit
    elif op in _SAMPLERS:
        if not skip_sample:
            raise _error("sampling must be the first operation set", method.pos)
    elif op in _ARITHMETIC:
        chain.suffix += _arithmetic(method)
    elif op is Tok.KEEPLASTVALUES:
        chain.keep_last = True
        _check_keep_last(method)
    elif op in _OVER_TIME:
        if chain.has_window:
            raise _error(f"over_time {op.text} methods can be done only once per query",
                         method.pos)
        chain.window += _over_time(chain, method)
        chain.has_window = True
    elif op in _GROUPS:
        prefix, suffix = _group(method)
        chain.suffix += suffix
        chain.prefixes.append(prefix)
    elif op in _FUNCTIONS:
        prefix, suffix = _function(method)
        chain.suffix += suffix
        chain.prefixes.append(prefix)
    else:
        raise _error(f"operator {op.text} not supported in TSL for {BACKEND}", method.pos)


def _arithmetic(method: Method) -> str:
    text = " " + _PROMQL[method.op]
    value = method.named.get(Prefix.VALUE)
    if value is None:
        return text
    if method.op in (Tok.ANDL, Tok.ORL):
        if value.tok not in (Tok.TRUE, Tok.FALSE):
            raise _error("and or or operation works only using a boolean value", method.pos)
    elif value.tok not in _NUMBERS:
        raise _error("arithmetic operation works only on integer or number values", method.pos)
    return text + " " + value.lit


def _check_keep_last(method: Method) -> None:
    if not method.named:
        return
    count = _go_atoi(method.named.get(Prefix.VALUE, EMPTY).lit)
    if count is None or count > 1:
        raise _error("keepLastValues can't be applied with an argument as it call instant values"
                     " query in Prometheus", method.pos)


def _over_time(chain: _Chain, method: Method) -> str:
    """`<agg>_over_time(q[span])` (or `rate(q[span])`), with the pending offset inside."""
    op = method.op
    # window(agg, …) names its aggregator; the other methods are their own.
    kind = method.named.get(Prefix.AGGREGATOR, EMPTY).tok if op is Tok.WINDOW else op
    aggregator = _PROMQL[kind] if kind in (Tok.MEAN, Tok.PERCENTILE) else kind.text

    param = ""
    if op is Tok.PERCENTILE or aggregator == _PROMQL[Tok.PERCENTILE]:
        quantile = _go_parse_float(method.named.get(Prefix.VALUE, EMPTY).lit)
        if quantile is None:
            raise _error("over_time function return an error when parsing percentile parameter ",
                         method.pos)
        param = _go_format_float(quantile / 100.0) + ","

    function = "rate(" if op is Tok.RATE else aggregator + "_over_time(" + param
    sampling = method.named.get(Prefix.PRE if op is Tok.WINDOW else Prefix.SAMPLING)
    if sampling is None and 0 not in method.unnamed:
        raise _error(f"over_time function expects one mapper sampling for {op.text}", method.pos)
    span = chain.step if sampling is None else sampling.lit

    function += chain.query + "[" + span + "]"
    return function + (" offset " + chain.offset + ")" if chain.has_offset else ")")


def _group(method: Method) -> tuple[str, str]:
    """`agg(` and `) by (labels)` for group, groupBy and groupWithout (which also says by)."""
    aggregator = method.named.get(Prefix.AGGREGATOR, EMPTY)
    operator = aggregator.lit
    if aggregator.tok is Tok.STRING:
        if aggregator.lit == Tok.MEAN.text:
            operator = _PROMQL[Tok.MEAN]
        elif aggregator.lit == Tok.PERCENTILE.text:
            operator = _PROMQL[Tok.PERCENTILE]
    elif aggregator.tok in (Tok.MEAN, Tok.PERCENTILE):
        operator = _PROMQL[aggregator.tok]
    elif aggregator.tok not in _PLAIN_GROUP_AGGREGATORS:
        raise _error(f"aggregator {aggregator.tok.text} isn't valid", method.pos)

    labels = dict(method.unnamed)
    param = ""
    if operator == _PROMQL[Tok.PERCENTILE]:
        quantile = _go_parse_float(labels.get(0, EMPTY).lit)
        if quantile is None:
            raise _error("over_time function return an error when parsing percentile parameter",
                         method.pos)
        param = _go_format_float(quantile / 100.0) + ","
        labels.pop(0, None)

    suffix = ")" + (_by_labels("by", labels) if labels else "")
    return operator + "(" + param, suffix


def _function(method: Method) -> tuple[str, str]:
    """`fn(` and `)` for the functions of one series; clamp and topk take a parameter."""
    op = method.op
    operator = _PROMQL.get(op, op.text)
    prefix, suffix = "(", ")"
    if op in (Tok.MAXWITH, Tok.MINWITH):
        suffix = "," + method.named.get(Prefix.VALUE, EMPTY).lit + ")"
    elif op in (Tok.TOPN, Tok.BOTTOMN):
        prefix += method.named.get(Prefix.N, EMPTY).lit + ","
    if method.unnamed:
        suffix += _by_labels("without" if op is Tok.GROUPWITHOUT else "by", method.unnamed)
    return operator + prefix, suffix


def _by_labels(keyword: str, labels: Mapping[int, Field]) -> str:
    return " " + keyword + " (" + ", ".join(label.lit for label in labels.values()) + ")"


# --- Go's standard library, as far as the output depends on it ------------------------------

_INT64_MIN = -(1 << 63)
_UINT64_SIGN = 1 << 63
_DURATION_UNITS: Mapping[bytes, int] = {
    b"ns": 1, b"us": 1_000, "µs".encode(): 1_000, "μs".encode(): 1_000,
    b"ms": 1_000_000, b"s": 1_000_000_000, b"m": 60_000_000_000, b"h": _HOUR_NS,
}
_DIGITS = b"0123456789"


def _int64(value: int) -> int:
    """Wrap to a Go int64, as its arithmetic does on overflow."""
    return (value - _INT64_MIN) % (1 << 64) + _INT64_MIN


def _go_quotient(a: int, b: int) -> int:
    """Go's integer division, which truncates toward zero."""
    quotient = abs(a) // abs(b)
    return quotient if (a < 0) == (b < 0) else -quotient


def _unix_nanos(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _go_parse_duration(text: str) -> int:
    """time.ParseDuration: nanoseconds, or a TslError with Go's own message."""
    raw = _bytes(text)
    negative = raw[:1] == b"-"
    rest = raw[1:] if raw[:1] in (b"-", b"+") else raw
    if rest == b"0":
        return 0
    if not rest:
        raise _duration_error("invalid duration", text)
    total = 0
    while rest:
        value, rest = _duration_part(rest, text)
        total += value
        if total > _UINT64_SIGN:
            raise _duration_error("invalid duration", text)
    if negative:
        return _int64(-total)
    if total > _UINT64_SIGN - 1:
        raise _duration_error("invalid duration", text)
    return total


def _duration_part(rest: bytes, text: str) -> tuple[int, bytes]:
    """One `[0-9]*(.[0-9]*)?unit` of a duration: its nanoseconds and what follows it."""
    if rest[0] != ord(".") and rest[0] not in _DIGITS:
        raise _duration_error("invalid duration", text)
    whole, after = _leading_int(rest)
    if whole is None:
        raise _duration_error("invalid duration", text)
    has_whole = len(after) != len(rest)
    fraction, scale, has_fraction = 0, 1.0, False
    if after[:1] == b".":
        fraction, scale, tail = _leading_fraction(after[1:])
        has_fraction = len(tail) != len(after) - 1
        after = tail
    if not has_whole and not has_fraction:
        raise _duration_error("invalid duration", text)
    end = 0
    while end < len(after) and after[end] != ord(".") and after[end] not in _DIGITS:
        end += 1
    if end == 0:
        raise _duration_error("missing unit in duration", text)
    unit_text, after = after[:end], after[end:]
    unit = _DURATION_UNITS.get(unit_text)
    if unit is None:
        unit_quoted, text_quoted = _go_time_quote(unit_text), _go_time_quote(_bytes(text))
        raise TslError(f"time: unknown unit {unit_quoted} in duration {text_quoted}")
    if whole > _UINT64_SIGN // unit:
        raise _duration_error("invalid duration", text)
    value = whole * unit
    if fraction > 0:
        value += int(float(fraction) * (float(unit) / scale))
        if value > _UINT64_SIGN:
            raise _duration_error("invalid duration", text)
    return value, after


def _leading_int(text: bytes) -> tuple[int | None, bytes]:
    value, index = 0, 0
    while index < len(text) and text[index] in _DIGITS:
        if value > _UINT64_SIGN // 10:
            return None, text
        value = value * 10 + text[index] - ord("0")
        if value > _UINT64_SIGN:
            return None, text
        index += 1
    return value, text[index:]


def _leading_fraction(text: bytes) -> tuple[int, float, bytes]:
    value, scale, index, overflow = 0, 1.0, 0, False
    while index < len(text) and text[index] in _DIGITS:
        digit = text[index] - ord("0")
        index += 1
        if overflow or value > (_UINT64_SIGN - 1) // 10 or value * 10 + digit > _UINT64_SIGN:
            overflow = True
            continue
        value = value * 10 + digit
        scale *= 10
    return value, scale, text[index:]


def _duration_error(what: str, text: str) -> TslError:
    return TslError(f"time: {what} {_go_time_quote(_bytes(text))}")


def _bytes(text: str) -> bytes:
    """A Go string's bytes (lone surrogates stand for the invalid UTF-8 they came from)."""
    return text.encode(errors="surrogatepass")


def _go_time_quote(raw: bytes) -> str:
    """The time package's own quote: bytes outside printable ASCII become \\xNN."""
    out = ['"']
    for byte in raw:
        if byte >= 0x80 or byte < 0x20:
            out.append(f"\\x{byte:02x}")
        else:
            out.append(("\\" if byte in b'"\\' else "") + chr(byte))
    out.append('"')
    return "".join(out)


_DECIMAL_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?\d+")
_SPECIAL_FLOAT = re.compile(r"[+-]?(?:inf|infinity)|nan", re.IGNORECASE)


def _go_parse_float(text: str) -> float | None:
    """strconv.ParseFloat(text, 64), None where Go returns an error (syntax or overflow)."""
    if _SPECIAL_FLOAT.fullmatch(text):
        return float(text)
    if _HEX_FLOAT.fullmatch(text):
        value = _from_hex(text)
    elif _DECIMAL_FLOAT.fullmatch(text):
        value = float(text)
    else:
        return None
    return None if math.isinf(value) else value


def _from_hex(text: str) -> float:
    try:
        return float.fromhex(text)
    except OverflowError:
        return math.inf


def _go_atoi(text: str) -> int | None:
    """strconv.Atoi: a signed decimal int64, None where Go returns an error."""
    if not re.fullmatch(r"[+-]?\d+", text, re.ASCII):
        return None
    value = int(text)
    return value if _INT64_MIN <= value < -_INT64_MIN else None


def _go_format_float(value: float) -> str:
    """strconv.FormatFloat(value, 'f', -1, 64): the shortest round-trip digits, no exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return format(Decimal(repr(value)).normalize(), "f")


_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?(.?)", re.DOTALL)


def _go_sprintf(template: str, argument: str) -> str:
    """fmt.Sprintf(template, argument) for one string argument. Supports what a where key can
    bring into the template: `%%`, flags, width and precision with the string verbs (s, v, q,
    x, X), and Go's `%!` notes for a wrong verb, a missing or an extra argument."""
    out: list[str] = []
    used = False
    position = 0
    for verb in _VERB.finditer(template):
        out.append(template[position:verb.start()])
        position = verb.end()
        flags, width, precision, letter = verb.groups()
        if letter == "":
            out.append("%!(NOVERB)")
        elif letter == "%":
            out.append("%")
        elif used:
            out.append(f"%!{letter}(MISSING)")
        else:
            used = True
            out.append(_format_string(argument, letter, flags, width, precision))
    out.append(template[position:])
    if not used:
        out.append(f"%!(EXTRA string={argument})")
    return "".join(out)


def _format_string(value: str, letter: str, flags: str, width: str,
                   precision: str | None) -> str:
    if precision is not None and letter in "svq":
        value = value[:int(precision or "0")]
    if letter in "sv":
        text = go_quote(value) if letter == "v" and "#" in flags else value
    elif letter == "q":
        text = f"`{value}`" if "#" in flags and _can_backquote(value) else go_quote(value)
    elif letter in "xX":
        text = _bytes(value).hex()
        text = text.upper() if letter == "X" else text
    else:
        return f"%!{letter}(string={value})"
    padding = max(int(width or "0") - len(text), 0)
    if "-" in flags:
        return text + " " * padding
    return ("0" if "0" in flags else " ") * padding + text


def _can_backquote(value: str) -> bool:
    """strconv.CanBackquote: one line of printable text without a backquote."""
    return not any((ch < " " and ch != "\t") or ch in "`\x7f\ufeff" or "\ud800" <= ch <= "\udfff"
                   for ch in value)
