"""The GTS frameworks, BUCKETIZE, MAP, REDUCE, APPLY and FILTER, on the shared numpy kernels.

Their functions (`bucketizer.*`, `mapper.*`, `reducer.*`, `op.*`, `filter.*`) are words that
push a `Function`; the tables below say how many parameters each takes from the stack and which
kernel aggregator or numpy function runs it. Built-in functions work on whole SeriesSets; only
user macros (MACROMAPPER, MACROBUCKETIZER, MACROREDUCER, MACROFILTER) run once per window.

Where tsq follows Warp 10 rather than the subset's text:
- BUCKETIZE buckets are right-closed, `(end - span, end]`, labelled by their end tick, and the
  result lists the newest bucket first, as Warp 10 does;
- `op.eq`/`op.gt`/… give a BOOLEAN at each tick (Warp 10's OpGT), not the first operand's value;
- APPLY and REDUCE's `.forbid-nulls` reducers keep only the ticks every operand has.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import reduce
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tsq.kernels import Aggregator, Buckets, bucketize, group_by, window
from tsq.regex import RegexError, compile_user
from tsq.series import SeriesSet

from . import gtswords
from .faults import Fault, LimitHit, describe, is_number
from .gtswords import from_series, to_series
from .values import Function, Gts, Macro, scalar

if TYPE_CHECKING:
    from .vm import Vm

__all__ = ["WORDS"]

Array = npt.NDArray[Any]
Word = Callable[["Vm"], None]
STU = 1_000_000

# -- the functions: name → (parameters taken from the stack, kernel aggregator) ---------------

BUCKETIZERS: Mapping[str, tuple[int, str]] = {
    "sum": (0, "sum"), "max": (0, "max"), "min": (0, "min"), "mean": (0, "mean"),
    "first": (0, "first"), "last": (0, "last"), "median": (0, "median"),
    "count": (0, "count"), "join": (1, "join"), "and": (0, "and"), "or": (0, "or"),
    "percentile": (1, "percentile"), "sd": (1, "stddev"), "var": (1, "stdvar"),
}
REDUCERS: Mapping[str, tuple[int, str]] = {
    "sum": (0, "sum"), "mean": (0, "mean"), "min": (0, "min"), "max": (0, "max"),
    "median": (0, "median"), "count": (0, "count"), "and": (0, "and"), "or": (0, "or"),
    "join": (1, "join"), "percentile": (1, "percentile"), "sd": (1, "stddev"),
    "var": (1, "stdvar"), "first": (0, "first"), "last": (0, "last"),
}
NULL_SUFFIXES = ("", ".exclude-nulls", ".forbid-nulls", ".include-nulls")
# reducers that give no value at a tick where a member has none, unless told .exclude-nulls
# (Warp 10's reducer.mean example: a tick only one GTS has is left out)
FORBID_NULLS_BY_DEFAULT = frozenset({"mean", "median", "sd", "var"})
# window mappers: kernel aggregators over the window
WINDOW_MAPPERS: Mapping[str, tuple[int, str]] = {
    "sum": (0, "sum"), "mean": (0, "mean"), "min": (0, "min"), "max": (0, "max"),
    "first": (0, "first"), "last": (0, "last"), "median": (0, "median"),
    "count": (0, "count"), "delta": (0, "delta"), "and": (0, "and"), "or": (0, "or"),
    "join": (1, "join"), "percentile": (1, "percentile"), "sd": (1, "stddev"),
    "var": (1, "stdvar"), "rate": (0, "rate"),
}


def _numbers(values: Array) -> Array:
    """Values as DOUBLEs; a STRING that is no number becomes NaN (and its point is dropped)."""
    if values.dtype.kind != "O":
        return values.astype(np.float64)
    import pandas as pd
    numbers: Array = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), np.float64)
    return numbers


def _round_half_up(values: Array) -> Array:
    return np.floor(values + 0.5)


# value mappers: numpy over (values, ticks, params)
VALUE_MAPPERS: Mapping[str, tuple[int, Callable[..., Array]]] = {
    "abs": (0, lambda v, t: np.abs(v)), "ceil": (0, lambda v, t: np.ceil(v)),
    "floor": (0, lambda v, t: np.floor(v)), "round": (0, lambda v, t: _round_half_up(v)),
    "sqrt": (0, lambda v, t: np.sqrt(v)),
    "exp": (1, lambda v, t, c: np.power(float(c), v.astype(np.float64))),
    "finite": (0, lambda v, t: v), "tick": (0, lambda v, t: t.copy()),
    "todouble": (0, lambda v, t: _numbers(v)),
    "tolong": (0, lambda v, t: np.trunc(_numbers(v))),
    "toboolean": (0, lambda v, t: v.astype(bool) if v.dtype.kind != "O" else
                  np.array([str(x).lower() == "true" for x in v], dtype=bool)),
    "tostring": (0, lambda v, t: np.array([_text(x) for x in v.tolist()], dtype=object)),
    "add": (1, lambda v, t, c: v + c), "mul": (1, lambda v, t, c: v * c),
    "pow": (1, lambda v, t, c: np.power(v.astype(np.float64), c)),
    "log": (1, lambda v, t, c: np.log(v.astype(np.float64)) / math.log(c)),
    "max.x": (1, lambda v, t, c: np.maximum(v, c)), "min.x": (1, lambda v, t, c: np.minimum(v, c)),
    "replace": (1, lambda v, t, c: np.full(len(v), c, dtype=np.asarray(c).dtype
                                           if not isinstance(c, str) else object)),
}
COMPARE_MAPPERS: Mapping[str, Callable[[Array, Any], Array]] = {
    "eq": np.equal, "ne": np.not_equal, "gt": np.greater, "ge": np.greater_equal,
    "lt": np.less, "le": np.less_equal,
}
TIME_MAPPERS: Mapping[str, str] = {
    "year": "year", "month": "month", "day": "day", "hour": "hour", "minute": "minute",
    "second": "second", "weekday": "weekday",
}
OPS: Mapping[str, Callable[[Array, Array], Array]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
    "eq": np.equal, "ne": np.not_equal, "gt": np.greater, "ge": np.greater_equal,
    "lt": np.less, "le": np.less_equal, "and": np.logical_and, "or": np.logical_or,
}
BINARY_OPS = ("sub", "div", "mask", "negmask", "eq", "ne", "gt", "ge", "lt", "le")
FILTER_LAST = {"eq": np.equal, "ne": np.not_equal, "gt": np.greater, "ge": np.greater_equal,
               "lt": np.less, "le": np.less_equal}


def _text(value: Any) -> str:
    from .vm import to_string
    return to_string(value)


def _function(family: str, name: str, count: int) -> Word:
    def push(vm: Vm) -> None:
        params = tuple(vm.pops(count))
        vm.stack.append(Function(family, name, params))
    return push


def _macro_function(family: str) -> Word:
    def push(vm: Vm) -> None:
        macro = vm.pop_macro(f"a MACRO (MACRO{family.upper()})")
        vm.stack.append(Function(family, "macro", (), macro))
    return push


def _framework_args(vm: Vm, word: str, params: int) -> tuple[list[Gts], list[Any]]:
    """`[ gts… [gts…] fn p1 p2 … ]`: the GTS (lists flattened) and the trailing parameters."""
    args = vm.pop_list(f"a LIST of arguments ({word})")
    if len(args) < params + 1:
        raise Fault(f"{word} needs [ GTS… and {params} parameter(s) ], got {len(args)} items")
    series: list[Gts] = []
    for item in args[:-params]:
        if isinstance(item, Gts):
            series.append(item)
        elif isinstance(item, list) and all(isinstance(g, Gts) for g in item):
            series.extend(item)
        else:
            raise Fault(f"{word}: expected GTS or LISTs of GTS before the parameters, got "
                        f"{describe(item)}")
    return series, args[-params:]


def _family(fn: Any, family: str, word: str) -> Function:
    if not isinstance(fn, Function) or fn.family != family:
        raise Fault(f"{word} needs a {family} (like {family}.mean), got {describe(fn)}")
    return fn


# -- BUCKETIZE ----------------------------------------------------------------------------------

def _bucketize(vm: Vm) -> None:
    series, (fn, lastbucket, span, count) = _framework_args(vm, "BUCKETIZE", 4)
    bucketizer = _family(fn, "bucketizer", "BUCKETIZE")
    for value, what in ((lastbucket, "lastbucket"), (span, "bucketspan"), (count, "bucketcount")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise Fault(f"BUCKETIZE: {what} must be a LONG of 0 or more, got {describe(value)}")
    if span == 0 and count == 0:
        raise Fault("BUCKETIZE needs a bucketspan or a bucketcount (both are 0)")
    groups: dict[tuple[int, int, int], list[int]] = {}
    out: list[Gts | None] = [None] * len(series)
    for index, gts in enumerate(series):
        if not len(gts):
            empty = gts.empty_copy()
            empty.lastbucket, empty.bucketspan, empty.bucketcount = lastbucket, span, count
            out[index] = empty
            continue
        grid = _grid(gts, lastbucket, span, count, vm.limits.maxbuckets)
        groups.setdefault(grid, []).append(index)
    for (last, step, buckets), members in groups.items():
        chosen = [series[i] for i in members]
        results = (_macro_bucketize(vm, chosen, bucketizer, last, step, buckets)
                   if bucketizer.macro is not None
                   else _kernel_bucketize(chosen, bucketizer, last, step, buckets))
        for index, result in zip(members, results, strict=True):
            result.lastbucket, result.bucketspan, result.bucketcount = last, step, buckets
            out[index] = result
    vm.stack.append(out)


def _grid(gts: Gts, lastbucket: int, span: int, count: int, maxbuckets: int
          ) -> tuple[int, int, int]:
    ticks = gts.ticks
    first, last = int(ticks.min()), int(ticks.max())
    end = lastbucket or last
    step = span or max(1, (end - first) // count + 1)
    buckets = count or max(0, (end - first) // step + 1)
    if buckets > maxbuckets:
        raise LimitHit(f"BUCKETIZE would make {buckets} buckets, over MAXBUCKETS ({maxbuckets})")
    return end, step, buckets


def _kernel_bucketize(series: list[Gts], fn: Function, last: int, step: int,
                      buckets: int) -> list[Gts]:
    kind, _name = _aggregator(BUCKETIZERS, fn, "bucketizer")
    grid = Buckets(step, last % step, "right", last - (buckets - 1) * step, last)
    found = to_series(series)
    _check_numeric(found, kind, fn)
    result = bucketize(found, grid, kind)
    result = _typed(result, found, kind.name)
    out = from_series(result, series)
    for gts in out:  # Warp 10 lists the newest bucket first
        gtswords.reversed_gts(gts)
    return out


def _aggregator(table: Mapping[str, tuple[int, str]], fn: Function, family: str
                ) -> tuple[Aggregator, str]:
    base = fn.name
    for suffix in NULL_SUFFIXES[1:]:
        base = base.removesuffix(suffix)
    _, name = table[base]
    param: Any = None
    if fn.params:
        param = fn.params[0]
        if name == "join" and len(fn.params) > 0:
            param = str(fn.params[0])
        elif name in ("stddev", "stdvar"):
            param = None
    return Aggregator(name, param), base


def _check_numeric(found: SeriesSet, kind: Aggregator, fn: Function) -> None:
    if found.values.dtype.kind == "O" and kind.name not in ("first", "last", "count", "join"):
        raise Fault(f"{fn.family}.{fn.name} needs numbers; the GTS hold STRING values")


def _typed(result: SeriesSet, source: SeriesSet, aggregator: str) -> SeriesSet:
    """Warp 10's types: sums, extremes and ends of LONGs stay LONGs, counts are LONGs, the
    median of LONGs is a LONG (the middle pair's integer mean)."""
    values = result.values
    keeps_longs = ("sum", "min", "max", "first", "last", "delta")
    if aggregator == "count" or (source.values.dtype.kind == "i" and aggregator in keeps_longs):
        values = values.astype(np.int64)
    elif source.values.dtype.kind == "i" and aggregator == "median":
        values = np.trunc(values).astype(np.int64)
    elif source.values.dtype.kind == "b" and aggregator in ("and", "or", "first", "last"):
        values = values.astype(bool)
    if values is result.values:
        return result
    return SeriesSet(result.names, result.labels, result.timestamps, values, result.offsets)


def _window_list(gts: Gts, index: Array, tick: int) -> list[Any]:
    """What a macro function sees: [tick [names] [labels] [ticks] [lats] [lons] [elevs]
    [values]]."""
    locations = gts.locations
    nan = [math.nan] * len(index)
    return [tick, [gts.name], [dict(gts.labels)], gts.ticks[index].tolist(),
            locations[0][index].tolist() if locations else nan,
            locations[1][index].tolist() if locations else nan,
            locations[2][index].tolist() if locations else nan,
            gts.values[index].tolist()]


def _macro_result(vm: Vm, macro: Macro, window: list[Any], word: str) -> list[Any] | None:
    """The point a macro function leaves: [tick lat lon elev value], or those five values."""
    base = len(vm.stack)
    vm.stack.append(window)
    vm.run(macro)
    left = len(vm.stack) - base
    if left == 5:
        return vm.pops(5)
    result = vm.pop()
    if isinstance(result, list) and len(result) == 5:
        return result
    if isinstance(result, list) and not result:
        return None
    raise Fault(f"{word}: the macro must leave [tick lat lon elev value], got "
                f"{describe(result)}")


def _macro_bucketize(vm: Vm, series: list[Gts], fn: Function, last: int, step: int,
                     buckets: int) -> list[Gts]:
    assert fn.macro is not None
    out = []
    for gts in series:
        ordered = gts.sorted()
        ticks = ordered.ticks
        index = (last - ticks) // step  # 0 is the newest bucket
        result = gts.empty_copy()
        for bucket in range(buckets):
            members = np.flatnonzero(index == bucket)
            if not len(members):
                continue
            tick = last - bucket * step
            point = _macro_result(vm, fn.macro, _window_list(ordered, members, tick),
                                  "MACROBUCKETIZER")
            if point is not None and point[4] is not None:
                result.add(tick, float(point[1]), float(point[2]), float(point[3]), point[4])
        out.append(result)
    return out


# -- MAP ----------------------------------------------------------------------------------------

def _map(vm: Vm) -> None:
    args = vm.pop_list("a LIST of arguments (MAP)")
    # [ gts… mapper pre post occurrences ] or [ gts… mapper pre post occurrences step? ]
    position = next((i for i, a in enumerate(args) if isinstance(a, Function)), None)
    if position is None:
        raise Fault("MAP needs a mapper (like mapper.mean) in its LIST")
    params = len(args) - position
    vm.stack.append(args)
    series, rest = _framework_args(vm, "MAP", params)
    mapper = _family(rest[0], "mapper", "MAP")
    pre, post, occurrences = ([*list(rest[1:4]), 0, 0, 0])[:3]
    for value, what in ((pre, "pre-window"), (post, "post-window"),
                        (occurrences, "occurrences")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise Fault(f"MAP: the {what} must be a LONG, got {describe(value)}")
    out = _mapped(vm, series, mapper, pre, post)
    if occurrences:
        out = [_occurrences(g, occurrences) for g in out]
    vm.stack.append(out)


def _occurrences(gts: Gts, occurrences: int) -> Gts:
    index = np.arange(len(gts))
    return gts.taken(index[:occurrences] if occurrences > 0 else index[occurrences:])


def _mapped(vm: Vm, series: list[Gts], mapper: Function, pre: int, post: int) -> list[Gts]:
    name = mapper.name
    if mapper.macro is not None:
        return [_macro_map(vm, g.sorted(), mapper.macro, pre, post) for g in series]
    if name in VALUE_MAPPERS or name in COMPARE_MAPPERS or name in TIME_MAPPERS:
        if pre or post:
            raise Fault(f"mapper.{name} works point by point: give it a 0 0 window, got "
                        f"{pre} {post}")
        return [_value_map(g.sorted().copy(), mapper) for g in series]
    return _window_map(series, mapper, pre, post)


def _value_map(gts: Gts, mapper: Function) -> Gts:
    values, ticks, name = gts.values, gts.ticks, mapper.name
    if name in COMPARE_MAPPERS:
        (constant,) = mapper.params
        if values.dtype.kind == "b":
            raise Fault(f"mapper.{name} does not apply to BOOLEAN values")
        keep = COMPARE_MAPPERS[name](values, constant)
        return gts.taken(np.flatnonzero(keep))
    if name in TIME_MAPPERS:
        zone = mapper.params[0] if mapper.params else "UTC"
        if zone not in ("UTC", "Z", "GMT"):
            raise Fault(f"mapper.{name}: time zone {zone!r} is not supported; tsq works in UTC")
        result = _time_part(ticks, name)
    else:
        if values.dtype.kind == "O" and name not in ("tostring", "replace", "tick",
                                                      "toboolean", "tolong", "todouble"):
            raise Fault(f"mapper.{name} needs numbers; the GTS holds STRING values")
        with np.errstate(all="ignore"):
            result = VALUE_MAPPERS[name][1](values, ticks, *mapper.params)
        if name in ("abs", "ceil", "floor", "round") and values.dtype.kind == "i":
            result = result.astype(np.int64)
        if name in ("add", "mul") and values.dtype.kind == "i" and all(
                isinstance(p, int) and not isinstance(p, bool) for p in mapper.params):
            result = result.astype(np.int64)
    result = np.asarray(result)
    if name in ("finite", "tolong", "todouble") and result.dtype.kind == "f":
        kept = np.flatnonzero(np.isfinite(result) if name != "todouble" else ~np.isnan(result))
        out = gts.taken(kept)
        result = result[kept]
        out.set_points(out.ticks, result.astype(np.int64) if name == "tolong" else result,
                       out.locations)
        return out
    gts.set_points(ticks, result, gts.locations)
    return gts


def _time_part(ticks: Array, part: str) -> Array:
    moments = (ticks // STU).astype("datetime64[s]")
    if part == "year":
        return moments.astype("datetime64[Y]").astype(np.int64) + 1970
    if part == "month":
        return moments.astype("datetime64[M]").astype(np.int64) % 12 + 1
    if part == "day":
        days: Array = (moments.astype("datetime64[D]") - moments.astype("datetime64[M]")
                       ).astype(np.int64) + 1
        return days
    seconds = ticks // STU
    if part == "second":  # with the fraction: 0.003189 for 3189 µs past the minute
        return (ticks % (60 * STU)) / STU
    if part == "hour":
        return (seconds // 3600) % 24
    if part == "minute":
        return (seconds // 60) % 60
    days = seconds // 86_400  # 1970-01-01 was a Thursday (ISO day 4)
    return (days + 3) % 7 + 1


def _window_map(series: list[Gts], mapper: Function, pre: int, post: int) -> list[Gts]:
    if mapper.name not in WINDOW_MAPPERS:
        raise Fault(f"mapper.{mapper.name} is not a mapper tsq knows")
    if (pre > 0 and post < 0) or (pre < 0 and post > 0):
        raise Fault("MAP: a window counts ticks or spans a duration on both sides; mixing a "
                    f"count and a duration ({pre} {post}) is not supported")
    by_time = pre < 0 or post < 0
    before, after = abs(pre), abs(post)
    found = to_series([g.sorted() for g in series])
    if mapper.name == "rate":
        values = _rate(found, before, after, by_time)
        return from_series(values, series)
    kind, _ = _aggregator(WINDOW_MAPPERS, mapper, "mapper")
    if kind.name in ("stddev", "stdvar") and mapper.params and mapper.params[0] is False:
        raise Fault(f"mapper.{mapper.name} without Bessel's correction (false) is not "
                    f"supported; pass true")
    _check_numeric(found, kind, mapper)
    if kind.name == "count":  # NaN is a value in Warp 10: count the points, not the numbers
        found = SeriesSet(found.names, found.labels, found.timestamps,
                          np.ones(found.points), found.offsets)
    result = _typed(window(found, kind, before, after, by_time=by_time), found, kind.name)
    return from_series(result, series)


def _rate(found: SeriesSet, before: int, after: int, by_time: bool) -> SeriesSet:
    """(last - first) / (last tick - first tick) per second over each window; 0 with one
    point."""
    floats = SeriesSet(found.names, found.labels, found.timestamps,
                       found.values.astype(np.float64), found.offsets)
    ticks = SeriesSet(found.names, found.labels, found.timestamps,
                      found.timestamps.astype(np.float64), found.offsets)
    delta = window(floats, Aggregator("delta"), before, after, by_time=by_time)
    elapsed = window(ticks, Aggregator("delta"), before, after, by_time=by_time)
    with np.errstate(all="ignore"):
        rate = np.where(elapsed.values > 0, delta.values / elapsed.values * STU, 0.0)
    return SeriesSet(delta.names, delta.labels, delta.timestamps, rate, delta.offsets)


def _macro_map(vm: Vm, gts: Gts, macro: Macro, pre: int, post: int) -> Gts:
    ticks, out = gts.ticks, gts.empty_copy()
    count = len(ticks)
    check = vm.loop_clock()
    for i in range(count):
        if pre >= 0:
            low = max(0, i - pre)
        else:
            low = int(np.searchsorted(ticks, ticks[i] + pre, side="left"))
        if post >= 0:
            high = min(count - 1, i + post)
        else:
            high = int(np.searchsorted(ticks, ticks[i] - post, side="right")) - 1
        check()
        point = _macro_result(vm, macro, _window_list(gts, np.arange(low, high + 1),
                                                      int(ticks[i])), "MACROMAPPER")
        if point is not None and point[4] is not None:
            out.add(int(point[0]), float(point[1]), float(point[2]), float(point[3]), point[4])
    return out


# -- REDUCE -------------------------------------------------------------------------------------

def _classes(series: list[Gts], labels: list[str] | None) -> tuple[list[int], int]:
    keys: dict[tuple[tuple[str, str], ...], int] = {}
    members = []
    for gts in series:
        names = sorted(gts.labels) if labels is None else [k for k in labels if k in gts.labels]
        key = tuple((k, gts.labels[k]) for k in names)
        members.append(keys.setdefault(key, len(keys)))
    return members, len(keys)


def _common_labels(series: list[Gts]) -> dict[str, str]:
    if not series:
        return {}
    common = dict(series[0].labels)
    for gts in series[1:]:
        common = {k: v for k, v in common.items() if gts.labels.get(k) == v}
    return common


def _labels_arg(value: Any, word: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise Fault(f"{word}: the labels to partition by are a LIST of STRINGs or NULL, got "
                f"{describe(value)}")


def _reduce(vm: Vm) -> None:
    series, (labels, fn) = _framework_args(vm, "REDUCE", 2)
    partition = _labels_arg(labels, "REDUCE")
    reducer = _family(fn, "reducer", "REDUCE")
    members, classes = _classes(series, partition)
    out = []
    for cls in range(classes):
        chosen = [g for g, c in zip(series, members, strict=True) if c == cls]
        if reducer.macro is not None:
            result = _macro_reduce(vm, chosen, reducer.macro)
        else:
            result = _kernel_reduce(chosen, reducer)
        result.labels = _common_labels(chosen)
        out.append(result)
    vm.stack.append(out)


def _kernel_reduce(chosen: list[Gts], reducer: Function) -> Gts:
    name = reducer.name
    if name in ("argmax", "argmin"):
        return _argreduce(chosen, reducer)
    kind, _ = _aggregator(REDUCERS, reducer, "reducer")
    found = to_series(chosen)
    _check_numeric(found, kind, reducer)
    grouped = _typed(group_by(found, [], kind), found, kind.name)
    ticks, values = grouped.timestamps, grouped.values
    forbid = name.endswith(".forbid-nulls") or name in FORBID_NULLS_BY_DEFAULT
    if forbid or name.endswith(".include-nulls"):
        counts = group_by(found, [], Aggregator("count")).values
        full = counts == len(chosen)
        if forbid:
            ticks, values = ticks[full], values[full]
        elif kind.name == "count":
            values = np.full(len(values), len(chosen), dtype=np.int64)
    result = Gts("")   # REDUCE's results have no class name, as in Warp 10
    result.set_points(ticks.copy(), np.asarray(values).copy())
    return result


def _argreduce(chosen: list[Gts], reducer: Function) -> Gts:
    """reducer.argmax/argmin: at each tick, the values of a label of the GTS holding the
    highest/lowest value (ties: joined by commas)."""
    if not reducer.params or not isinstance(reducer.params[0], str):
        raise Fault(f"reducer.{reducer.name} needs a label name")
    label = reducer.params[0]
    found = to_series(chosen)
    ids = found.series_ids()
    order = np.lexsort((ids, found.timestamps))
    ticks, values, ids = found.timestamps[order], found.values[order].astype(float), ids[order]
    starts = np.flatnonzero(np.concatenate(([True], ticks[1:] != ticks[:-1])))
    extreme = (np.maximum if reducer.name == "argmax" else np.minimum).reduceat(values, starts)
    tick_of = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(ticks))))
    winners = values == extreme[tick_of]
    texts: list[list[str]] = [[] for _ in starts]
    for position in np.flatnonzero(winners).tolist():
        texts[tick_of[position]].append(chosen[ids[position]].labels.get(label, ""))
    result = Gts("")   # REDUCE's results have no class name, as in Warp 10
    result.set_points(ticks[starts].copy(), np.array([",".join(t) for t in texts],
                                                     dtype=object))
    return result


def _macro_reduce(vm: Vm, chosen: list[Gts], macro: Macro) -> Gts:
    found = to_series(chosen)
    out = Gts("")   # REDUCE's results have no class name, as in Warp 10
    check = vm.loop_clock()
    for tick in np.unique(found.timestamps).tolist():
        at = [np.flatnonzero(g.ticks == tick) for g in chosen]
        values = [scalar(g.values[i[-1]]) if len(i) else None for g, i in zip(chosen, at,
                                                                             strict=True)]
        nan = [math.nan] * len(chosen)
        window = [tick, [g.name for g in chosen], [dict(g.labels) for g in chosen],
                  [tick if len(i) else None for i in at], nan, nan, nan, values]
        check()
        point = _macro_result(vm, macro, window, "MACROREDUCER")
        if point is not None and point[4] is not None:
            out.add(int(point[0]), float(point[1]), float(point[2]), float(point[3]), point[4])
    return out


# -- APPLY --------------------------------------------------------------------------------------

def _apply(vm: Vm) -> None:
    args = vm.pop_list("a LIST of arguments (APPLY)")
    if len(args) < 3:
        raise Fault(f"APPLY needs [ [GTS…] [GTS…] … labels op ], got {len(args)} items")
    *operands, labels, fn = args
    partition = _labels_arg(labels, "APPLY")
    op = _family(fn, "op", "APPLY")
    lists: list[list[Gts]] = []
    for given in operands:
        operand = [given] if isinstance(given, Gts) else given
        if not isinstance(operand, list) or not all(isinstance(g, Gts) for g in operand):
            raise Fault(f"APPLY: each operand is a LIST of GTS, got {describe(operand)}")
        lists.append(operand)
    vm.stack.append(_applied(lists, partition, op))


def _key(gts: Gts, labels: list[str] | None) -> tuple[tuple[str, str], ...]:
    names = sorted(gts.labels) if labels is None else [k for k in labels if k in gts.labels]
    return tuple((k, gts.labels[k]) for k in names)


def _applied(lists: list[list[Gts]], labels: list[str] | None, op: Function) -> list[Gts]:
    """Warp 10's partition: every GTS of every list goes to the class of its labels' values;
    a list of one GTS (with other lists beside it) joins every class instead. The op runs
    on each class's members, in list order."""
    shared = len(lists) > 1
    keys: list[tuple[tuple[str, str], ...]] = []
    for items in lists:
        if not (shared and len(items) == 1):
            keys += dict.fromkeys(k for k in (_key(g, labels) for g in items) if k not in keys)
    if not keys:
        keys = [()]
    out = []
    for key in keys:
        members = [g for items in lists for g in items
                   if (shared and len(items) == 1) or _key(g, labels) == key]
        if op.name in BINARY_OPS and len(members) != 2:
            raise Fault(f"op.{op.name} applies to two GTS, and the class {dict(key)} holds "
                        f"{len(members)}")
        result = _apply_class(members, op)
        result.labels = {**_common_labels(members), **dict(key)}
        out.append(result)
    return out


def _apply_class(members: list[Gts], op: Function) -> Gts:
    ordered = [g.sorted() for g in members]
    common = reduce(np.intersect1d, [g.ticks for g in ordered])
    values = [g.values[np.searchsorted(g.ticks, common)] for g in ordered]
    result = Gts(ordered[0].name, _common_labels(members))
    if op.name in ("mask", "negmask"):
        mask = values[0].astype(bool)
        keep = mask if op.name == "mask" else ~mask
        result.set_points(common[keep], values[1][keep])
        return result
    with np.errstate(all="ignore"):
        combined = reduce(OPS[op.name], values)
    if op.name == "div" and all(v.dtype.kind == "i" for v in values):
        combined = np.trunc(combined)
    if op.name in ("add", "sub", "mul") and all(v.dtype.kind == "i" for v in values):
        combined = combined.astype(np.int64)
    result.set_points(common, np.asarray(combined))
    return result


# -- FILTER -------------------------------------------------------------------------------------

def _filter(vm: Vm) -> None:
    series, (labels, fn) = _framework_args(vm, "FILTER", 2)
    partition = _labels_arg(labels, "FILTER")
    chooser = _family(fn, "filter", "FILTER")
    if chooser.macro is not None:
        members, classes = _classes(series, partition)
        kept: list[Gts] = []
        for cls in range(classes):
            vm.stack.append([g for g, c in zip(series, members, strict=True) if c == cls])
            vm.run(chooser.macro)
            chosen = vm.pop()
            if not isinstance(chosen, list):
                raise Fault(f"MACROFILTER: the macro must leave a LIST of GTS, got "
                            f"{describe(chosen)}")
            kept += chosen
        vm.stack.append(kept)
        return
    vm.stack.append([g for g in series if _kept(g, chooser)])


def _matches(pattern: str, text: str | None) -> bool:
    if text is None:
        return False
    if pattern.startswith("~"):
        try:
            return compile_user(pattern[1:]).fullmatch(text) is not None
        except RegexError as error:
            raise Fault(f"bad regular expression {pattern[1:]!r}: {error}") from None
    return text == (pattern[1:] if pattern.startswith("=") else pattern)


def _kept(gts: Gts, chooser: Function) -> bool:
    name = chooser.name
    if name == "byclass":
        return _matches(str(chooser.params[0]), gts.name)
    if name in ("bylabels", "byattr", "bylabelsattr"):
        wanted = chooser.params[0]
        if not isinstance(wanted, dict):
            raise Fault(f"filter.{name} needs a MAP of label patterns")
        source = {"bylabels": gts.labels, "byattr": gts.attributes,
                  "bylabelsattr": {**gts.attributes, **gts.labels}}[name]
        return all(_matches(str(v), source.get(str(k))) for k, v in wanted.items())
    if name.startswith("last."):
        if not len(gts):
            return False
        ordered = gts.sorted()
        last = scalar(ordered.values[-1])
        wanted = chooser.params[0]
        if isinstance(last, str) != isinstance(wanted, str):
            return False
        return bool(FILTER_LAST[name[5:]](last, wanted))
    raise Fault(f"filter.{name} is not a filter tsq knows")


def _words() -> dict[str, Word]:
    words: dict[str, Word] = {}
    for name, (count, _) in BUCKETIZERS.items():
        words[f"bucketizer.{name}"] = _function("bucketizer", name, count)
    for name, (count, _) in REDUCERS.items():
        for suffix in NULL_SUFFIXES:
            words[f"reducer.{name}{suffix}"] = _function("reducer", name + suffix, count)
    for name in ("argmax", "argmin"):  # 'label' maxcount reducer.argmax
        words[f"reducer.{name}"] = _function("reducer", name, 2)
    for name, (count, _) in WINDOW_MAPPERS.items():
        words[f"mapper.{name}"] = _function("mapper", name, count)
    for name, (count, _) in VALUE_MAPPERS.items():
        words[f"mapper.{name}"] = _function("mapper", name, count)
    for name in COMPARE_MAPPERS:
        words[f"mapper.{name}"] = _function("mapper", name, 1)
    for name in TIME_MAPPERS:
        words[f"mapper.{name}"] = _function("mapper", name, 1)
    for name in (*OPS, "mask", "negmask"):
        words[f"op.{name}"] = _function("op", name, 0)
    for name in ("byclass", "bylabels", "byattr", "bylabelsattr"):
        words[f"filter.{name}"] = _function("filter", name, 1)
    for name in FILTER_LAST:
        words[f"filter.last.{name}"] = _function("filter", f"last.{name}", 1)
    for family in ("mapper", "bucketizer", "reducer", "filter"):
        words[f"MACRO{family.upper()}"] = _macro_function(family)
    words.update({"BUCKETIZE": _bucketize, "MAP": _map, "REDUCE": _reduce, "APPLY": _apply,
                  "FILTER": _filter})
    words.update(gtswords.WORDS)
    return words


WORDS: Mapping[str, Word] = _words()
# `is_number` and `datetime` serve the type checks of the words above
_ = (is_number, datetime, UTC)
