"""Native evaluation: TSL statements planned onto the engine's kernels, reading from a connector.

A select becomes one connector read with what the connector can do itself pushed down (the name,
the label matchers, the time range); every method after it is a kernel over the whole SeriesSet.
Where the reference implementation has a documented bug, evaluation follows the documented intent
(see docs/tsl.md, "Where tsq differs from the reference").

Time in native evaluation is tsq's (docs/time.md): a range is closed on the left and open on the
right, and so is a bucket, which is labelled by its start. Warp 10, which the compilers target,
closes both on the right; the difference shows only for points exactly on a boundary.
- `from(a, b)` reads [a, b); `last(d)` reads [end - d, end), with end = now (or the loop's
  window end), minus `shift`, or the given `timestamp`/`date`; `timeclip` keeps [start, end).
- A bare number used as a timestamp (`from(…)`, `last(…, timestamp=…)`, `setValues(base, …)`) is
  read by its size: seconds, milliseconds, microseconds (Warp 10's unit at OVH) or nanoseconds.
- `sampleBy` buckets are [t, t + span), labelled t, on a grid aligned on the epoch
  (`relative=false`, the documented default) or on the range's end (`relative=true`). A tick
  that is a bucket's label lies in that bucket, so sampling again on the same grid (the
  reference samples by 1m before a duration mapper) keeps every tick where it is.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np

from tsq import explain, querybudget
from tsq.connectors.base import grouping, sampling
from tsq.errors import BadRequest, TslError
from tsq.isotime import parse_ns
from tsq.kernels import (
    Aggregator,
    Buckets,
    Fill,
    Grouping,
    bucketize,
    choose,
    combine,
    maps,
)
from tsq.kernels.window import cumulative, window
from tsq.regex import Pattern, RegexError, compile_user
from tsq.selector import NAME_LABEL, Matcher, Selector
from tsq.series import SeriesSet

from .ast import EMPTY, Field, Instruction, Match, Method, Prefix, Select, Tok
from .binder import Value, parse
from .messages import with_caret

__all__ = ["Evaluation", "Results", "duration_ns", "epoch_ns", "timestamp_ns"]

T, P = Tok, Prefix
NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
      "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000,
      "w": 604_800_000_000_000}
_DURATION = re.compile(r"(-?[0-9]+)([A-Za-zµ]+)")
_MONTHS = re.compile(r"([0-9]+)M")   # sampleBy's calendar-month span
_MATCH_OP = {Match.EQUAL: "=", Match.NOT_EQUAL: "!=", Match.REGEX: "=~", Match.NOT_REGEX: "!~"}
_AGGREGATOR_TOKS = {T.MEAN: "mean", T.MAX: "max", T.MIN: "min", T.FIRST: "first", T.LAST: "last",
                    T.SUM: "sum", T.MEDIAN: "median", T.COUNT: "count", T.ANDL: "and",
                    T.ORL: "or", T.JOIN: "join", T.PERCENTILE: "percentile", T.DELTA: "delta",
                    T.STDDEV: "stddev", T.STDVAR: "stdvar"}


def duration_ns(text: str) -> int:
    """`1m`, `-5m`, `2h`, `100ms` → nanoseconds (TSL durations; no compound forms)."""
    found = _DURATION.fullmatch(text)
    if found is None or found.group(2) not in NS:
        if found is not None and found.group(2) == "ps":
            return int(found.group(1)) // 1000
        raise TslError(f"unknown duration {text!r}: write a whole number and one of the units "
                       f"{', '.join(['w', 'd', 'h', 'm', 's', 'ms', 'us', 'ns'])}, e.g. 5m")
    return int(found.group(1)) * NS[found.group(2)]


def timestamp_ns(item: Field | str | float, what: str = "the time") -> int:
    """An absolute time: an ISO 8601 / RFC 3339 string (tsq.isotime's rules: without an offset
    it is UTC), or a number read by its size."""
    text = item.lit if isinstance(item, Field) else item
    if isinstance(text, str):
        try:
            number = float(text)
        except ValueError:
            try:
                return parse_ns(text, what)
            except BadRequest as error:
                raise TslError(f"{error.message}, or an epoch number") from None
    else:
        number = float(text)
    magnitude = abs(number)
    scale = 1e9 if magnitude < 1e11 else 1e6 if magnitude < 1e14 else 1e3 if magnitude < 1e17 else 1
    return round(number * scale)


def epoch_ns(moment: datetime) -> int:
    """A timezone-aware datetime in epoch nanoseconds (to the microsecond it holds)."""
    return int(moment.timestamp() * 1_000_000) * 1_000


@dataclass(frozen=True)
class _Range:
    start: int | None   # inclusive, ns
    end: int            # exclusive, ns


class Evaluation:
    """Evaluates TSL on `connector`; `connectors` are the other back-ends a script may `connect()`
    to, by name."""

    def __init__(self, connector: Any, *, now: datetime | None = None,
                 connectors: Mapping[str, Any] | None = None) -> None:
        self.connector = connector
        self.connectors: Mapping[str, Any] = {} if connectors is None else connectors
        self.now = epoch_ns(now or datetime.now(UTC))

    def run(self, source: str, variables: Mapping[str, Value] | None = None) -> SeriesSet:
        return self.run_all(source, variables).joined()

    def run_all(self, source: str, variables: Mapping[str, Value] | None = None) -> Results:
        return self.results(parse(source, values=variables), source)

    def results(self, instructions: Sequence[Instruction], source: str) -> Results:
        try:
            answers: list[SeriesSet | list[Any]] = []
            points = 0
            for instruction in instructions:
                answers.append(answer := self.statement(instruction))
                if isinstance(answer, SeriesSet):  # the answer joins every statement's series
                    points += answer.points
                    querybudget.allow(points, "the statements' series together")
            return Results(tuple(answers))
        except BadRequest as error:
            raise TslError(error.message) from None
        except TslError as error:
            raise with_caret(error, source) from None

    # -- statements -------------------------------------------------------------------------

    def statement(self, instruction: Instruction) -> SeriesSet | list[Any]:
        """A statement's series, or for names()/labels()/attributes()/selectors() the list they
        describe the matching series with."""
        querybudget.check()
        if not instruction.is_meta:
            return self.instruction(instruction)
        method = instruction.select.methods[-1]
        found = self.connector_for(instruction).describe(_selector(instruction.select))
        key = method.args[0].lit if method.args else None
        if method.op is T.NAMES:
            return sorted({name for name, _ in found})
        if method.op is T.SELECTORS:
            return [name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"
                    for name, labels in found]
        if method.op is T.ATTRIBUTES:   # tsq's stores keep no attributes
            return [] if key is not None else [{} for _ in found]
        if key is not None:
            return sorted({labels[key] for _, labels in found if key in labels})
        return [dict(labels) for _, labels in found]

    def instruction(self, instruction: Instruction) -> SeriesSet:
        select = instruction.select
        methods = select.methods
        if instruction.is_operator:
            operator = instruction.operator
            operands = [self.instruction(o) for o in operator.operands]
            on = operator.labels or None if not operator.ignoring else None
            ignoring = operator.ignoring or None
            if operator.group.lit:
                series = _many_to_one(operator.op.text, operands, on, ignoring,
                                      operator.group.tok is T.GROUPLEFT, operator.group_labels)
            else:
                series = combine.apply(operator.op.text, operands, on=on, ignoring=ignoring)
            span = _Range(None, self.now)
        elif instruction.create.series:
            series, span = self.create(instruction), _Range(None, self.now)
        else:
            span = self.range(select)
            pushed = self.fetch_sampled(instruction, span)
            if pushed is not None:   # the connector sampled (and grouped): those methods are done
                series, done = pushed
                methods = methods[done:]
                querybudget.allow(series.points, "the sampled series")
            else:
                series = self.fetch(instruction, span)
        for method in methods:
            querybudget.check()  # between steps: a query past its deadline stops here
            series = self.method(method, series, span, instruction)
            querybudget.allow(series.points, f"{method.op.text}()'s result")
            explain.note("tsq", partial(_step, method, series))
        return series

    def connector_for(self, instruction: Instruction) -> Any:
        connect = instruction.connect
        if not connect.type:
            return self.connector
        named = self.connectors.get(connect.api)
        if named is None:
            known = ", ".join(sorted(self.connectors)) or "none are configured"
            raise TslError(f"connect({connect.type!r}, {connect.api!r}) names no connector of "
                           f"this loop ({known}); add it under `connectors:` in the loop file")
        return named

    def fetch(self, instruction: Instruction, span: _Range) -> SeriesSet:
        select = instruction.select
        connector = self.connector_for(instruction)
        series: SeriesSet = connector.select(_selector(select), span.start, span.end)
        if select.has_last and not select.last.is_duration:
            series = maps.keep(series, int(select.last.last))
        return series

    def fetch_sampled(self, instruction: Instruction, span: _Range
                      ) -> tuple[SeriesSet, int] | None:
        """A select whose first method is a sampleBy over a time range, read from a connector
        that samples itself (`capabilities.sampling`): only the buckets travel; with a group
        method right after it and a connector that groups (`capabilities.grouping`), only the
        groups. The series and how many methods they have done; None when nothing can be
        handed to the connector."""
        select = instruction.select
        connector = sampling(self.connector_for(instruction))
        if not select.methods or connector is None or \
                span.start is None or (select.has_last and not select.last.is_duration):
            return None
        first = select.methods[0]
        if first.op not in (T.SAMPLEBY, T.SAMPLE):
            return None
        plan = self.sampling_plan(first, span)
        if plan is None:
            return None
        grid, aggregator, fills = plan
        if fills and grid.first is not None and grid.last is not None:
            # filled, every bucket of the grid holds a point in each series found; refused
            # before the connector is asked for them
            querybudget.allow((grid.last - grid.first) // grid.span + 1, "the sampleBy's grid")
        grouper = grouping(connector)
        if grouper is not None and len(select.methods) > 1 and \
                select.methods[1].op in (T.GROUP, T.GROUPBY, T.GROUPWITHOUT):
            grouped: SeriesSet = grouper.select_grouped(
                _selector(select), span.start, span.end, grid, aggregator, fills,
                _grouping(select.methods[1]))
            return grouped, 2
        found: SeriesSet = connector.select_sampled(_selector(select), span.start, span.end,
                                                    grid, aggregator, fills)
        return found, 1

    def range(self, select: Select) -> _Range:
        if select.has_from:
            end = timestamp_ns(select.from_.end, "from()'s end") if select.from_.has_end \
                else self.now
            return _Range(timestamp_ns(select.from_.start, "from()'s start"), end)
        if not select.has_last:
            return _Range(None, self.now)
        options = select.last.options
        end = self.now
        if P.TIMESTAMP in options:
            end = timestamp_ns(options[P.TIMESTAMP], "last()'s timestamp")
        elif P.DATE in options:
            end = timestamp_ns(options[P.DATE].lit, "last()'s date")
        if P.SHIFT in options:
            end -= duration_ns(options[P.SHIFT].lit)
        if select.last.is_duration:
            return _Range(end - duration_ns(select.last.last), end)
        return _Range(None, end)

    def create(self, instruction: Instruction) -> SeriesSet:
        out = []
        for created in instruction.create.series:
            base = self.now if created.end.lit in ("", "now") else timestamp_ns(created.end)
            # without a base, a tick is a time; after one, an offset (a duration, or µs)
            ticks = [timestamp_ns(p.tick) if created.end.tok is T.ILLEGAL and
                     p.tick.tok is not T.DURATIONVAL else base + _duration_arg(p.tick)
                     for p in created.values]
            values = [_number_or_text(p.value) for p in created.values]
            labels = {w.key: w.value for w in created.where}
            out.append((created.metric.lit, labels, np.array(ticks, np.int64), np.array(values)))
        return SeriesSet.from_series(out)

    # -- methods ----------------------------------------------------------------------------

    def method(self, method: Method, series: SeriesSet, span: _Range,
               instruction: Instruction) -> SeriesSet:
        handler = _METHODS.get(method.op)
        if handler is None:
            raise _error(f"{method.op.text}() is not available in native evaluation; compile the "
                         f"query to WarpScript for it", method)
        result: SeriesSet = handler(self, method, series, span, instruction)
        return result

    def sample_by(self, method: Method, series: SeriesSet, span: _Range,
                  _i: Instruction) -> SeriesSet:
        named, given, param = _sampling(method)
        if span.start is None and P.SPAN not in named:   # a count of buckets over the data
            start = int(series.timestamps.min()) if series.points else span.end - 1
            span = _Range(start, span.end)
        plan = self.sampling_plan(method, span)
        if plan is None:   # calendar months
            months = _MONTHS.fullmatch(named[P.SPAN].lit)
            assert months is not None
            return _by_months(series, int(months.group(1)), _aggregator(given, param),
                              _fills(named, method), span.start, span.end)
        grid, aggregator, fills = plan
        if fills:  # a filled grid is built whole, however few points there are: refuse it first
            querybudget.allow(_grid_points(grid, series), "the sampleBy's grid")
        return bucketize(series, grid, aggregator, fills)

    def sampling_plan(self, method: Method, span: _Range
                      ) -> tuple[Buckets, Aggregator, list[Fill]] | None:
        """The bucket grid, aggregator and fills of a sampleBy over `span`; None for calendar
        months, or a count of buckets with no range to divide."""
        named, given, param = _sampling(method)
        aggregator = _aggregator(given, param)
        relative = named.get(P.RELATIVE, EMPTY).tok is T.TRUE
        end, start = span.end, span.start
        if P.SPAN in named:
            if _MONTHS.fullmatch(named[P.SPAN].lit):
                return None
            width = duration_ns(named[P.SPAN].lit)
        else:
            if start is None:
                return None
            count = int(named.get(P.COUNT, EMPTY).lit or 1)
            width = max((end - start) // max(count, 1), 1)
            relative = True
        if width <= 0:
            raise _error(f"a sampleBy span must be positive, got {named[P.SPAN].lit}", method)
        anchor = end % width if relative else 0
        if start is None:
            return Buckets(width, anchor), aggregator, _fills(named, method)
        # the first bucket holds start, the last one end - 1; each is labelled by its start
        first, last = (anchor + (t - anchor) // width * width for t in (start, end - 1))
        return Buckets(width, anchor, first=first, last=last), aggregator, _fills(named, method)

    def group(self, method: Method, series: SeriesSet, _s: _Range, _i: Instruction) -> SeriesSet:
        return _grouping(method).apply(series)

    def window(self, method: Method, series: SeriesSet, _s: _Range, _i: Instruction) -> SeriesSet:
        args = [a for a in method.args if a.prefix is None]
        aggregator_field = next((a for a in method.args if a.prefix is P.AGGREGATOR), None)
        if aggregator_field is None:
            aggregator_field = args.pop(0)
        param = args.pop(0) if aggregator_field.tok in (T.JOIN, T.PERCENTILE) and args else None
        aggregator = _aggregator(aggregator_field, param)
        if method.op is T.CUMULATIVE:
            return cumulative(series, aggregator)
        pre = next((a for a in method.args if a.prefix is P.PRE), args[0] if args else None)
        post = next((a for a in method.args if a.prefix is P.POST),
                    args[1] if len(args) > 1 else None)
        return _windowed(series, aggregator, pre, post, method)

    def mapper(self, method: Method, series: SeriesSet, _s: _Range, _i: Instruction) -> SeriesSet:
        """`.mean()`, `.max(2, 1)`, `.sum(5m)`: a window of the method's aggregator."""
        if method.op is T.FINITE:
            return maps.finite(series)
        named = method.named
        param = named.get(P.VALUE)
        aggregator = _aggregator(Field(method.op), param)
        if P.SAMPLING in named:
            return _windowed(series, aggregator, named[P.SAMPLING], None, method)
        return _windowed(series, aggregator, named.get(P.PRE), named.get(P.POST), method)

    def number(self, method: Method, series: SeriesSet, _s: _Range, _i: Instruction) -> SeriesSet:
        operand = float(method.named[P.VALUE].lit) if P.VALUE in method.named else None
        op = method.op
        if op in (T.ADDSERIES, T.SUBSERIES, T.MULSERIES, T.DIVSERIES):
            return maps.arithmetic(series, op.text, _required(operand, method))
        if op in (T.EQUAL, T.NOTEQUAL, T.GREATERTHAN, T.GREATEROREQUAL, T.LESSTHAN, T.LESSOREQUAL):
            return maps.compare(series, op.text, _required(operand, method))
        if op is T.MAXWITH:
            return maps.clamp(series, low=_required(operand, method))
        if op is T.MINWITH:
            return maps.clamp(series, high=_required(operand, method))
        if op is T.LOGN:
            return maps.math(series, "logN", _required(operand, method))
        count = 1 if operand is None else int(operand)
        if op is T.TIMESCALE:
            return SeriesSet(series.names, series.labels,
                             (series.timestamps * _required(operand, method)).astype(np.int64),
                             series.values, series.offsets).normalized()
        return maps.keep(series, count, last=op is T.KEEPLASTVALUES)

    def no_argument(self, method: Method, series: SeriesSet, _s: _Range,
                    _i: Instruction) -> SeriesSet:
        op = method.op
        if op.text in maps.MATH or op in (T.LN, T.LOG2, T.LOG10):
            return maps.math(series, op.text)
        if op.text in maps.TIME_PARTS:
            return maps.time_part(series, op.text)
        if op is T.CUMULATIVESUM:
            return cumulative(series, Aggregator("sum"))
        if op is T.RESETS:
            return _without_resets(series)
        kinds: dict[Tok, Callable[[Any], Any]] = {
            T.TODOUBLE: lambda v: v.astype(np.float64), T.TOLONG: _to_long,
            T.TOBOOLEAN: lambda v: v.astype(bool), T.TOSTRING: _to_text}
        return maps.with_values(series, kinds[op](series.values))

    def time(self, method: Method, series: SeriesSet, _s: _Range, _i: Instruction) -> SeriesSet:
        given = method.named.get(P.VALUE)
        if method.op is T.SHIFT:
            return maps.shift(series, duration_ns(_required_field(given, method).lit))
        return maps.rate(series, duration_ns(given.lit) if given else 1_000_000_000)

    def choose(self, method: Method, series: SeriesSet, _s: _Range, _i: Instruction) -> SeriesSet:
        op, args = method.op, list(method.args)
        descending = op in (T.SORTDESC, T.SORTDESCBY, T.TOPN, T.TOPNBY)
        count = int(args.pop(0).lit) if op in (T.TOPN, T.BOTTOMN, T.TOPNBY, T.BOTTOMNBY) else None
        if count is not None and count <= 0:
            raise _error(f"{op.text} needs a count above 0, got {count}", method)
        key = args[0] if args else Field(T.MEAN)
        if key.tok in (T.NAMES, T.SELECTORS, T.LABELS, T.ATTRIBUTES):
            param = args[1] if len(args) > 1 else None
            ordered = series.take(_by_text(series, key, param, descending))
        else:
            aggregator = _aggregator(key, args[1] if len(args) > 1 else None)
            ordered = choose.sort_by(series, aggregator, descending=descending)
        return ordered if count is None else ordered.take(range(min(count, len(ordered))))

    def strings(self, method: Method, series: SeriesSet, _s: _Range,
                _i: Instruction) -> SeriesSet:
        return _STRING_METHODS[method.op](series, [a.lit for a in method.args])

    def store(self, _m: Method, series: SeriesSet, _s: _Range,
              instruction: Instruction) -> SeriesSet:
        """Write to the statement's connector (the Warp 10 token is not needed here)."""
        self.connector_for(instruction).write(series)
        return series

    def split(self, method: Method, series: SeriesSet, _s: _Range, _i: Instruction) -> SeriesSet:
        """timemodulo(n, label) and timesplit(quiet, minPoints, label), flattened."""
        args = method.args
        if args[0].tok is T.NOW:
            raise _error(f"{method.op.text}() needs a duration or a number of microseconds, "
                         f"not now, in native evaluation", method)
        width = _duration_arg(args[0])
        if width <= 0:
            raise _error(f"{method.op.text}() needs a positive period", method)
        out = []
        for item in series:
            if method.op is T.TIMEMODULO:
                quotients = item.timestamps // width
                for quotient in np.unique(quotients):
                    keep = quotients == quotient
                    out.append((item.name, {**item.labels, args[1].lit: str(int(quotient))},
                                item.timestamps[keep] % width, item.values[keep]))
                continue
            cuts = np.flatnonzero(np.diff(item.timestamps) > width) + 1
            pieces = [p for p in np.split(np.arange(len(item.timestamps)), cuts)
                      if len(p) >= int(args[1].lit)]
            for number, piece in enumerate(pieces, start=1):
                out.append((item.name, {**item.labels, args[2].lit: str(number)},
                            item.timestamps[piece], item.values[piece]))
        return SeriesSet.from_series(out)

    def quantize(self, method: Method, series: SeriesSet, _s: _Range,
                 _i: Instruction) -> SeriesSet:
        """A histogram of the values: per bucket of the given bounds (or of a step), one series
        labelled by the bucket (`<=b0`, `b0<v<=b1`, …, `>bn`) counting its values, at the
        series' last tick or, given a duration d, at the start t of each chunk [t, t + d)."""
        key, step = method.args[0].lit, method.args[1]
        chunk = _duration_arg(method.args[2]) if len(method.args) > 2 else None
        counts: dict[tuple[str, int], float] = {}
        name = series.names[0] if len(series) else ""
        for item in series:
            values = item.values.astype(np.float64)
            if not len(values):
                continue
            bounds = _quantize_bounds(step, values)
            names = _bucket_names(bounds)
            slots = np.searchsorted(np.asarray([float(b) for b in bounds]), values, side="left")
            ticks = (item.timestamps // chunk * chunk if chunk
                     else np.full(len(values), item.timestamps[-1]))
            pairs, found = np.unique(np.stack([slots, ticks]), axis=1, return_counts=True)
            for (slot, tick), count in zip(pairs.T.tolist(), found.tolist(), strict=True):
                counts[(names[slot], tick)] = counts.get((names[slot], tick), 0.0) + count
        by_label: dict[str, list[tuple[int, float]]] = {}
        for (label, tick), count in counts.items():
            by_label.setdefault(label, []).append((tick, count))
        return SeriesSet.from_series(
            (name, {key: label}, np.array([t for t, _ in points], np.int64),
             np.array([c for _, c in points])) for label, points in by_label.items())

    def clip(self, method: Method, series: SeriesSet, _s: _Range, _i: Instruction) -> SeriesSet:
        end_field, width_field = method.args[0], method.args[1]
        end = self.now if end_field.tok is T.NOW else timestamp_ns(end_field)
        if width_field.tok is T.DURATIONVAL:
            start = end - duration_ns(width_field.lit)
        elif width_field.tok is T.STRING:
            start, end = end, timestamp_ns(width_field.lit)
        else:
            start = end - _duration_arg(width_field)
        return maps.subset(series, (series.timestamps >= start) & (series.timestamps < end))


Handler = Callable[[Evaluation, Method, SeriesSet, _Range, Instruction], SeriesSet]


@dataclass(frozen=True)
class Results:
    """What each statement of a script produced, in order: series, or a metadata list."""

    statements: tuple[SeriesSet | list[Any], ...]

    @property
    def series(self) -> tuple[SeriesSet, ...]:
        return tuple(out for out in self.statements if isinstance(out, SeriesSet))

    @property
    def meta(self) -> list[list[Any]]:
        return [out for out in self.statements if not isinstance(out, SeriesSet)]

    def joined(self) -> SeriesSet:
        return SeriesSet.joined([out for out in self.series if len(out)]).normalized()


# -- helpers ---------------------------------------------------------------------------------

def _grid_points(grid: Buckets, series: SeriesSet) -> int:
    """The points a filled sampleBy on `grid` makes at most: every bucket of each series that
    has points (a grid without ends spans the data)."""
    counts = np.diff(series.offsets)
    held = int(np.count_nonzero(counts))
    if not held:
        return 0
    if grid.first is not None and grid.last is not None:
        return ((grid.last - grid.first) // grid.span + 1) * held
    spread = int(series.timestamps.max()) - int(series.timestamps.min())
    return (spread // grid.span + 2) * held


def _step(method: Method, series: SeriesSet) -> str:
    """A method tsq computed, as a plan shows it, with what it gave."""
    return f"{_shown(method)}: {len(series)} series, {series.points} points"


def _shown(method: Method) -> str:
    """A method as a plan shows it: its name and arguments as written."""
    return f"{method.op.text}({', '.join(_argument(arg) for arg in method.args)})"


def _argument(field: Field) -> str:
    if field.items:
        return "[" + ", ".join(_argument(item) for item in field.items) + "]"
    return field.lit or field.tok.text


def _selector(select: Select) -> Selector:
    """What a select asks the connector for: the name (or `~regex`) and the label matchers."""
    matchers = [Matcher.of(w.key, _MATCH_OP[w.op], w.value) for w in select.where]
    if select.metric.startswith("~"):
        matchers.insert(0, Matcher.of(NAME_LABEL, "=~", select.metric[1:]))
        return Selector(None, tuple(matchers))
    return Selector(None if select.select_all else select.metric, tuple(matchers))


def _error(message: str, where: Method | Select) -> TslError:
    line, char = where.pos.line + 1, where.pos.char + 1
    return TslError(f"{message} at line {line}, char {char}", line=line, char=char)


def _required(value: float | None, method: Method) -> float:
    if value is None:
        raise _error(f"{method.op.text}() needs a number", method)
    return value


def _required_field(value: Field | None, method: Method) -> Field:
    if value is None:
        raise _error(f"{method.op.text}() needs an argument", method)
    return value


def _grouping(method: Method) -> Grouping:
    """group(agg), groupBy(labels, agg), groupWithout(labels, agg) as a kernel's arguments."""
    args = list(method.args)
    labels: tuple[str, ...] | None = None
    if method.op is not T.GROUP:
        given = args.pop(0)
        labels = tuple(i.lit for i in given.items) if given.tok is T.INTERNALLIST \
            else (given.lit,)
    aggregator = _aggregator(args[0], args[1] if len(args) > 1 else None)
    return Grouping(labels, aggregator, without=method.op is T.GROUPWITHOUT)


def _aggregator(given: Field, param: Field | None) -> Aggregator:
    name = _AGGREGATOR_TOKS.get(given.tok) or given.lit
    if name not in _AGGREGATOR_TOKS.values():
        raise TslError(f"unknown aggregator {name!r}; expected one of "
                       f"{', '.join(sorted(set(_AGGREGATOR_TOKS.values())))}")
    if name == "percentile":
        return Aggregator(name, float(param.lit) if param else 50.0)
    if name == "join":
        return Aggregator(name, param.lit if param else ",")
    return Aggregator(name)


def _sampling(method: Method) -> tuple[Mapping[Prefix, Field], Field, Field | None]:
    """sampleBy's options, aggregator and its parameter. For `sample(agg, …)` they come from the
    arguments as written: the reference files sample()'s aggregator in the wrong slot."""
    if method.op is not T.SAMPLE:
        return method.named, method.named.get(P.SAMPLE_AGGREGATOR, EMPTY), method.unnamed.get(0)
    args = list(method.args)
    given = args.pop(0) if args else Field(T.MEAN)
    param = args.pop(0) if given.tok in (T.JOIN, T.PERCENTILE) and args else None
    kinds = {T.STRING: P.FILL, T.INTERNALLIST: P.FILL, T.FILL: P.FILL_VALUE, T.TRUE: P.RELATIVE,
             T.FALSE: P.RELATIVE}
    named: dict[Prefix, Field] = {P.COUNT: method.named.get(P.COUNT, Field(T.INTEGER, "100"))}
    for item in args:
        prefix = item.prefix or kinds.get(item.tok)
        if prefix is not None:
            named[P.FILL_VALUE if item.tok is T.FILL else prefix] = item
    return named, given, param


def _fills(named: Mapping[Prefix, Field], method: Method) -> list[Fill]:
    if P.FILL_VALUE in named:
        return [Fill("value", _fill_number(named[P.FILL_VALUE].lit))]
    given = named.get(P.FILL)
    if given is None:
        return [Fill("auto")]
    names = [i.lit for i in given.items] if given.tok is T.INTERNALLIST else [given.lit]
    if names == ["none"] or not names:
        return []
    unknown = [n for n in names if n not in ("auto", "interpolate", "previous", "next")]
    if unknown:
        raise _error(f"unknown fill {unknown[0]!r}; expected auto, none, interpolate, previous, "
                     f"next, a list of the last three, or fill(value)", method)
    return [Fill(n) for n in names]


def _fill_number(text: str) -> float:
    try:
        return float({"TRUE": "1", "FALSE": "0"}.get(text, text))
    except ValueError:
        raise TslError(f"fill({text}) needs a number in native evaluation") from None


def _windowed(series: SeriesSet, aggregator: Aggregator, pre: Field | None, post: Field | None,
              method: Method) -> SeriesSet:
    by_time = any(f is not None and f.tok is T.DURATIONVAL for f in (pre, post))
    if by_time and any(f is not None and f.tok is not T.DURATIONVAL for f in (pre, post)):
        raise _error("a window's pre and post must both be point counts or both durations", method)

    def size(given: Field | None) -> int:
        if given is None:
            return 0
        return abs(duration_ns(given.lit)) if by_time else abs(int(given.lit))
    return window(series, aggregator, size(pre), size(post), by_time=by_time)


def _many_to_one(op: str, operands: Sequence[SeriesSet], on: Sequence[str] | None,
                 ignoring: Sequence[str] | None, left: bool, extra: Sequence[str]) -> SeriesSet:
    """`.groupLeft(labels)` / `.groupRight(labels)`, as PromQL's group_left/group_right: each
    series of the "many" side meets the one series of the other side with the same matching
    labels, keeps its own labels and copies `extra` from the other side."""
    if len(operands) != 2:
        raise TslError(f"groupLeft/groupRight need exactly two operands, got {len(operands)}")
    many, one = (operands[0], operands[1]) if left else (operands[1], operands[0])

    def key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        if on is not None:
            return tuple((k, labels.get(k, "")) for k in on)
        return tuple(sorted((k, v) for k, v in labels.items() if k not in (ignoring or ())))
    partners: dict[tuple[tuple[str, str], ...], int] = {}
    for index, labels in enumerate(one.labels):
        if partners.setdefault(key(labels), index) != index:
            raise TslError(f"groupLeft/groupRight: several series on the 'one' side match "
                           f"{dict(key(labels))}; the matching labels must single one out")
    apply = combine.OPERATORS.get(op)
    if apply is None:
        raise TslError(f"groupLeft/groupRight work with arithmetic and comparison operators, "
                       f"not {op}")
    out = []
    for series in many:
        found = partners.get(key(series.labels))
        if found is None:
            continue
        other = one[found]
        common = np.intersect1d(series.timestamps, other.timestamps)
        mine = series.values[np.searchsorted(series.timestamps, common)].astype(np.float64)
        theirs = other.values[np.searchsorted(other.timestamps, common)].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = apply(mine, theirs) if left else apply(theirs, mine)
        labels = {**series.labels, **{k: other.labels[k] for k in extra if k in other.labels}}
        out.append((series.name, labels, common, values))
    return SeriesSet.from_series(out)


def _by_months(series: SeriesSet, months: int, aggregator: Aggregator, fills: Sequence[Fill],
               start: int | None, end: int) -> SeriesSet:
    """sampleBy(nM): calendar months, as every bucket closed on the left and labelled by its
    start (the first instant of its first month), on a grid of n months from 1970-01. The kernel
    buckets month numbers, then the ticks go back to time."""
    if months <= 0:
        raise TslError("a month span must be at least 1M")

    def month(stamps: Any) -> Any:   # the month holding each instant, numbered from 1970-01
        return np.asarray(stamps, np.int64).astype("datetime64[ns]").astype(
            "datetime64[M]").astype(np.int64)

    numbered = SeriesSet(series.names, series.labels, month(series.timestamps),
                         series.values, series.offsets)
    first, last = (None, None) if start is None else (
        int(month([t])[0] // months * months) for t in (start, end - 1))
    grid = Buckets(months, 0, first=first, last=last)
    out = bucketize(numbered, grid, aggregator, fills)
    stamps = out.timestamps.astype("datetime64[M]").astype("datetime64[ns]").astype(np.int64)
    return SeriesSet(out.names, out.labels, stamps, out.values, out.offsets)


def _duration_arg(item: Field) -> int:
    """A duration argument, or a bare number of microseconds (Warp 10's unit at OVH)."""
    return duration_ns(item.lit) if item.tok is T.DURATIONVAL else int(float(item.lit) * 1_000)


def _quantize_bounds(step: Field, values: Any) -> list[int | float]:
    if step.tok is T.INTERNALLIST:
        return [_number(i.lit) for i in step.items]
    width = _number(step.lit)
    if width <= 0:
        raise TslError(f"quantize needs a positive step, got {step.lit}")
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    bound = round(low / width) * width
    bounds = [bound, bound + width]
    while bounds[-1] < high:
        bounds.append(bounds[-1] + width)
    return bounds


def _number(text: str) -> int | float:
    return int(text) if re.fullmatch(r"-?[0-9]+", text) else float(text)


def _bucket_names(bounds: Sequence[int | float]) -> list[str]:
    texts = [str(b) for b in bounds]
    middle = [f"{low}<v<={high}" for low, high in itertools.pairwise(texts)]
    return [f"<={texts[0]}", *middle, f">{texts[-1]}"]


def _without_resets(series: SeriesSet) -> SeriesSet:
    """Counter resets undone: after a drop, the value before it is added to what follows."""
    values, ids = series.values.astype(np.float64), series.series_ids()
    drop = np.zeros(len(values))
    if len(values) > 1:
        falls = np.diff(values) < 0
        falls &= np.diff(ids) == 0
        drop[1:] = np.where(falls, values[:-1], 0.0)
    carried = np.cumsum(drop)
    base = carried[series.offsets[:-1][ids]]   # each series starts from nothing carried
    return maps.with_values(series, values + carried - base)


def _to_long(values: Any) -> Any:
    numbers = values.astype(np.float64)
    return np.trunc(np.nan_to_num(numbers)).astype(np.int64)


def _to_text(values: Any) -> Any:
    return np.array([str(v) for v in values.tolist()], dtype=object)


def _number_or_text(item: Field) -> Any:
    if item.tok is T.STRING:
        return item.lit
    return float(item.lit)


def _by_text(series: SeriesSet, key: Field, param: Field | None, descending: bool) -> list[int]:
    keys = [i.lit for i in param.items] if param is not None and param.tok is T.INTERNALLIST else \
        [param.lit] if param is not None else []

    def text(index: int) -> str:
        labels = series.labels[index]
        if key.tok is T.NAMES:
            return series.names[index]
        if key.tok is T.SELECTORS:
            pairs = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            return series.names[index] + "{" + pairs + "}"
        return ",".join(labels.get(k, "") for k in keys)
    return sorted(range(len(series)), key=text, reverse=descending)


def _relabel(series: SeriesSet, names: Sequence[str] | None = None,
             labels: Sequence[Mapping[str, str]] | None = None) -> SeriesSet:
    return SeriesSet(tuple(names) if names is not None else series.names,
                     tuple(labels) if labels is not None else series.labels,
                     series.timestamps, series.values, series.offsets)


def _rename_template(series: SeriesSet, template: str) -> list[str]:
    def one(index: int) -> str:
        labels = series.labels[index]
        text = template.replace("${this.name}", series.names[index])
        return re.sub(r"\$\{this\.labels\.([^}]+)\}", lambda m: labels.get(m.group(1), ""), text)
    return [one(i) for i in range(len(series))]


def _label_matchers(texts: Sequence[str]) -> list[Matcher]:
    out = []
    for text in texts:
        found = re.match(r"^(.*?)(!=|!~|=|~)(.*)$", text)
        if found is None:
            raise TslError(f"filterByLabels needs clauses like 'k=v', 'k~re', 'k!=v' or 'k!~re', "
                           f"got {text!r}")
        op = {"=": "=", "!=": "!=", "~": "=~", "!~": "!~"}[found.group(2)]
        out.append(Matcher.of(found.group(1), op, found.group(3)))
    return out


def _regex(pattern: str, given: str | None = None) -> Pattern:
    """A user's pattern (`given`, as written, when `pattern` wraps it), or TslError."""
    try:
        return compile_user(pattern)
    except RegexError as error:
        raise TslError(f"bad regular expression {given or pattern!r}: {error}") from None


def _set_label_from_name(series: SeriesSet, texts: Sequence[str]) -> SeriesSet:
    key, pattern = texts[0], _regex(texts[1] if len(texts) > 1 else "(.*)")
    labels = []
    for name, current in zip(series.names, series.labels, strict=True):
        found = pattern.fullmatch(name)
        value = (found.group(1) if found.groups() else found.group(0)) if found else None
        labels.append({**current, key: value} if value is not None else dict(current))
    return _relabel(series, labels=labels)


_STRING_METHODS: dict[Tok, Callable[[SeriesSet, Sequence[str]], SeriesSet]] = {
    T.ADDNAMEPREFIX: lambda s, t: _relabel(s, names=[t[0] + n for n in s.names]),
    T.ADDNAMESUFFIX: lambda s, t: _relabel(s, names=[n + t[0] for n in s.names]),
    T.RENAME: lambda s, t: _relabel(s, names=[t[0]] * len(s)),
    T.RENAMEBY: lambda s, t: _relabel(s, names=[
        "-".join(lab[k] for k in t if k in lab) for lab in s.labels]),
    T.RENAMETEMPLATE: lambda s, t: _relabel(s, names=_rename_template(s, t[0])),
    T.REMOVELABELS: lambda s, t: _relabel(s, labels=[
        {k: v for k, v in lab.items() if t and k not in t} for lab in s.labels]),
    T.RENAMELABELKEY: lambda s, t: _relabel(s, labels=[
        {(t[1] if k == t[0] else k): v for k, v in lab.items()} for lab in s.labels]),
    T.RENAMELABELVALUE: lambda s, t: _relabel(s, labels=[
        {k: (_regex(f"^(?:{t[1]})$", t[1]).sub(t[2], v) if k == t[0] else v)
         for k, v in lab.items()}
        for lab in s.labels]),
    T.SETLABELFROMNAME: _set_label_from_name,
    T.FILTERBYLABELS: lambda s, t: choose.filter_by_labels(s, _label_matchers(t)),
    T.FILTERWITHOUTLABELS: choose.filter_without_labels,
    T.FILTERBYNAME: lambda s, t: choose.filter_by_name(s, t[0]),
    T.FILTERBYLASTVALUE: lambda s, t: choose.filter_by_last_value(s, t[0]),
}

_METHODS: dict[Tok, Handler] = {
    **dict.fromkeys((T.SAMPLEBY, T.SAMPLE), Evaluation.sample_by),
    **dict.fromkeys((T.GROUP, T.GROUPBY, T.GROUPWITHOUT), Evaluation.group),
    **dict.fromkeys((T.WINDOW, T.CUMULATIVE), Evaluation.window),
    **dict.fromkeys((T.DELTA, T.MEAN, T.MEDIAN, T.MIN, T.MAX, T.COUNT, T.STDDEV, T.STDVAR, T.SUM,
                     T.JOIN, T.PERCENTILE, T.FINITE), Evaluation.mapper),
    **dict.fromkeys((T.ADDSERIES, T.SUBSERIES, T.MULSERIES, T.DIVSERIES, T.EQUAL, T.MAXWITH,
                     T.MINWITH, T.NOTEQUAL, T.GREATERTHAN, T.GREATEROREQUAL, T.LESSTHAN,
                     T.LESSOREQUAL, T.LOGN, T.SHRINK, T.KEEPFIRSTVALUES, T.KEEPLASTVALUES,
                     T.TIMESCALE), Evaluation.number),
    **dict.fromkeys((T.ABS, T.CEIL, T.CUMULATIVESUM, T.DAY, T.FLOOR, T.HOUR, T.LN, T.LOG2, T.LOG10,
                     T.MINUTE, T.MONTH, T.ROUND, T.RESETS, T.SQRT, T.TIMESTAMP, T.WEEKDAY, T.YEAR,
                     T.TOBOOLEAN, T.TODOUBLE, T.TOLONG, T.TOSTRING), Evaluation.no_argument),
    **dict.fromkeys((T.SHIFT, T.RATE), Evaluation.time),
    **dict.fromkeys((T.SORT, T.SORTDESC, T.SORTBY, T.SORTDESCBY, T.TOPN, T.BOTTOMN, T.TOPNBY,
                     T.BOTTOMNBY), Evaluation.choose),
    **dict.fromkeys(_STRING_METHODS, Evaluation.strings),
    T.STORE: Evaluation.store,
    T.TIMECLIP: Evaluation.clip,
    **dict.fromkeys((T.TIMEMODULO, T.TIMESPLIT), Evaluation.split),
    T.QUANTIZE: Evaluation.quantize,
}
