"""The host-call contract: what a handler may ask of the service, as the worker and the service
both understand it.

A handler asks through its runtime (JavaScript's `db.select`, `tsl()`, `ws()`, `artifacts.*`,
`Loop.run`; TSL's reads and writes). Some calls are answered in the worker itself (`tsl()`,
`ws()` and the artifact files, made from what the handler holds); the rest cross the pipe to
the service, which holds the store, the artifacts and the run records: a worker process cannot
open the store (DuckDB lets one process write a file). `OPS` is the one table of them:

| op | side | what the service does (tsq.hostrouter) |
|---|---|---|
| `db.select` / `db.write` / `db.delete` | service | JavaScript's `db`, on the loop's connector |
| `series.select` / `.write` / `.replace` / `.describe` / `.delete` | service | TSL's, ns exact |
| `artifact.put` | service | keep a file with the run |
| `loop.run` | service | run another loop as a step of the pipeline |
| `tsl` / `ws` / `artifacts.put` / `.csv` / `.chart` | worker | (made in the worker) |

A service op's row says how its message is read (`decode`: the JSON arguments and the arrays →
the call) and how its result is answered (`encode`: the call and the result → `HostAnswer`).
Times cross as epoch milliseconds for JavaScript (what its numbers hold exactly) and as
nanoseconds for TSL; bulk numbers as arrays, never JSON.

A call that fails rejects the handler's promise with a kind (the JavaScript error type) and a
message: `rejection` maps any error to them, `HostError` carries them back as one TsqError.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from tsq.errors import BadRequest, HostError, TslError, TsqError
from tsq.kernels import Aggregator, Buckets, Fill, Grouping
from tsq.lineprotocol import ParsedBatch, parse_lines
from tsq.selector import Matcher, Selector, parse_selector
from tsq.series import NS_PER_MS, SeriesSet

__all__ = ["OPS", "Host", "HostAnswer", "HostOp", "KeptFile", "LoopCall", "Read", "Rejection",
           "Replace", "Sampling", "Side", "handler_arguments", "js_series", "numbers_only",
           "rejection", "sampling_message", "selector_message", "series_from_message",
           "series_message", "unavailable"]


@dataclass(frozen=True)
class HostAnswer:
    """What the service answers a host call: JSON-ready `meta` and, for bulk numbers, arrays."""

    meta: dict[str, Any]
    arrays: tuple[Any, ...] = ()


Host = Callable[[str, dict[str, Any], list[Any]], HostAnswer]  # (op, args, arrays) → answer


class Side(StrEnum):
    WORKER = "worker"  # answered by the runtime, from what the handler holds
    SERVICE = "service"  # crosses the pipe: the store, the artifacts, the pipeline


# -- the calls, decoded ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """Buckets to make in the service, so only they cross to the worker (TSL's sampleBy)."""

    grid: Buckets
    aggregator: Aggregator
    fills: tuple[Fill, ...]
    group: Grouping | None = None  # then grouped too (TSL's groupBy right after sampleBy)


@dataclass(frozen=True)
class Read:
    """A read, delete or listing of the series `selector` matches over [start, end) in ns."""

    selector: Selector
    start: int | None = None
    end: int | None = None
    asked: str = ""  # the selector as the handler wrote it, for its messages
    sample: Sampling | None = None


@dataclass(frozen=True)
class Replace:
    """Delete [start, end) of every series name written, then write (a rollup's window)."""

    series: SeriesSet
    start: int
    end: int


@dataclass(frozen=True)
class KeptFile:
    """A file the run produced, to keep with it (name and type checked by the store)."""

    name: Any
    content_type: Any
    data: bytes


@dataclass(frozen=True)
class LoopCall:
    loop: str
    params: dict[str, Any]


Decoder = Callable[[dict[str, Any], list[Any]], Any]  # (args, arrays) → the call
Encoder = Callable[[Any, Any], HostAnswer]  # (the call, the result) → the answer


def _as_given(args: dict[str, Any], _arrays: list[Any]) -> dict[str, Any]:
    return args


def _meta(_call: Any, result: dict[str, Any]) -> HostAnswer:
    return HostAnswer(result)


@dataclass(frozen=True)
class HostOp:
    side: Side
    decode: Decoder = _as_given  # worker ops are read by the runtime that serves them
    encode: Encoder = _meta


# -- decoders -------------------------------------------------------------------------------


def _js_range(args: dict[str, Any], _arrays: list[Any]) -> Read:
    """db.select / db.delete: a selector as written, times in epoch ms."""
    given = args.get("range") or {}
    start, end = given.get("start"), given.get("end")
    text = str(args["selector"])
    return Read(parse_selector(text), None if start is None else round(start * NS_PER_MS),
                None if end is None else round(end * NS_PER_MS), asked=text)


def _js_write(args: dict[str, Any], arrays: list[Any]) -> ParsedBatch | SeriesSet:
    """db.write: line protocol, or series whose times (ms) and values came as two arrays."""
    if "lines" in args:
        return parse_lines(str(args["lines"]))
    times, values = arrays
    stamps = np.round(times * NS_PER_MS).astype(np.int64)
    counts = [int(s["count"]) for s in args["series"]]
    bounds = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return SeriesSet.from_series(
        (str(s["name"]), {str(k): str(v) for k, v in dict(s["labels"]).items()},
         stamps[bounds[i]:bounds[i + 1]], values[bounds[i]:bounds[i + 1]])
        for i, s in enumerate(args["series"]))


def _selector(args: dict[str, Any]) -> Selector:
    matchers = tuple(Matcher.of(str(label), str(op), str(value))
                     for label, op, value in args.get("matchers", []))
    return Selector(args.get("name"), matchers)


def _series_read(args: dict[str, Any], _arrays: list[Any]) -> Read:
    sample = sampling_from_message(args["sample"]) if "sample" in args else None
    return Read(_selector(args), args.get("start"), args.get("end"), sample=sample)


def _series(args: dict[str, Any], arrays: list[Any]) -> SeriesSet:
    return series_from_message(args, arrays)


def _replace(args: dict[str, Any], arrays: list[Any]) -> Replace:
    return Replace(series_from_message(args, arrays), int(args["start"]), int(args["end"]))


def _kept_file(args: dict[str, Any], arrays: list[Any]) -> KeptFile:
    return KeptFile(args.get("name"), args.get("contentType"), bytes(arrays[0]))


def _loop_call(args: dict[str, Any], _arrays: list[Any]) -> LoopCall:
    name, params = args.get("loop"), args.get("params") or {}
    if not isinstance(name, str) or not name:
        raise HostError("TypeError", "Loop.run needs a loop name, like Loop.run(\"rollup\", "
                                     "{dc: \"gra\"})")
    if not isinstance(params, dict):
        raise HostError("TypeError", f"Loop.run({name!r}, params): params must be an object")
    return LoopCall(name, params)


# -- encoders -------------------------------------------------------------------------------


def _js_selected(call: Read, found: SeriesSet) -> HostAnswer:
    return js_series(found, f"db.select returns numbers; {call.asked}")


def _written(_call: Any, count: int) -> HostAnswer:
    return HostAnswer({"written": count})


def _deleted(_call: Any, count: int) -> HostAnswer:
    return HostAnswer({"deleted": count})


def _series_selected(_call: Read, found: SeriesSet) -> HostAnswer:
    return HostAnswer(*series_message(found))


def _described(_call: Read, found: list[tuple[str, dict[str, str]]]) -> HostAnswer:
    return HostAnswer({"series": [[name, labels] for name, labels in found]})


OPS: Mapping[str, HostOp] = {
    "db.select": HostOp(Side.SERVICE, _js_range, _js_selected),
    "db.write": HostOp(Side.SERVICE, _js_write, _written),
    "db.delete": HostOp(Side.SERVICE, _js_range, _deleted),
    "series.select": HostOp(Side.SERVICE, _series_read, _series_selected),
    "series.write": HostOp(Side.SERVICE, _series, _written),
    "series.replace": HostOp(Side.SERVICE, _replace),
    "series.describe": HostOp(Side.SERVICE, _series_read, _described),
    "series.delete": HostOp(Side.SERVICE, _series_read, _deleted),
    "artifact.put": HostOp(Side.SERVICE, _kept_file),
    "loop.run": HostOp(Side.SERVICE, _loop_call),
    "tsl": HostOp(Side.WORKER),
    "ws": HostOp(Side.WORKER),
    "artifacts.put": HostOp(Side.WORKER),
    "artifacts.csv": HostOp(Side.WORKER),
    "artifacts.chart": HostOp(Side.WORKER),
}


# -- errors ---------------------------------------------------------------------------------

Rejection = tuple[str, str]  # (kind, message): what a handler's promise rejects with

# The message a TsqError rejects with where it is not its plain message.
_REJECTION_MESSAGES: Mapping[type[TsqError], Callable[[Any], str]] = {
    TslError: lambda error: error.with_place,  # the query line with a caret under the place
}


def rejection(error: BaseException, op: str) -> Rejection:
    """How `error`, raised serving `op`, reaches the handler: a HostError as it says, another
    TsqError under its class name (BadRequest, PayloadTooLarge, …), anything else as tsq's own
    fault (InternalError)."""
    if isinstance(error, HostError):
        return error.kind, error.message
    if isinstance(error, TsqError):
        message = next((show(error) for cls, show in _REJECTION_MESSAGES.items()
                        if isinstance(error, cls)), error.message)
        return error.type, message
    return "InternalError", f"tsq could not serve {op}: {error}"


def unavailable(op: str) -> HostError:
    """A host call where nothing serves them (a program run outside the service)."""
    return HostError("Unavailable", f"{op} is not available here")


@contextmanager
def handler_arguments() -> Iterator[None]:
    """Checks of what a handler passed (an artifact's name, a chart's options): a BadRequest
    there is the handler's TypeError, as JavaScript reports bad arguments."""
    try:
        yield
    except BadRequest as error:
        raise HostError("TypeError", error.message) from None


# -- messages -------------------------------------------------------------------------------


def numbers_only(found: SeriesSet, asked: str) -> SeriesSet:
    """`found` with float values, or HostError naming the series that hold text."""
    if found.values.dtype.kind in "fiub":
        return found
    try:   # text series with no points in the range leave an object column of numbers
        values = found.values.astype(np.float64)
    except (TypeError, ValueError):
        text = sorted({f"{s.name}{{{','.join(f'{k}={v}' for k, v in s.labels.items())}}}"
                       for s in found if any(isinstance(v, str) for v in s.values)})
        raise HostError("TypeError", f"{asked} needs numbers, and the selection has series "
                                     f"holding text: {', '.join(text)}") from None
    return dataclasses.replace(found, values=values)


def js_series(found: SeriesSet, asked: str) -> HostAnswer:
    """A series set as JavaScript receives it (db.select, tsl()): counts in the JSON, times in
    epoch milliseconds and values as float64 arrays. `asked` leads the error for strings."""
    found = numbers_only(found, asked)
    meta = [{"name": s.name, "labels": dict(s.labels), "count": len(s.timestamps)}
            for s in found]
    times = found.timestamps.astype(np.float64) / NS_PER_MS
    return HostAnswer({"series": meta}, (times, found.values.astype(np.float64)))


def series_message(series: SeriesSet) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """A SeriesSet as a host message: names and labels as JSON, the columns as arrays."""
    meta = [{"name": s.name, "labels": dict(s.labels)} for s in series]
    return {"series": meta}, (series.timestamps, series.values, series.offsets)


def series_from_message(args: dict[str, Any], arrays: list[Any]) -> SeriesSet:
    timestamps, values, offsets = arrays
    meta = args["series"]
    return SeriesSet(tuple(str(s["name"]) for s in meta),
                     tuple({str(k): str(v) for k, v in s["labels"].items()} for s in meta),
                     np.asarray(timestamps, np.int64), np.asarray(values),
                     np.asarray(offsets, np.int64)).normalized()


def selector_message(selector: Selector) -> dict[str, Any]:
    return {"name": selector.name,
            "matchers": [[m.label, m.op, m.value] for m in selector.matchers]}


def sampling_message(grid: Buckets, aggregator: Aggregator, fills: Sequence[Fill],
                     group: Grouping | None = None) -> dict[str, Any]:
    grouped = {} if group is None else {"group": {
        "labels": None if group.labels is None else list(group.labels),
        "aggregator": [group.aggregator.name, group.aggregator.param],
        "without": group.without}}
    return {**grouped, "span": grid.span, "anchor": grid.anchor, "closed": grid.closed,
            "label": grid.label, "first": grid.first, "last": grid.last,
            "aggregator": [aggregator.name, aggregator.param],
            "fills": [[fill.policy, None if np.isnan(fill.value) else fill.value]
                      for fill in fills]}


def sampling_from_message(given: dict[str, Any]) -> Sampling:
    grid = Buckets(int(given["span"]), int(given["anchor"]), given["closed"],
                   given.get("first"), given.get("last"), given["label"])
    name, param = given["aggregator"]
    fills = tuple(Fill(str(policy), np.nan if value is None else float(value))
                  for policy, value in given["fills"])
    group = None
    if given.get("group") is not None:
        labels, (by, by_param) = given["group"]["labels"], given["group"]["aggregator"]
        group = Grouping(None if labels is None else tuple(str(label) for label in labels),
                         Aggregator(str(by), by_param), bool(given["group"]["without"]))
    return Sampling(grid, Aggregator(str(name), param), fills, group)
