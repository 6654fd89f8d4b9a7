"""GTS words: building series, reading them, and transforming them whole (numpy, never a Python
loop per point): NEWGTS, RENAME, RELABEL, ADDVALUE, VALUES, TIMECLIP, SHRINK, FILLPREVIOUS, …

Words that take a GTS also take a LIST of GTS and answer a LIST then, as in Warp 10.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tsq.kernels import Aggregator, Buckets, Fill, bucketize
from tsq.series import SeriesSet

from .faults import Fault, describe, is_number
from .values import Gts, column, scalar

if TYPE_CHECKING:
    from .vm import Vm

__all__ = ["WORDS", "append_gts", "from_series", "gts_binary", "gts_math", "gts_not",
           "reversed_gts", "selector_text", "to_series"]

Array = npt.NDArray[Any]
Word = Callable[["Vm"], None]


# -- GTS ↔ SeriesSet -----------------------------------------------------------------------------

def to_series(series: list[Gts]) -> SeriesSet:
    """The GTS as one SeriesSet (sorted by tick, one point a tick: the last added wins)."""
    if not series:
        return SeriesSet.empty()
    values = [g.values for g in series]
    kinds = {v.dtype.kind for v in values if len(v)}
    if kinds <= {"i"}:
        merged = np.concatenate(values).astype(np.int64) if values else np.empty(0, np.int64)
    elif kinds <= {"b"}:
        merged = np.concatenate(values).astype(bool)
    elif kinds <= {"i", "f", "b"}:
        merged = np.concatenate(values).astype(np.float64)
    else:
        merged = np.concatenate([v.astype(object) for v in values])
    lengths = np.array([len(v) for v in values], np.int64)
    return SeriesSet(tuple(g.name for g in series), tuple(dict(g.labels) for g in series),
                     np.concatenate([g.ticks for g in series]).astype(np.int64), merged,
                     np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)).normalized()


def from_series(found: SeriesSet, like: list[Gts] | None = None) -> list[Gts]:
    """One GTS per series; `like` gives each its attributes and bucketization."""
    out = []
    for index, series in enumerate(found):
        gts = like[index].empty_copy() if like is not None else Gts(series.name)
        gts.name, gts.labels = series.name, dict(series.labels)
        gts.set_points(np.asarray(series.timestamps, np.int64), np.asarray(series.values))
        out.append(gts)
    return out


# -- building -----------------------------------------------------------------------------------

def _newgts(vm: Vm) -> None:
    vm.stack.append(Gts())


def _rename(vm: Vm) -> None:
    name = vm.pop_str("a name (RENAME)")

    def rename(gts: Gts) -> Gts:
        gts.name = gts.name + name[1:] if name.startswith("+") else name
        return gts
    vm.per_gts(rename, "RENAME")


def _relabel_map(changes: dict[Any, Any], current: dict[str, str], word: str) -> dict[str, str]:
    if None in changes:
        current = {}
    out = dict(current)
    for key, value in changes.items():
        if key is None:
            continue
        if not isinstance(key, str):
            raise Fault(f"{word}: label names are STRINGs, got {describe(key)}")
        if value is None or value == "":
            out.pop(key, None)
        elif isinstance(value, str):
            out[key] = value
        else:
            raise Fault(f"{word}: label values are STRINGs, got {describe(value)} for {key!r}")
    return out


def _relabel(vm: Vm) -> None:
    changes = vm.pop_map("a MAP of labels (RELABEL)")

    def relabel(gts: Gts) -> Gts:
        gts.labels = _relabel_map(changes, gts.labels, "RELABEL")
        return gts
    vm.per_gts(relabel, "RELABEL")


def _setattributes(vm: Vm) -> None:
    changes = vm.pop_map("a MAP of attributes (SETATTRIBUTES)")

    def set_attributes(gts: Gts) -> Gts:
        gts.attributes = _relabel_map(changes, gts.attributes, "SETATTRIBUTES")
        return gts
    vm.per_gts(set_attributes, "SETATTRIBUTES")


def _point_args(vm: Vm, word: str) -> tuple[int, float, float, float, Any]:
    value = vm.pop()
    elev, lon, lat = vm.pop(), vm.pop(), vm.pop()
    tick = vm.pop_long(f"a tick (LONG) ({word})")
    if isinstance(value, list | dict | set | Gts) or value is None:
        raise Fault(f"{word}: a value is a LONG, DOUBLE, BOOLEAN or STRING, got "
                    f"{describe(value)}")
    for part, what in ((lat, "latitude"), (lon, "longitude"), (elev, "elevation")):
        if not is_number(part):
            raise Fault(f"{word}: the {what} is a number or NaN, got {describe(part)}")
    return tick, float(lat), float(lon), float(elev), value


def _addvalue(vm: Vm) -> None:
    tick, lat, lon, elev, value = _point_args(vm, "ADDVALUE")
    gts = vm.pop_gts("a GTS (ADDVALUE)")
    if len(gts) >= vm.limits.max_items:
        vm.sized(len(gts) + 1, "a GTS")
    gts.add(tick, lat, lon, elev, value)
    vm.stack.append(gts)


def _setvalue(vm: Vm) -> None:
    tick, lat, lon, elev, value = _point_args(vm, "SETVALUE")
    gts = vm.pop_gts("a GTS (SETVALUE)")
    keep = gts.ticks != tick
    if not keep.all():
        kept = gts.taken(np.flatnonzero(keep))
        gts.set_points(kept.ticks, kept.values, kept.locations)
    gts.add(tick, lat, lon, elev, value)
    vm.stack.append(gts)


# -- reading ------------------------------------------------------------------------------------

def _reader(read: Callable[[Gts], Any], word: str) -> Word:
    def run(vm: Vm) -> None:
        vm.per_gts(read, word)
    return run


def selector_text(name: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(labels.items()))
    return f"{_encode(name)}{{{inner}}}"


def _encode(text: str) -> str:
    return re.sub(r"[%{}=,\s\"']", lambda m: f"%{ord(m.group(0)):02X}", text)


def _values(gts: Gts) -> list[Any]:
    values: list[Any] = gts.values.tolist()
    return values


def _ticks(gts: Gts) -> list[int]:
    return gts.ticks.tolist()  # type: ignore[no-any-return]


def _all_ticks(vm: Vm) -> None:
    """TICKS: a GTS's ticks; of a LIST of GTS, every tick any of them has, sorted."""
    value = vm.pop()
    if isinstance(value, Gts):
        vm.stack.append(_ticks(value))
    elif isinstance(value, list) and all(isinstance(g, Gts) for g in value):
        vm.stack.append(np.unique(np.concatenate([g.ticks for g in value] or
                                                 [np.empty(0, np.int64)])).tolist())
    else:
        raise Fault(f"TICKS needs a GTS or a LIST of GTS, got {describe(value)}")


def _locations(gts: Gts) -> list[Any]:
    locations = gts.locations
    if locations is None:
        return [[math.nan, math.nan] for _ in range(len(gts))]
    return [[lat, lon] for lat, lon in zip(locations[0].tolist(), locations[1].tolist(),
                                           strict=True)]


def _first_tick(gts: Gts) -> int:
    return int(gts.ticks.min()) if len(gts) else -(2**63)


def _last_tick(gts: Gts) -> int:
    return int(gts.ticks.max()) if len(gts) else -(2**63)


def _atindex(vm: Vm) -> None:
    index = vm.pop_long("an index (ATINDEX)")
    gts = vm.pop_gts("a GTS (ATINDEX)")
    index = index + len(gts) if index < 0 else index
    vm.stack.append(gts.point(index) if 0 <= index < len(gts) else None)


def _attick(vm: Vm) -> None:
    tick = vm.pop_long("a tick (ATTICK)")
    gts = vm.pop_gts("a GTS (ATTICK)")
    found = np.flatnonzero(gts.ticks == tick)
    vm.stack.append(gts.point(int(found[-1])) if len(found) else None)


# -- transforming -------------------------------------------------------------------------------

def _transform(apply: Callable[[Vm, Gts], Gts], word: str,
               take: Callable[[Vm], Any] | None = None) -> Word:
    def run(vm: Vm) -> None:
        if take is not None:
            argument = take(vm)
            vm.per_gts(lambda gts: apply_with(vm, gts, argument), word)
        else:
            vm.per_gts(lambda gts: apply(vm, gts), word)

    def apply_with(vm: Vm, gts: Gts, argument: Any) -> Gts:
        vm.attributes["_argument"] = argument
        return apply(vm, gts)
    return run


def _clone(vm: Vm) -> None:
    value = vm.pop()
    if isinstance(value, Gts):
        vm.stack += (value, value.copy())
    elif isinstance(value, list):
        vm.stack += (value, [v.copy() if isinstance(v, Gts) else v for v in value])
    elif isinstance(value, dict):
        vm.stack += (value, dict(value))
    else:
        raise Fault(f"CLONE needs a GTS, a LIST or a MAP, got {describe(value)}")


def _sort(vm: Vm) -> None:
    def sort(gts: Gts) -> Gts:
        ordered = gts.sorted()
        if ordered is not gts:
            gts.set_points(ordered.ticks, ordered.values, ordered.locations)
        return gts
    vm.per_gts(sort, "SORT")


def reversed_gts(gts: Gts) -> Gts:
    taken = gts.taken(np.arange(len(gts))[::-1])
    gts.set_points(taken.ticks, taken.values, taken.locations)
    return gts


def _shrink(vm: Vm) -> None:
    count = vm.pop_long("a size (SHRINK)")

    def shrink(gts: Gts) -> Gts:
        ordered = gts.sorted()
        index = np.arange(len(ordered))
        kept = ordered.taken(index[:count] if count >= 0 else index[count:])
        gts.set_points(kept.ticks, kept.values, kept.locations)
        return gts
    vm.per_gts(shrink, "SHRINK")


def _timeclip(vm: Vm) -> None:
    top = vm.pop()
    below = vm.pop()
    if isinstance(top, str) and isinstance(below, str):
        from .timewords import to_timestamp
        low, high = to_timestamp(below), to_timestamp(top)
    elif is_number(top) and is_number(below):
        high, low = int(below), int(below) - int(top) + 1   # end duration: (end - dur, end]
    else:
        raise Fault(f"TIMECLIP needs an end and a duration (LONGs) or two ISO-8601 STRINGs, "
                    f"got {describe(below)} and {describe(top)}")

    def clip(gts: Gts) -> Gts:
        ticks = gts.ticks
        return gts.taken(np.flatnonzero((ticks >= low) & (ticks <= high)))
    vm.per_gts(clip, "TIMECLIP")


def _timeshift(vm: Vm) -> None:
    delta = vm.pop_long("a shift (TIMESHIFT)")

    def shift(gts: Gts) -> Gts:
        shifted = gts.copy()
        shifted.set_points(shifted.ticks + delta, shifted.values, shifted.locations)
        if shifted.bucketized:
            shifted.lastbucket += delta
        return shifted
    vm.per_gts(shift, "TIMESHIFT")


LONG_BOUND = 2.0**63  # the doubles whose integer part is a LONG lie strictly inside it


def _timescale(vm: Vm) -> None:
    factor = vm.pop_number("a factor (TIMESCALE)")

    def scale(gts: Gts) -> Gts:
        scaled = gts.copy()
        ticks = np.floor(scaled.ticks * float(factor))
        edges = [scaled.lastbucket * factor, scaled.bucketspan * factor] \
            if scaled.bucketized else []
        # a tick scaled beyond a LONG (or by NaN or an infinity) has no time to be
        if not (np.isfinite(ticks).all() and np.all(np.abs(ticks) < LONG_BOUND)) or \
                any(not math.isfinite(edge) or abs(edge) >= LONG_BOUND for edge in edges):
            raise Fault(f"TIMESCALE: scaling {gts.name}'s ticks by {factor} leaves the range of "
                        f"a LONG (±9.2e18); give a factor that keeps them inside")
        scaled.set_points(ticks.astype(np.int64), scaled.values, scaled.locations)
        if scaled.bucketized:
            scaled.lastbucket = int(edges[0])
            scaled.bucketspan = max(1, int(edges[1]))
        return scaled
    vm.per_gts(scale, "TIMESCALE")


def _timemodulo(vm: Vm) -> None:
    label = vm.pop_str("a label name (TIMEMODULO)")
    modulo = vm.pop_long("a modulo (TIMEMODULO)")
    if modulo <= 0:
        raise Fault(f"TIMEMODULO needs a positive modulo, got {modulo}")

    def split(gts: Gts) -> list[Gts]:
        ordered = gts.sorted()
        quotient = ordered.ticks // modulo
        out = []
        for value in np.unique(quotient)[::-1].tolist():
            index = np.flatnonzero(quotient == value)
            part = ordered.taken(index)
            part.set_points(part.ticks % modulo, part.values, part.locations)
            part.labels = {**part.labels, label: str(value)}
            out.append(part)
        return out
    vm.per_gts(split, "TIMEMODULO")


def _timesplit(vm: Vm) -> None:
    label = vm.pop_str("a label name (TIMESPLIT)")
    minimum = vm.pop_long("a minimum number of points (TIMESPLIT)")
    quiet = vm.pop_long("a quiet period (TIMESPLIT)")

    def split(gts: Gts) -> list[Gts]:
        ordered = gts.sorted()
        ticks = ordered.ticks
        if not len(ticks):
            return []
        breaks = np.flatnonzero(np.diff(ticks) >= quiet) + 1
        out = []
        for number, index in enumerate(np.split(np.arange(len(ticks)), breaks), start=1):
            if len(index) >= minimum:
                part = ordered.taken(index)
                part.labels = {**part.labels, label: str(number)}
                out.append(part)
        return out
    vm.per_gts(split, "TIMESPLIT")


def _nonempty(vm: Vm) -> None:
    items = vm.pop_list("a LIST of GTS (NONEMPTY)")
    vm.stack.append([g for g in items if isinstance(g, Gts) and len(g)])


def _merge(vm: Vm) -> None:
    items = vm.pop_list("a LIST of GTS (MERGE)")
    if not items or not all(isinstance(g, Gts) for g in items):
        raise Fault("MERGE needs a non-empty LIST of GTS")
    merged = items[0].copy()
    for other in items[1:]:
        append_gts(merged, other)
    vm.stack.append(merged)


def append_gts(target: Gts, other: Gts) -> None:
    both = [target, other]
    locations = [g.locations for g in both]
    joined = None
    if any(loc is not None for loc in locations):
        joined = tuple(np.concatenate([loc[i] if loc is not None else np.full(len(g), np.nan)
                                       for g, loc in zip(both, locations, strict=True)])
                       for i in range(3))
    target.set_points(np.concatenate([g.ticks for g in both]),
                      np.concatenate([g.values for g in both]), joined)  # type: ignore[arg-type]


def _resets(vm: Vm) -> None:
    decreasing = vm.pop_bool("a BOOLEAN: the counter decreases (RESETS)")

    def resets(gts: Gts) -> Gts:
        ordered = gts.sorted().copy()
        values = ordered.values.astype(np.float64)
        if decreasing:
            values = -values
        jumps = np.concatenate(([0.0], np.where(np.diff(values) < 0, values[:-1], 0.0)))
        fixed = values + np.cumsum(jumps)
        fixed = -fixed if decreasing else fixed
        if ordered.values.dtype.kind == "i":
            fixed = fixed.astype(np.int64)
        ordered.set_points(ordered.ticks, fixed, ordered.locations)
        return ordered
    vm.per_gts(resets, "RESETS")


def _valuehistogram(vm: Vm) -> None:
    def histogram(gts: Gts) -> dict[Any, int]:
        values, counts = np.unique(gts.values, return_counts=True)
        return {scalar(v): int(c) for v, c in zip(values, counts, strict=True)}
    vm.per_gts(histogram, "VALUEHISTOGRAM")


def _unbucketize(vm: Vm) -> None:
    def unbucketize(gts: Gts) -> Gts:
        gts.lastbucket = gts.bucketspan = gts.bucketcount = 0
        return gts
    vm.per_gts(unbucketize, "UNBUCKETIZE")


def _fill(policy: str, word: str) -> Word:
    """Fills of bucketized GTS, on the shared bucket kernel's (series by bucket) grid."""
    def run(vm: Vm) -> None:
        value: Any = None
        if policy == "value":
            parts = vm.pop_list("[lat lon elev value] (FILLVALUE)")
            value = parts[-1] if parts else None
        vm.per_gts(lambda gts: filled(gts, value), word)

    def filled(gts: Gts, value: Any) -> Gts:
        if not gts.bucketized:
            raise Fault(f"{word} needs a bucketized GTS: BUCKETIZE it first")
        if not len(gts) and policy != "value":
            return gts.copy()
        span = gts.bucketspan
        first = gts.lastbucket - (gts.bucketcount - 1) * span
        fill = Fill(policy, float(value) if is_number(value) else math.nan)
        grid = Buckets(span, gts.lastbucket % span, "right", first, gts.lastbucket)
        values = gts.values
        numeric = values.dtype.kind in "if"
        series = to_series([gts]) if numeric else None
        if series is None:
            raise Fault(f"{word} fills numeric GTS only, this one holds "
                        f"{(values.dtype.kind == 'b' and 'BOOLEAN') or 'STRING'} values")
        result = bucketize(series, grid, Aggregator("last"), [fill])
        out = gts.empty_copy()
        ticks, new_values = result.timestamps[::-1], result.values[::-1]
        if values.dtype.kind == "i" and (policy != "interpolate" and not
                                         (policy == "value" and isinstance(value, float))):
            new_values = new_values.astype(np.int64)
        out.set_points(ticks.copy(), new_values.copy())
        return out
    return run


# -- GTS in arithmetic (Warp 10 2.1+) -----------------------------------------------------------

def gts_binary(word: str, a: Any, b: Any) -> Gts:
    from .vm import ARRAY_ARITHMETIC, ARRAY_COMPARISONS
    table = {**ARRAY_ARITHMETIC, **ARRAY_COMPARISONS}
    op = table[word]
    if isinstance(a, Gts) and isinstance(b, Gts):
        left, right = a.sorted(), b.sorted()
        common, ia, ib = np.intersect1d(left.ticks, right.ticks, return_indices=True)
        out = left.taken(ia)
        with np.errstate(all="ignore"):
            out.set_points(common, op(left.values[ia], right.values[ib]))
        return out
    gts, constant = (a, b) if isinstance(a, Gts) else (b, a)
    if not (is_number(constant) or (isinstance(constant, str) and word == "+")):
        raise Fault(f"{word} between a GTS and {describe(constant)} is not supported")
    out = gts.copy()
    with np.errstate(all="ignore"):
        values = op(gts.values, constant) if gts is a else op(constant, gts.values)
    if word == "/" and gts.values.dtype.kind == "i" and isinstance(constant, int):
        values = np.trunc(values).astype(np.int64)
    out.set_points(out.ticks, np.asarray(values), out.locations)
    return out


def gts_math(word: str, gts: Gts) -> Gts:
    functions: dict[str, Callable[[Array], Array]] = {
        "ABS": np.abs, "SQRT": np.sqrt, "EXP": np.exp, "LOG": np.log, "LOG10": np.log10,
        "FLOOR": np.floor, "CEIL": np.ceil, "ROUND": lambda v: np.floor(v + 0.5)}
    if word not in functions:
        raise Fault(f"{word} does not take a GTS")
    out = gts.copy()
    with np.errstate(all="ignore"):
        values = functions[word](gts.values)
    if gts.values.dtype.kind == "i" and word in ("ABS", "FLOOR", "CEIL", "ROUND"):
        values = values.astype(np.int64)
    out.set_points(out.ticks, values, out.locations)
    return out


def gts_not(gts: Gts) -> Gts:
    if gts.values.dtype.kind != "b":
        raise Fault("NOT on a GTS needs BOOLEAN values")
    out = gts.copy()
    out.set_points(out.ticks, ~gts.values, out.locations)
    return out


def _bucket_reader(field: str, word: str) -> Word:
    def run(vm: Vm) -> None:
        vm.per_gts(lambda gts: getattr(gts, field), word)
    return run


def _tolist_column(vm: Vm) -> None:
    vm.stack.append(column(vm.pop_list()))


WORDS: Mapping[str, Word] = {
    "NEWGTS": _newgts, "RENAME": _rename, "RELABEL": _relabel,
    "SETATTRIBUTES": _setattributes, "ADDVALUE": _addvalue, "SETVALUE": _setvalue,
    "NAME": _reader(lambda g: g.name, "NAME"), "LABELS": _reader(lambda g: dict(g.labels),
                                                                 "LABELS"),
    "ATTRIBUTES": _reader(lambda g: dict(g.attributes), "ATTRIBUTES"),
    "TOSELECTOR": _reader(lambda g: selector_text(g.name, g.labels), "TOSELECTOR"),
    "VALUES": _reader(_values, "VALUES"), "TICKS": _all_ticks,
    "TICKLIST": _reader(_ticks, "TICKLIST"), "LOCATIONS": _reader(_locations, "LOCATIONS"),
    "FIRSTTICK": _reader(_first_tick, "FIRSTTICK"), "LASTTICK": _reader(_last_tick, "LASTTICK"),
    "ATINDEX": _atindex, "ATTICK": _attick,
    "LASTBUCKET": _bucket_reader("lastbucket", "LASTBUCKET"),
    "BUCKETSPAN": _bucket_reader("bucketspan", "BUCKETSPAN"),
    "BUCKETCOUNT": _bucket_reader("bucketcount", "BUCKETCOUNT"),
    "CLONE": _clone, "CLONEEMPTY": _reader(lambda g: g.empty_copy(), "CLONEEMPTY"),
    "SORT": _sort, "SHRINK": _shrink, "TIMECLIP": _timeclip, "TIMESHIFT": _timeshift,
    "TIMESCALE": _timescale, "TIMEMODULO": _timemodulo, "TIMESPLIT": _timesplit,
    "NONEMPTY": _nonempty, "MERGE": _merge, "RESETS": _resets,
    "VALUEHISTOGRAM": _valuehistogram, "UNBUCKETIZE": _unbucketize,
    "INTERPOLATE": _fill("interpolate", "INTERPOLATE"),
    "FILLPREVIOUS": _fill("previous", "FILLPREVIOUS"), "FILLNEXT": _fill("next", "FILLNEXT"),
    "FILLVALUE": _fill("value", "FILLVALUE"),
}
