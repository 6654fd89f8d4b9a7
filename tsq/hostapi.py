"""The service side of a handler's `db.select`, `db.write` and `db.delete`.

A worker process cannot open the store (DuckDB lets one process write a file), so its calls come
to the supervisor, which answers them here. Times cross as epoch milliseconds (what JavaScript
numbers hold exactly); bulk numbers as float64 arrays, never JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tsq.connectors.base import Connector, Matcher, Selector, parse_selector
from tsq.kernels import Aggregator, Buckets, Fill, bucketize
from tsq.lineprotocol import parse_lines
from tsq.runtimes.base import HostAnswer, HostError
from tsq.series import NS_PER_MS, SeriesSet

__all__ = ["StoreHost", "js_series", "sampling_from_message", "sampling_message",
           "selector_message", "series_from_message", "series_message"]


class StoreHost:
    def __init__(self, store: Callable[[], Connector]) -> None:
        self._store = store

    def __call__(self, op: str, args: dict[str, Any], arrays: list[Any]) -> HostAnswer:
        method = {"select": self.select, "write": self.write, "delete": self.delete,
                  "series.select": self.series_select, "series.write": self.series_write,
                  "series.delete": self.series_delete,
                  "series.describe": self.series_describe,
                  "series.replace": self.series_replace}.get(op)
        if method is None:
            raise HostError("TypeError", f"db.{op} does not exist; db has select, write, delete")
        return method(args, arrays)

    def select(self, args: dict[str, Any], _arrays: list[Any]) -> HostAnswer:
        start, end = _range(args)
        found = self._store().select(parse_selector(str(args["selector"])), start, end)
        return js_series(found, f"db.select returns numbers; {args['selector']}")

    def write(self, args: dict[str, Any], arrays: list[Any]) -> HostAnswer:
        if "lines" in args:
            batch = parse_lines(str(args["lines"]))
            written = sum(self._store().write(part) for part in (batch.numbers, batch.strings))
            if batch.errors:
                raise HostError("PartialWrite", batch.error_message())
            return HostAnswer({"written": written})
        times, values = arrays
        stamps = np.round(times * NS_PER_MS).astype(np.int64)
        counts = [int(s["count"]) for s in args["series"]]
        bounds = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        series = SeriesSet.from_series(
            (str(s["name"]), {str(k): str(v) for k, v in dict(s["labels"]).items()},
             stamps[bounds[i]:bounds[i + 1]], values[bounds[i]:bounds[i + 1]])
            for i, s in enumerate(args["series"]))
        return HostAnswer({"written": self._store().write(series)})

    def delete(self, args: dict[str, Any], _arrays: list[Any]) -> HostAnswer:
        start, end = _range(args)
        removed = self._store().delete(parse_selector(str(args["selector"])), start, end)
        return HostAnswer({"deleted": removed})

    # Runtimes that evaluate in the worker (TSL) read and write whole sets, nanoseconds exact.

    def series_select(self, args: dict[str, Any], _arrays: list[Any]) -> HostAnswer:
        store, selector = self._store(), _selector(args)
        start, end = args.get("start"), args.get("end")
        found = store.select(selector, start, end)
        if "sample" in args:   # pushed down: only the buckets cross to the worker
            found = _numbers_only(found, "sampleBy")
            grid, aggregator, fills = sampling_from_message(args["sample"])
            found = bucketize(found, grid, aggregator, fills)
        return HostAnswer(*series_message(found))

    def series_write(self, args: dict[str, Any], arrays: list[Any]) -> HostAnswer:
        return HostAnswer({"written": self._store().write(series_from_message(args, arrays))})

    def series_replace(self, args: dict[str, Any], arrays: list[Any]) -> HostAnswer:
        """Delete [start, end) of every series name written, then write: a rollup's window
        run again replaces what the earlier run wrote."""
        series, store = series_from_message(args, arrays), self._store()
        start, end = int(args["start"]), int(args["end"])
        deleted = sum(store.delete(Selector(name), start, end) for name in set(series.names))
        return HostAnswer({"written": store.write(series), "deleted": deleted})

    def series_describe(self, args: dict[str, Any], _arrays: list[Any]) -> HostAnswer:
        described = self._store().describe(_selector(args))
        return HostAnswer({"series": [[name, labels] for name, labels in described]})

    def series_delete(self, args: dict[str, Any], _arrays: list[Any]) -> HostAnswer:
        removed = self._store().delete(_selector(args), args.get("start"), args.get("end"))
        return HostAnswer({"deleted": removed})


def _numbers_only(found: SeriesSet, asked: str) -> SeriesSet:
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
    found = _numbers_only(found, asked)
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


def sampling_message(grid: Buckets, aggregator: Aggregator, fills: Sequence[Fill]
                     ) -> dict[str, Any]:
    return {"span": grid.span, "anchor": grid.anchor, "closed": grid.closed,
            "first": grid.first, "last": grid.last,
            "aggregator": [aggregator.name, aggregator.param],
            "fills": [[fill.policy, None if np.isnan(fill.value) else fill.value]
                      for fill in fills]}


def sampling_from_message(given: dict[str, Any]) -> tuple[Buckets, Aggregator, list[Fill]]:
    grid = Buckets(int(given["span"]), int(given["anchor"]), given["closed"],
                   given.get("first"), given.get("last"))
    name, param = given["aggregator"]
    fills = [Fill(str(policy), np.nan if value is None else float(value))
             for policy, value in given["fills"]]
    return grid, Aggregator(str(name), param), fills


def _selector(args: dict[str, Any]) -> Selector:
    matchers = tuple(Matcher.of(str(label), str(op), str(value))
                     for label, op, value in args.get("matchers", []))
    return Selector(args.get("name"), matchers)


def _range(args: dict[str, Any]) -> tuple[int | None, int | None]:
    given = args.get("range") or {}
    start, end = given.get("start"), given.get("end")
    return (None if start is None else round(start * NS_PER_MS),
            None if end is None else round(end * NS_PER_MS))
