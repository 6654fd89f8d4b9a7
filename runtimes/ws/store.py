"""Data words: FETCH, FIND, UPDATE, META and DELETE on the script's connector.

The connector is any tsq connector (`select`, `describe`, `write`, `delete`): the embedded store
for `tsq.ws.execute`, the loop's connector through host calls in a run. Its times are epoch
nanoseconds and its ranges `[start, end)`; WarpScript's are microseconds, and FETCH's
`end timespan` form reads `(end - timespan, end]`, so the bounds are converted here.

Tokens are accepted as they are: tsq has no per-token access control yet, so the read and write
tokens a script passes are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from tsq.errors import BadRequest, HostError
from tsq.selector import NAME_LABEL, Matcher, Selector

from .faults import Fault, describe, is_number
from .gtswords import selector_text, to_series
from .timewords import to_timestamp
from .values import Gts

if TYPE_CHECKING:
    from .vm import Vm

__all__ = ["WORDS", "parse_selector", "selector"]

NS_PER_TICK = 1_000
_SELECTOR = re.compile(r"(?P<cls>[^{]*)\{(?P<labels>.*)\}")


def _connector(vm: Vm, word: str) -> Any:
    if vm.connector is None:
        raise Fault(f"{word} needs a store, and this script runs without one (pass a "
                    f"connector to tsq.ws.execute, or run it in a loop or on the server)")
    return vm.connector


def _matcher(label: str, pattern: str) -> Matcher:
    try:
        if pattern.startswith("~"):
            return Matcher.of(label, "=~", pattern[1:])
        return Matcher.of(label, "=", pattern[1:] if pattern.startswith("=") else pattern)
    except BadRequest as error:
        raise Fault(error.message) from None


def selector(cls: str, labels: Mapping[Any, Any]) -> Selector:
    """Warp 10's class and label patterns (`=exact`, `~regex`, bare = exact) as a Selector."""
    matchers = []
    name: str | None = None
    if cls.startswith("~"):
        matchers.append(_matcher(NAME_LABEL, cls))
    else:
        name = cls[1:] if cls.startswith("=") else cls
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise Fault(f"label selectors are STRING to STRING, got {describe(key)} → "
                        f"{describe(value)}")
        matchers.append(_matcher(key, value))
    return Selector(name, tuple(matchers))


def parse_selector(text: str) -> tuple[str, dict[str, str]]:
    """`class{label=value,label~regex}` → the class pattern and the label patterns."""
    found = _SELECTOR.fullmatch(text.strip())
    if not found:
        raise Fault(f"bad selector {text!r}; write class{{label=value,label~regex}}, e.g. "
                    f"'~cpu.*{{dc=gra}}'")
    labels: dict[str, str] = {}
    for part in filter(None, found.group("labels").split(",")):
        matched = re.fullmatch(r"([^=~]+)([=~])(.*)", part.strip())
        if not matched:
            raise Fault(f"bad label selector {part!r} in {text!r}; write label=value or "
                        f"label~regex")
        key, op, value = matched.groups()
        labels[key] = ("~" + value) if op == "~" else "=" + value
    return found.group("cls"), labels


def _fetch_params(vm: Vm, word: str) -> dict[str, Any]:
    given = vm.pop()
    if isinstance(given, dict):
        return {str(k): v for k, v in given.items()}
    if not isinstance(given, list) or len(given) not in (3, 5):
        raise Fault(f"{word} needs [ token class {{labels}} end timespan ] or a MAP, got "
                    f"{describe(given)}")
    params: dict[str, Any] = {"token": given[0], "class": given[1], "labels": given[2]}
    if len(given) == 5:
        first, second = given[3], given[4]
        if isinstance(first, str) and isinstance(second, str):
            params.update(start=first, end=second)
        else:
            params.update(end=first, timespan=second)
    return params


def _selected(params: Mapping[str, Any], word: str) -> Selector:
    cls, labels = params.get("class"), params.get("labels") or {}
    if "selector" in params:
        cls, labels = parse_selector(str(params["selector"]))
    if not isinstance(cls, str) or not isinstance(labels, dict):
        raise Fault(f"{word} needs a class (STRING) and labels (MAP), got {describe(cls)} and "
                    f"{describe(labels)}")
    return selector(cls, labels)


def _tick(value: Any, what: str) -> int:
    if isinstance(value, str):
        return to_timestamp(value)
    if is_number(value):
        return int(value)
    raise Fault(f"FETCH: {what} is a timestamp or an ISO-8601 STRING, got {describe(value)}")


def _fetch(vm: Vm) -> None:
    params = _fetch_params(vm, "FETCH")
    chosen = _selected(params, "FETCH")
    connector = _connector(vm, "FETCH")
    end = _tick(params["end"], "end") if "end" in params else None
    count: int | None = None
    if "start" in params:   # [start, end)
        if end is None:
            raise Fault("FETCH with a start needs an end")
        start_ns, end_ns = _tick(params["start"], "start") * NS_PER_TICK, end * NS_PER_TICK
    elif "timespan" in params or "count" in params:
        end = vm_now(vm) if end is None else end
        span: Any = params.get("timespan")
        if "count" in params or (is_number(span) and span < 0):
            count = int(params["count"]) if "count" in params else -int(span)
            start_ns = None
        elif is_number(span):
            start_ns = (end - int(span)) * NS_PER_TICK + 1   # (end - span, end]
        else:
            raise Fault(f"FETCH: timespan is a LONG, got {describe(span)}")
        end_ns = end * NS_PER_TICK + 1
    else:
        raise Fault("FETCH needs a time range: end and timespan, or start and end")
    vm.stack.append(_read(vm, connector, chosen, start_ns, end_ns, count))


def vm_now(vm: Vm) -> int:
    from .timewords import STU
    if vm.now_us is not None:
        return vm.now_us
    import time
    return int(time.time() * STU)


def _read(vm: Vm, connector: Any, chosen: Selector, start: int | None, end: int | None,
          count: int | None) -> list[Gts]:
    try:
        found = connector.select(chosen, start, end)
    except (BadRequest, HostError) as error:
        raise Fault(f"FETCH {chosen}: {error.message}") from None
    vm.sized(found.points, "FETCH's answer")
    out = []
    for series in found:
        gts = Gts(series.name, dict(series.labels))
        ticks = np.asarray(series.timestamps, np.int64) // NS_PER_TICK
        values = np.asarray(series.values)
        if count is not None:
            ticks, values = ticks[-count:] if count else ticks[:0], \
                values[-count:] if count else values[:0]
        gts.set_points(ticks, values)
        out.append(gts)
    return out


def _find(vm: Vm) -> None:
    params = _fetch_params(vm, "FIND")
    chosen = _selected(params, "FIND")
    connector = _connector(vm, "FIND")
    try:
        found = connector.describe(chosen)
    except (BadRequest, HostError) as error:
        raise Fault(f"FIND {chosen}: {error.message}") from None
    vm.stack.append([Gts(name, labels) for name, labels in found])


def _update(vm: Vm) -> None:
    vm.pop()   # the write token, accepted as it is
    value = vm.pop()
    series = [value] if isinstance(value, Gts) else value
    if not isinstance(series, list) or not all(isinstance(g, Gts) for g in series):
        raise Fault(f"UPDATE needs a GTS or a LIST of GTS, got {describe(value)}")
    for gts in series:
        if not gts.name:
            raise Fault("UPDATE: a GTS without a name cannot be stored; RENAME it first (this "
                        "guards against pushing fetched data back by mistake)")
        if gts.values.dtype.kind == "O":
            raise Fault(f"UPDATE: {selector_text(gts.name, gts.labels)} holds STRING values; "
                        f"the store keeps numbers")
    connector = _connector(vm, "UPDATE")
    found = to_series([g for g in series if len(g)])
    stored = type(found)(found.names, found.labels, found.timestamps * NS_PER_TICK,
                         found.values.astype(np.float64), found.offsets)
    try:
        connector.write(stored)
    except (BadRequest, HostError) as error:
        raise Fault(f"UPDATE: {error.message}") from None


def _meta(vm: Vm) -> None:
    vm.pop()
    value = vm.pop()
    if not isinstance(value, list | Gts):
        raise Fault(f"META needs a GTS or a LIST of GTS, got {describe(value)}")
    raise Fault("META: the store keeps no attributes; set them with SETATTRIBUTES on the "
                "GTS a script returns")


def _delete(vm: Vm) -> None:
    count, end, start = vm.pop(), vm.pop(), vm.pop()
    text = vm.pop_str("a selector class{labels} (DELETE)")
    vm.pop()   # the write token, accepted as it is
    cls, labels = parse_selector(text)
    chosen = selector(cls, labels)
    connector = _connector(vm, "DELETE")
    matched = connector.describe(chosen)
    if count is None:   # a dry run: the series it would delete
        vm.stack.append([Gts(name, dict(lab)) for name, lab in matched])
        return
    if not is_number(count):
        raise Fault(f"DELETE: the expected count is a LONG or NULL, got {describe(count)}")
    if len(matched) > int(count):
        raise Fault(f"DELETE {text}: {len(matched)} series match, more than the {count} "
                    f"expected; nothing was deleted")
    if (start is None) != (end is None):
        raise Fault("DELETE: give both start and end, or NULL NULL to delete whole series")
    low = None if start is None else _tick(start, "start") * NS_PER_TICK
    high = None if end is None else _tick(end, "end") * NS_PER_TICK + 1   # [start, end]
    try:
        connector.delete(chosen, low, high)
    except (BadRequest, HostError) as error:
        raise Fault(f"DELETE {text}: {error.message}") from None
    vm.stack.append(len(matched))


def _parseselector(vm: Vm) -> None:
    cls, labels = parse_selector(vm.pop_str("a selector (PARSESELECTOR)"))
    vm.stack += (cls, {k: v[1:] if v.startswith("=") else v for k, v in labels.items()})


WORDS: Mapping[str, Callable[[Vm], None]] = {
    "FETCH": _fetch, "FIND": _find, "UPDATE": _update, "META": _meta, "DELETE": _delete,
    "PARSESELECTOR": _parseselector,
}
