"""Prometheus (2.x) and VictoriaMetrics (1.x) as tsq connectors: one HTTP API, two servers.

Reads are the HTTP API: raw samples from an instant query of a range selector on `/api/v1/query`,
series from `/api/v1/series`, names from `/api/v1/label/__name__/values`. Writes are remote
write 1.0 (`tsq.connectors.remotewrite`) to `/api/v1/write`. Deletes are the admin API's
`/api/v1/admin/tsdb/delete_series`.

How `[start, end)` (nanoseconds) becomes a request: Prometheus keeps milliseconds, so the
first millisecond in the window is `first = ceil(start / 1 ms)` and the last `last =
ceil(end / 1 ms) - 1`. The query is `selector[<last - first + 1>ms]` at `time = last`: its
range `(last - range, last]` (Prometheus 2.x also takes its left end) holds every sample of
the window, and tsq keeps exactly those with `start <= t < end`. A delete's `end` is
inclusive: it is `last`. An open start is the first millisecond after 1970 (VictoriaMetrics
reads nothing before it), an open end a year from now.

What differs between the servers is data, in `SERVERS`, never a test of the server's name:
what they store and compute exactly (`Capabilities`), whether a write must be flushed before the
next read sees it, and extra query parameters.

TSL's sampleBy, and a group right after it, are pushed down to Prometheus as `query_range`
requests where the answer is exactly tsq's (`tsq.connectors.promqlpush` plans them, and says
why not); buckets cut by the range's edges, and those answered NaN or infinite, are read raw and
computed by tsq's kernels.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from tsq import explain
from tsq.connectors import http, promqlpush
from tsq.connectors.base import Capabilities, label_values
from tsq.connectors.http import HttpServer, shown
from tsq.connectors.remotewrite import snappy_request
from tsq.errors import (
    ConnectorBadAnswer,
    ConnectorQueryError,
    ConnectorUnsupported,
)
from tsq.kernels import Aggregator, Buckets, Fill, Grouping, bucketize
from tsq.selector import NAME_LABEL, Matcher, Selector
from tsq.series import SeriesSet

__all__ = ["SERVERS", "Prometheus", "Server", "VictoriaMetrics", "promql_selector",
           "window_request"]

MS = 1_000_000  # nanoseconds
WRITE_BATCH = 50_000  # samples per remote write request

FIRST_MS = 1  # the earliest millisecond read: VictoriaMetrics takes 0 as "no start given"
FUTURE_MS = 366 * 86_400_000  # how far past now an open end reaches
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
ANY_NAME = Matcher.of(NAME_LABEL, "=~", ".+")  # PromQL needs one matcher that refuses ""


@dataclass(frozen=True)
class Server:
    """What a server of the Prometheus API does its own way."""

    product: str  # how messages name it
    capabilities: Capabilities
    flush: str | None = None  # asked after a write, so that the next read sees it
    read_params: Mapping[str, str] = field(default_factory=dict)  # sent with every read


SERVERS: Mapping[str, Server] = {
    # Prometheus keeps NaN and hides its staleness markers itself; a sample sent again at a
    # held timestamp may or may not replace it (out-of-order samples merge at read time). Its
    # buckets and groups are tsq's where promqlpush says so (checked on 2.42 by the tests).
    "prometheus": Server("Prometheus", Capabilities(sampling=True, grouping=True,
                                                    strings=False, replaces=False)),
    # VictoriaMetrics drops NaN on write, so a NaN it answers is a staleness marker; it keeps
    # both samples of a timestamp, deletes whole series only, and makes a write visible to
    # reads within about a second unless asked to flush. It reads raw only: its *_over_time
    # would take both samples of a timestamp where tsq keeps the later, and MetricsQL's range
    # conventions are not Prometheus's (nothing here proves them exact).
    "victoriametrics": Server("VictoriaMetrics",
                              Capabilities(nan=False, strings=False, replaces=False,
                                           range_delete=False),
                              flush="/internal/force_flush", read_params={"nocache": "1"}),
}

# What a server's refusal means for a user, by the words of its message: the flag to turn on.
HINTS: tuple[tuple[str, str], ...] = (
    ("remote write receiver needs to be enabled",
     "start Prometheus with --web.enable-remote-write-receiver"),
    ("out of order sample",
     "set storage.tsdb.out_of_order_time_window in Prometheus's configuration to accept "
     "samples older than the newest it holds"),
    ("out of bounds", "set storage.tsdb.out_of_order_time_window in Prometheus's "
                      "configuration to accept samples older than its head block"),
    ("too old sample", "set storage.tsdb.out_of_order_time_window wider"),
    ("admin APIs disabled", "start Prometheus with --web.enable-admin-api"),
)


def window_request(start: int | None, end: int | None, now_ms: int) -> tuple[int, int] | None:
    """(last millisecond, range in ms) of the query that holds `[start, end)`, or None when
    no millisecond lies in it."""
    first = max(FIRST_MS, -(-start // MS)) if start is not None else FIRST_MS
    last = -(-end // MS) - 1 if end is not None else now_ms + FUTURE_MS
    return (last, last - first + 1) if last >= first else None


def promql_string(text: str) -> str:
    """`text` as a PromQL string literal: JSON's escapes are Go's."""
    return orjson.dumps(text).decode()


def promql_selector(selector: Selector) -> str | None:
    """`selector` in PromQL, always as `{__name__…, …}` (a tsq name need not be a PromQL
    name); None when no Prometheus series can match it."""
    matchers = [Matcher.of(NAME_LABEL, "=", selector.name) if selector.name is not None
                else ANY_NAME]
    for matcher in selector.matchers:
        if LABEL_NAME.fullmatch(matcher.label):
            matchers.append(matcher)
        elif not matcher.matches(""):
            return None  # a label Prometheus cannot hold is "" on every series
    return "{" + ", ".join(f"{m.label}{m.op}{promql_string(m.value)}" for m in matchers) + "}"


def _seconds(ms: int) -> str:
    """Milliseconds as the API's seconds, exactly."""
    return f"{'-' if ms < 0 else ''}{abs(ms) // 1000}.{abs(ms) % 1000:03d}"


class Prometheus:
    server = SERVERS["prometheus"]

    def __init__(self, url: str, *, token: str | None = None, username: str | None = None,
                 password: str | None = None, label: str = "prometheus connector",
                 timeout_s: float = http.TIMEOUT_S) -> None:
        self.capabilities = self.server.capabilities
        self._server = HttpServer(
            url, label, headers={"Authorization": f"Bearer {token}"} if token else None,
            auth=httpx.BasicAuth(username, password or "") if username else None,
            timeout_s=timeout_s, hints=HINTS, secrets=(token or "", password or ""))
        self._request = self._server.request

    @classmethod
    def open(cls, config: Mapping[str, Any], data_dir: Path) -> Prometheus:
        kind = str(config.get("type", "prometheus"))
        name = config.get("name")
        return cls(str(config["url"]), token=_text(config.get("token")),
                   username=_text(config.get("username")),
                   password=_text(config.get("password")),
                   label=f'{kind} connector "{name}"' if name else f"{kind} connector")

    # -- the Connector protocol ------------------------------------------------------------

    def select(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> SeriesSet:
        promql = promql_selector(selector)
        window = window_request(start, end, int(time.time() * 1000))
        if promql is None or window is None:
            return SeriesSet.from_series([])
        last, span = window
        query = f"{promql}[{span}ms]"
        data = self._api("POST", "/api/v1/query", what=query, retry=True,
                         data={"query": query, "time": _seconds(last), **self.server.read_params})
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise self._bad_answer(query, "not a matrix")
        low = start if start is not None else -(2**63)
        high = end if end is not None else 2**63 - 1
        found = []
        for one in data.get("result") or ():
            name, labels, stamps, values = self._series(one, query)
            keep = (stamps >= low) & (stamps < high)
            if not self.capabilities.nan:
                keep &= ~np.isnan(values)  # a staleness marker, never data
            if not self.capabilities.replaces:  # VictoriaMetrics keeps both: the later one
                keep[:-1] &= stamps[1:] != stamps[:-1]
            if keep.any():
                found.append((name, labels, stamps[keep], values[keep]))
        return SeriesSet.from_series(sorted(found, key=lambda s: (s[0], sorted(s[1].items()))))

    def select_sampled(self, selector: Selector, start: int | None, end: int | None,
                       buckets: Buckets, aggregator: Aggregator,
                       fills: Sequence[Fill] = ()) -> SeriesSet:
        """`select` then `bucketize`, the buckets computed by the server where promqlpush finds
        them exact, the rest by tsq's kernels on raw points."""
        return self._sampled(selector, start, end, buckets, aggregator, fills, None)

    def select_grouped(self, selector: Selector, start: int | None, end: int | None,
                       buckets: Buckets, aggregator: Aggregator, fills: Sequence[Fill],
                       group: Grouping) -> SeriesSet:
        """`select_sampled` then `group.apply`, the groups computed by the server too where
        promqlpush finds them exact."""
        return self._sampled(selector, start, end, buckets, aggregator, fills, group)

    def write(self, series: SeriesSet) -> int:
        batch: list[tuple[dict[str, str], list[int], list[float]]] = []
        size = written = 0
        for one in series:
            labels = self._write_labels(one.name, one.labels)
            values = one.values
            if values.dtype.kind not in "fiub":
                raise ConnectorUnsupported(
                    f"{self._where()} cannot store {one.name}{dict(one.labels)}: "
                    f"{self.server.product} keeps numbers only, and its values are strings")
            values = values.astype(np.float64)
            stamps = one.timestamps // MS  # Prometheus keeps milliseconds
            nan = np.isnan(values)
            if self.capabilities.nan:
                values[nan] = np.nan  # numpy's NaN, never Prometheus's staleness marker
            else:
                stamps, values = stamps[~nan], values[~nan]
            batch.append((labels, stamps.tolist(), values.tolist()))
            size += len(stamps)
            written += len(stamps)
            if size >= WRITE_BATCH:
                self._remote_write(batch)
                batch, size = [], 0
        if batch:
            self._remote_write(batch)
        return written

    def delete(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> int:
        promql = promql_selector(selector)
        window = window_request(start, end, int(time.time() * 1000))
        if promql is None or window is None:
            return 0
        counted = self.select(selector, start, end).points
        if not counted:
            return 0  # nothing to delete is no failure, even where a range cannot be deleted
        ranged = start is not None or end is not None
        if ranged and not self.capabilities.range_delete:
            raise ConnectorUnsupported(
                f"{self._where()}: {self.server.product} deletes whole series only, not the "
                f"{counted} points of {promql} in a time range; keep raw data with its "
                f"retention period instead")
        params = {"match[]": promql}
        if ranged:
            last, span = window
            params |= {"start": _seconds(last - span + 1), "end": _seconds(last)}
        self._api("POST", "/api/v1/admin/tsdb/delete_series", what=f"delete {promql}",
                  params=params)
        self._flush()
        left = self.select(selector, start, end).points
        if left:
            raise ConnectorUnsupported(
                f"{self._where()} kept {left} of the {counted} points of {promql} it was asked "
                f"to delete (Prometheus 2.x does not delete samples it took out of order)")
        return counted

    def names(self) -> list[str]:
        data = self._api("GET", "/api/v1/label/__name__/values", what="names", retry=True,
                         params=self._all_time())
        if not isinstance(data, list):
            raise self._bad_answer("names", "not a list")
        return sorted(str(name) for name in data)

    def labels(self, selector: Selector | None = None) -> dict[str, list[str]]:
        return label_values(self.describe(selector or Selector()))

    def describe(self, selector: Selector) -> list[tuple[str, dict[str, str]]]:
        promql = promql_selector(selector)
        if promql is None:
            return []
        data = self._api("POST", "/api/v1/series", what=promql, retry=True,
                         data={"match[]": promql, **self._all_time()})
        if not isinstance(data, list):
            raise self._bad_answer(promql, "not a list of series")
        found = {self._split(one, promql) for one in data}
        return [(name, dict(labels)) for name, labels in sorted(found)]

    def close(self) -> None:
        self._server.close()

    # -- pushdown ----------------------------------------------------------------------------

    def _sampled(self, selector: Selector, start: int | None, end: int | None,
                 buckets: Buckets, aggregator: Aggregator, fills: Sequence[Fill],
                 group: Grouping | None) -> SeriesSet:
        promql = promql_selector(selector)
        found: promqlpush.Plan | str = (
            f"{self.server.product} reads raw points only here" if not self.capabilities.sampling
            else "the selector names no single metric (PromQL's answers keep no name)"
            if selector.name is None
            else promqlpush.plan(promql, start, end, buckets, aggregator))
        if isinstance(found, str):
            reason = found
            explain.note("tsq", lambda: f"sampleBy({buckets.span / 1e9:g} s, {aggregator.name})"
                                        f" on the raw points: {reason}")
            sampled = bucketize(self.select(selector, start, end), buckets, aggregator, fills)
            return sampled if group is None else self._group_here(sampled, group, reason)
        if group is not None:
            # Every series the selector has ever matched, not only those of the range: a wider
            # set can only refuse more, and the index answers it without reading samples.
            refusal = promqlpush.group_refusal(selector.name, fills, group,
                                               self.describe(selector)) \
                if self.capabilities.grouping else "grouping is not pushed here"
            if refusal is not None:
                sampled = self._sampled(selector, start, end, buckets, aggregator, fills, None)
                return self._group_here(sampled, group, refusal)
            found = dataclasses.replace(found, query=promqlpush.query_text(
                promql or "", found.span_ms, aggregator, group))
        return self._pushed(found, selector, buckets, aggregator, fills, group)

    def _pushed(self, found: promqlpush.Plan, selector: Selector, buckets: Buckets,
                aggregator: Aggregator, fills: Sequence[Fill], group: Grouping | None
                ) -> SeriesSet:
        """The plan's answer from the server, its untrusted and cut buckets from tsq."""
        name = selector.name or ""
        span = buckets.span
        explain.note(self._where(), lambda: (
            f"pushed down sampleBy({span / 1e9:g} s, {aggregator.name})"
            f"{'' if group is None else f' and {group}'}: {found.whole} whole bucket(s) as "
            f"query_range {found.query} step {found.span_ms}ms"))
        parts: list[tuple[tuple[tuple[str, str], ...], Any, Any]] = []
        for first_ms, last_ms in promqlpush.steps(found):
            data = self._api("POST", "/api/v1/query_range", what=found.query, retry=True, data={
                "query": found.query, "start": _seconds(first_ms), "end": _seconds(last_ms),
                "step": _seconds(found.span_ms), **self.server.read_params})
            if not isinstance(data, dict) or data.get("resultType") != "matrix":
                raise self._bad_answer(found.query, "not a matrix")
            parts.extend(self._steps(one, found.query, span) for one in data.get("result") or ())
        untrusted = [stamps[~np.isfinite(values)] for _, stamps, values in parts]
        windows = promqlpush.local_windows(
            found, np.concatenate(untrusted) if untrusted else np.empty(0, np.int64))
        local = self._recomputed(selector, windows, buckets, aggregator, group)
        # Every series' (or group's) points at a recomputed bucket come from tsq, all others
        # from the server: a bucket is whole from one side or the other.
        recomputed = np.array([buckets.anchor + (a - buckets.anchor) // span * span
                               for a, _ in windows], np.int64)
        recomputed_end = np.array([b for _, b in windows], np.int64)
        merged: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[Any, Any]]] = {}
        for labels, stamps, values in parts:
            keep = slice(None)
            if windows:
                at = np.searchsorted(recomputed, stamps, side="right") - 1
                keep = (at < 0) | (stamps >= recomputed_end[np.maximum(at, 0)])
            merged.setdefault((name, labels), []).append((stamps[keep], values[keep]))
        computed = set()
        for one in local:  # an empty one too: tsq's kernels keep a series of NaN points
            key = (one.name, tuple(sorted(one.labels.items())))
            computed.add(key)
            merged.setdefault(key, []).append((one.timestamps, one.values))
        series = SeriesSet.from_series(
            (key_name, dict(labels), np.concatenate([p[0] for p in pieces]),
             np.concatenate([p[1] for p in pieces]).astype(np.float64))
            for (key_name, labels), pieces in sorted(merged.items())
            if (key_name, labels) in computed or any(len(p[0]) for p in pieces))
        if group is not None or (not fills and buckets.first is None):
            return series
        # One point per bucket, at its start: bucketizing it again keeps it where it is and
        # lays the grid and fills exactly as tsq's kernels do on raw points.
        return bucketize(series, buckets, Aggregator("last"), fills)

    def _recomputed(self, selector: Selector, windows: Sequence[tuple[int, int]],
                    buckets: Buckets, aggregator: Aggregator, group: Grouping | None
                    ) -> SeriesSet:
        """tsq's buckets (and groups) of the raw points in `windows`."""
        if not windows:
            return SeriesSet.empty()
        explain.note("tsq", lambda: f"{len(windows)} window(s) of cut, NaN or infinite "
                                    f"buckets read raw and computed by tsq's kernels")
        pieces: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[Any, Any]]] = {}
        for start, end in windows:
            for one in self.select(selector, start, end):
                pieces.setdefault((one.name, tuple(sorted(one.labels.items()))), []).append(
                    (one.timestamps, one.values))
        raw = SeriesSet.from_series(
            (name, dict(labels), np.concatenate([p[0] for p in found]),
             np.concatenate([p[1] for p in found]))
            for (name, labels), found in sorted(pieces.items()))
        sampled = bucketize(raw, Buckets(buckets.span, buckets.anchor), aggregator)
        return sampled if group is None else group.apply(sampled)

    def _group_here(self, sampled: SeriesSet, group: Grouping, why: str) -> SeriesSet:
        grouped = group.apply(sampled)
        explain.note("tsq", lambda: f"{group}: {len(grouped)} series, {grouped.points} points "
                                    f"({why})")
        return grouped

    def _steps(self, one: Any, query: str, span: int
               ) -> tuple[tuple[tuple[str, str], ...], Any, Any]:
        """A series of a query_range answer: its labels, and its values by bucket tick (a step
        at the bucket's last millisecond)."""
        try:
            metric = one["metric"]
            labels = tuple(sorted((str(k), str(v)) for k, v in metric.items()
                                  if k != NAME_LABEL and v != ""))
            pairs = np.array(one["values"], dtype=object).reshape(-1, 2)
            stamps = np.rint(pairs[:, 0].astype(np.float64) * 1000).astype(np.int64) * MS
            values = pairs[:, 1].astype(np.float64)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._bad_answer(query, f"a series without its metric or values ({exc})") \
                from None
        return labels, stamps + MS - span, values

    # -- requests ----------------------------------------------------------------------------

    def _all_time(self) -> dict[str, str]:
        last = int(time.time() * 1000) + FUTURE_MS
        return {"start": _seconds(FIRST_MS), "end": _seconds(last), **self.server.read_params}

    def _series(self, one: Any, query: str) -> tuple[str, dict[str, str], Any, Any]:
        try:
            name, labels = self._split(one["metric"], query)
            pairs = one["values"]
            stamps = np.array([round(float(t) * 1000) for t, _ in pairs], dtype=np.int64) * MS
            values = np.array([float(v) for _, v in pairs], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._bad_answer(query, f"a series without its metric or values ({exc})") \
                from None
        return name, dict(labels), stamps, values

    def _split(self, metric: Any, query: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        if not isinstance(metric, dict) or NAME_LABEL not in metric:
            raise self._bad_answer(query, "a series without a name")
        labels = tuple(sorted((str(k), str(v)) for k, v in metric.items()
                              if k != NAME_LABEL and v != ""))
        return str(metric[NAME_LABEL]), labels

    def _write_labels(self, name: str, labels: Mapping[str, str]) -> dict[str, str]:
        """The remote-write labels of a series; names PromQL could not select are refused."""
        if not METRIC_NAME.fullmatch(name):
            raise ConnectorQueryError(
                f"{self._where()} cannot store a series named {name!r}: a "
                f"{self.server.product} metric name is letters, digits, '_' and ':', not "
                f"starting with a digit (rename it, e.g. with '_' for '.' and '-')")
        bad = [key for key in labels if not LABEL_NAME.fullmatch(key) or key.startswith("__")]
        if bad:
            raise ConnectorQueryError(
                f"{self._where()} cannot store {name} with label {bad[0]!r}: a "
                f"{self.server.product} label name is letters, digits and '_', not starting "
                f"with a digit or '__'")
        return {NAME_LABEL: name, **{k: v for k, v in labels.items() if v != ""}}

    def _remote_write(self, batch: list[tuple[dict[str, str], list[int], list[float]]]) -> None:
        self._request("POST", "/api/v1/write", what="remote write",
                      content=snappy_request(batch),
                      headers={"Content-Encoding": "snappy",
                               "Content-Type": "application/x-protobuf",
                               "X-Prometheus-Remote-Write-Version": "0.1.0"})
        self._flush()

    def _flush(self) -> None:
        if self.server.flush is not None:
            self._request("GET", self.server.flush, what="flush", retry=True)

    def _api(self, method: str, path: str, *, what: str, retry: bool = False,
             **options: Any) -> Any:
        """`data` of an API answer."""
        explain.note(self._where(), lambda: f"{method} {path} {what}")
        answer = self._request(method, path, what=what, retry=retry, **options)
        if not answer.content.strip():
            return None  # delete_series: 204
        try:
            body = orjson.loads(answer.content)
        except orjson.JSONDecodeError as exc:
            raise self._bad_answer(what, f"not JSON ({exc})") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            raise self._bad_answer(what, "no success status")
        return body.get("data")

    def _bad_answer(self, what: str, why: str) -> ConnectorBadAnswer:
        return ConnectorBadAnswer(f"{self._where()} answered {shown(what)} with something "
                                  f"that is not {self.server.product}'s API: {why}")

    def _where(self) -> str:
        return self._server.where


class VictoriaMetrics(Prometheus):
    """The same API on VictoriaMetrics: only `SERVERS`' row differs."""

    server = SERVERS["victoriametrics"]


# -- helpers -------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return None if value is None else str(value)

