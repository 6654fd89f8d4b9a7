"""InfluxDB 1.x, 2.x and 3.x as a tsq connector.

Reads are InfluxQL on `/query` (1.x natively; 2.x and 3.x through their v1-compatible API, the
bucket standing for the database); writes are line protocol on `/write` (1.x) or `/api/v2/write`
(2.x, 3.x); deletes are InfluxQL `DELETE` on 1.x and `/api/v2/delete` on 2.x, which takes only
`=` on tags, and 3.x has no delete API at all: those refuse with ConnectorUnsupported.

Series map to InfluxDB as tsq's line protocol reader maps them: the series `cpu{host="a"}` is
the field `value` of measurement `cpu`, and `cpu.usage{…}` the field `usage` of `cpu`. Tags
with an empty value are left out on write (InfluxDB stores none, and a missing label equals ""
in tsq). InfluxDB stores no NaN or infinity, so such points are not written
(`capabilities.nan` is False); integers and booleans read as doubles.

Why httpx and not influxdb-client for the requests: influxdb-client speaks only the 2.x API
(`/api/v2/write`, Flux), which InfluxDB 1.6 does not have; one pooled httpx client serves every
version with the same retries and errors.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import orjson

from tsq import explain
from tsq.connectors import http, influxql
from tsq.connectors.base import Capabilities, label_values
from tsq.connectors.http import HttpServer, shown
from tsq.errors import (
    ConnectorBadAnswer,
    ConnectorQueryError,
    ConnectorUnsupported,
)
from tsq.hostcalls import numbers_only
from tsq.kernels import Aggregator, Buckets, Fill, bucketize
from tsq.selector import NAME_LABEL, Selector
from tsq.series import SeriesSet

__all__ = ["InfluxDB", "series_name", "split_name"]

VALUE_FIELD = "value"
CHUNK_ROWS = 50_000  # rows per chunk of a streamed /query answer
WRITE_BATCH = 50_000  # lines per write request (InfluxDB's default body limit is 25 MB)

NUMERIC_TYPES = frozenset({"float", "integer", "unsigned", "boolean"})
# tsq aggregators InfluxQL computes exactly as tsq does over one series' bucket, as
# tests/kernels/test_influx_differential.py checks against a real InfluxDB on the same points.
PUSHED_AGGREGATES = {"mean": "mean", "sum": "sum", "min": "min", "max": "max", "count": "count",
                     "first": "first", "last": "last", "median": "median", "stddev": "stddev"}


def series_name(measurement: str, field: str) -> str:
    """The tsq name of a field, as tsq's line protocol reader names it."""
    return measurement if field == VALUE_FIELD else f"{measurement}.{field}"


def split_name(name: str) -> list[tuple[str, str]]:
    """The (measurement, field) pairs whose series carry `name`: a dotted name may be either."""
    pairs = [(name, VALUE_FIELD)]
    measurement, dot, field = name.rpartition(".")
    if dot and measurement and field:
        pairs.append((measurement, field))
    return pairs


@dataclass(frozen=True)
class _Field:
    measurement: str
    field: str
    numeric: bool

    @property
    def name(self) -> str:
        return series_name(self.measurement, self.field)


class InfluxDB:
    capabilities = Capabilities(sampling=True, nan=False)

    def __init__(self, url: str, database: str, *, token: str | None = None,
                 username: str | None = None, password: str | None = None,
                 org: str | None = None, retention_policy: str | None = None,
                 version: str | None = None, label: str = "influxdb",
                 timeout_s: float = http.TIMEOUT_S) -> None:
        self.database = database
        self.org = org
        self.retention_policy = retention_policy
        self._version = version
        self._version_lock = threading.Lock()
        self._server = HttpServer(
            url, label, headers={"Authorization": f"Token {token}"} if token else None,
            auth=httpx.BasicAuth(username, password or "") if username else None,
            timeout_s=timeout_s, secrets=(token or "", password or ""))
        self._request = self._server.request

    @classmethod
    def open(cls, config: Mapping[str, Any], data_dir: Path) -> InfluxDB:
        database = config.get("database") or config.get("bucket")
        if not database:
            raise ConnectorQueryError(f"{_label(config)} needs a database (InfluxDB 1.x) or a "
                                      f"bucket (2.x, 3.x)")
        return cls(str(config["url"]), str(database), token=_text(config.get("token")),
                   username=_text(config.get("username")),
                   password=_text(config.get("password")), org=_text(config.get("org")),
                   retention_policy=_text(config.get("retention_policy")),
                   version=_text(config.get("version")), label=_label(config))

    # -- the Connector protocol ------------------------------------------------------------

    def select(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> SeriesSet:
        parts: list[tuple[str, dict[str, str], Any, Any]] = []
        for measurement, fields in _by_measurement(self._fields(selector)).items():
            columns = ", ".join(influxql.ident(f.field) for f in fields)
            query = (f"SELECT {columns} FROM {self._from(measurement)}"
                     f"{influxql.where(self._conditions(selector, start, end))} GROUP BY *")
            parts.extend(self._columns(query, selector, fields))
        return SeriesSet.from_series(_joined(parts))

    def _columns(self, query: str, selector: Selector, fields: Sequence[_Field]
                 ) -> Iterator[tuple[str, dict[str, str], Any, Any]]:
        """(name, labels, times, values) of each field of each series `query` answers with, in
        pieces as the chunks come; null cells (a point without that field) left out."""
        for _, tags, names, rows in self._rows(query):
            if not rows:
                continue
            table = list(zip(*rows, strict=True))  # column by column, at C speed
            stamps = np.asarray(table[0], dtype=np.int64)
            for field in fields:
                if not selector.matches(field.name, tags):
                    continue
                column = np.asarray(table[names.index(field.field)], dtype=object)
                present: npt.NDArray[np.bool_] = column != None  # noqa: E711 (elementwise)
                values = column[present]
                yield (field.name, tags, stamps[present],
                       values.astype(np.float64) if field.numeric else values)

    def select_sampled(self, selector: Selector, start: int | None, end: int | None,
                       buckets: Buckets, aggregator: Aggregator,
                       fills: Sequence[Fill] = ()) -> SeriesSet:
        """`select` then `bucketize`, with the bucketing pushed down to InfluxDB when its answer
        is exactly tsq's: a bounded range, buckets closed on the left and labelled by their start
        (InfluxDB's `GROUP BY time`), an aggregator in PUSHED_AGGREGATES, numeric fields, and
        one bucket per series (`GROUP BY time(…), *`, never InfluxDB's mean over several
        series). Fills and a fixed grid are applied here to the buckets that come back."""
        function = PUSHED_AGGREGATES.get(aggregator.name)
        fields = self._fields(selector)
        if (function is None or start is None or end is None or buckets.closed != "left"
                or buckets.label != "start" or not all(f.numeric for f in fields)):
            return bucketize(numbers_only(self.select(selector, start, end), "sampleBy"),
                             buckets, aggregator, fills)
        grid = f"time({buckets.span}ns, {buckets.anchor % buckets.span}ns)"
        parts: list[tuple[str, dict[str, str], Any, Any]] = []
        for measurement, chosen in _by_measurement(fields).items():
            columns = ", ".join(f"{function}({influxql.ident(f.field)}) AS "
                                f"{influxql.ident(f.field)}" for f in chosen)
            query = (f"SELECT {columns} FROM {self._from(measurement)}"
                     f"{influxql.where(self._conditions(selector, start, end))} "
                     f"GROUP BY {grid}, * fill(none)")
            parts.extend(self._columns(query, selector, chosen))
        per_bucket = SeriesSet.from_series(_joined(parts))
        # One point per bucket, at its start: bucketizing it again keeps it where it is and
        # lays the grid and fills exactly as tsq's kernels do on raw points.
        return bucketize(per_bucket, buckets, Aggregator("last"), fills)

    def write(self, series: SeriesSet) -> int:
        lines: list[str] = []
        written = 0
        for one in series:
            measurement, field = _write_target(one.name)
            head = _escape_key(measurement, one.labels)
            key = _escape(field, ",= ")
            stamps, values = one.timestamps, one.values
            if values.dtype.kind == "f":
                keep = np.isfinite(values)
                stamps, values = stamps[keep], values[keep]
                texts = values.astype(str)
            elif values.dtype.kind in "iub":
                texts = values.astype(np.float64).astype(str)
            else:
                texts = np.array([_string_field(v) for v in values], dtype=object)
            prefix = f"{head} {key}="
            lines.extend(prefix + text + " " + str(stamp)
                         for text, stamp in zip(texts.tolist(), stamps.tolist(), strict=True))
            written += len(stamps)
        for first in range(0, len(lines), WRITE_BATCH):
            self._write_lines("\n".join(lines[first:first + WRITE_BATCH]))
        return written

    def delete(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> int:
        fields = self._fields(selector)
        if not fields:
            return 0
        version = self.version
        if version.startswith("3"):
            raise ConnectorUnsupported(f"{self._where()}: InfluxDB {version} has no API to "
                                       f"delete points; keep raw data with its retention "
                                       f"period instead")
        every = self._field_names()
        for measurement, chosen in _by_measurement(fields).items():
            others = sorted(set(every.get(measurement, ())) - {f.field for f in chosen})
            if others:
                raise ConnectorUnsupported(
                    f"{self._where()}: InfluxDB deletes whole points, and measurement "
                    f"{measurement!r} has fields {', '.join(others)} beside the selected ones; "
                    f"select every field of it to delete its points")
        counted = self._count(selector, fields, start, end)
        if counted:
            for measurement in _by_measurement(fields):
                self._delete(measurement, selector, start, end)
        return counted

    def names(self) -> list[str]:
        return sorted({f.name for f in self._all_fields()})

    def labels(self, selector: Selector | None = None) -> dict[str, list[str]]:
        return label_values(self.describe(selector or Selector()))

    def describe(self, selector: Selector) -> list[tuple[str, dict[str, str]]]:
        found: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for measurement, fields in _by_measurement(self._fields(selector)).items():
            for field in fields:
                query = (f"SELECT last({influxql.ident(field.field)}) FROM "
                         f"{self._from(measurement)}"
                         f"{influxql.where(self._conditions(selector, None, None))} GROUP BY *")
                for _, tags, _, rows in self._rows(query):
                    if rows and selector.matches(field.name, tags):
                        found.add((field.name, tuple(sorted(tags.items()))))
        return [(name, dict(labels)) for name, labels in sorted(found)]

    def close(self) -> None:
        self._server.close()

    # -- what the server has ---------------------------------------------------------------

    @property
    def version(self) -> str:
        """The server's version, from `/ping` (or the loop file's `version:`)."""
        with self._version_lock:
            if self._version is None:
                answer = self._request("GET", "/ping", what="ping", retry=True)
                self._version = answer.headers.get("X-Influxdb-Version", "1").lstrip("v")
            return self._version

    def _all_fields(self) -> list[_Field]:
        return [_Field(measurement, str(row[0]), str(row[1]) in NUMERIC_TYPES)
                for measurement, _, _, rows in self._rows("SHOW FIELD KEYS") for row in rows]

    def _field_names(self) -> dict[str, list[str]]:
        names: dict[str, list[str]] = defaultdict(list)
        for field in self._all_fields():
            names[field.measurement].append(field.field)
        return names

    def _fields(self, selector: Selector) -> list[_Field]:
        """The fields whose series names `selector` may match."""
        every = self._all_fields()
        if selector.name is not None:
            wanted = set(split_name(selector.name))
            every = [f for f in every if (f.measurement, f.field) in wanted]
        name_matchers = [m for m in selector.matchers if m.label == NAME_LABEL]
        return [f for f in every if all(m.matches(f.name) for m in name_matchers)]

    # -- queries -----------------------------------------------------------------------------

    def _from(self, measurement: str) -> str:
        policy = influxql.ident(self.retention_policy) if self.retention_policy else ""
        return f"{influxql.ident(self.database)}.{policy}.{influxql.ident(measurement)}"

    def _conditions(self, selector: Selector, start: int | None, end: int | None) -> list[str]:
        return [*influxql.tag_conditions(selector.matchers),
                *influxql.time_conditions(start, end)]

    def _count(self, selector: Selector, fields: Sequence[_Field], start: int | None,
               end: int | None) -> int:
        """How many points a delete removes: those of the series `selector` matches."""
        total = 0
        for measurement, chosen in _by_measurement(fields).items():
            counts = ", ".join(f"count({influxql.ident(f.field)})" for f in chosen)
            query = (f"SELECT {counts} FROM {self._from(measurement)}"
                     f"{influxql.where(self._conditions(selector, start, end))} GROUP BY *")
            for _, tags, _, rows in self._rows(query):
                for row in rows:
                    total += sum(int(count or 0) for field, count in zip(chosen, row[1:],
                                                                         strict=False)
                                 if selector.matches(field.name, tags))
        return total

    def _delete(self, measurement: str, selector: Selector, start: int | None,
                end: int | None) -> None:
        if self.version.startswith("1"):
            statement = (f"DELETE FROM {influxql.ident(measurement)}"
                         f"{influxql.where(self._conditions(selector, start, end))}")
            self._query(statement, method="POST")
            return
        self._delete_v2(measurement, selector, start, end)

    def _delete_v2(self, measurement: str, selector: Selector, start: int | None,
                   end: int | None) -> None:
        """InfluxDB 2.x's delete API: `=` on tags only, and a closed time range."""
        unsupported = [m for m in selector.matchers if m.label != NAME_LABEL and m.op != "="]
        if unsupported:
            raise ConnectorUnsupported(
                f"{self._where()}: InfluxDB {self.version} deletes by tag equality only; "
                f"{', '.join(f'{m.label}{m.op}{m.value!r}' for m in unsupported)} cannot be "
                f"deleted there")
        predicate = " AND ".join([f'_measurement="{_v2_quote(measurement)}"', *(
            f'{m.label}="{_v2_quote(m.value)}"' for m in selector.matchers
            if m.label != NAME_LABEL)])
        last = (end - 1) if end is not None else 2**63 - 1  # the API's stop is inclusive
        body = {"start": _rfc3339(start or 0), "stop": _rfc3339(last), "predicate": predicate}
        self._request("POST", "/api/v2/delete", what=f"delete {predicate}",
                      params={"bucket": self.database, "org": self.org or ""},
                      content=orjson.dumps(body),
                      headers={"Content-Type": "application/json"})

    def _rows(self, query: str
              ) -> Iterator[tuple[str, dict[str, str], list[str], list[list[Any]]]]:
        """Each series of the answer as (measurement, tags, columns, rows); a chunked answer's
        parts of one series come one after another and are given as they come."""
        for result in self._query(query):
            if "error" in result:
                raise ConnectorQueryError(f"{self._where()} refused {shown(query)}: "
                                          f"{result['error']}")
            for series in result.get("series", ()):
                yield (str(series.get("name", "")), dict(series.get("tags") or {}),
                       list(series.get("columns") or ()), list(series.get("values") or ()))

    def _query(self, query: str, *, method: str = "GET") -> list[dict[str, Any]]:
        params = {"db": self.database, "q": query, "epoch": "ns", "chunked": "true",
                  "chunk_size": str(CHUNK_ROWS)}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        explain.note(self._where(), lambda: f"InfluxQL {query}")
        answer = self._request(method, "/query", what=query, params=params,
                               retry=method == "GET")
        results: list[dict[str, Any]] = []
        try:
            for line in answer.content.splitlines():
                if line.strip():
                    results.extend(orjson.loads(line).get("results", ()))
        except (orjson.JSONDecodeError, AttributeError) as exc:
            raise ConnectorBadAnswer(f"{self._where()} answered {query!r} with something that "
                                     f"is not InfluxDB's JSON: {exc}") from None
        return results

    def _write_lines(self, body: str) -> None:
        if self.version.startswith("1"):
            params = {"db": self.database, "precision": "ns"}
            if self.retention_policy:
                params["rp"] = self.retention_policy
            path = "/write"
        else:
            bucket = (f"{self.database}/{self.retention_policy}" if self.retention_policy
                      else self.database)
            params = {"bucket": bucket, "org": self.org or "", "precision": "ns"}
            path = "/api/v2/write"
        self._request("POST", path, what="write", params=params, content=body.encode())

    def _where(self) -> str:
        return self._server.where


# -- helpers -------------------------------------------------------------------------------------


def _joined(parts: Sequence[tuple[str, dict[str, str], Any, Any]]
            ) -> list[tuple[str, dict[str, str], Any, Any]]:
    """The pieces of each series joined, series in (name, labels) order, empty ones left out."""
    pieces: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[Any, Any]]] = \
        defaultdict(list)
    for name, labels, stamps, values in parts:
        pieces[(name, tuple(sorted(labels.items())))].append((stamps, values))
    joined = []
    for (name, key), found in sorted(pieces.items()):
        stamps = np.concatenate([piece[0] for piece in found])
        if len(stamps):
            joined.append((name, dict(key), stamps,
                           np.concatenate([piece[1] for piece in found])))
    return joined


def _by_measurement(fields: Sequence[_Field]) -> dict[str, list[_Field]]:
    grouped: dict[str, list[_Field]] = defaultdict(list)
    for field in fields:
        grouped[field.measurement].append(field)
    return dict(grouped)


def _write_target(name: str) -> tuple[str, str]:
    """Where the series `name` is written: the last of `split_name`'s choices, so a dotted name
    is the field after its last dot, and reads give the same name back."""
    return split_name(name)[-1]


def _escape(text: str, characters: str) -> str:
    """A measurement, tag or field key for line protocol. InfluxDB reads a backslash as an
    escape only before one of `characters`, so backslashes stay as they are, and one at the end
    (which would escape the separator after it) cannot be written."""
    if text.endswith("\\"):
        raise ConnectorQueryError(f"InfluxDB's line protocol cannot carry {text!r}: a name, tag "
                                  f"or field ending in a backslash")
    for char in characters:
        text = text.replace(char, "\\" + char)
    return text


def _escape_key(measurement: str, labels: Mapping[str, str]) -> str:
    tags = "".join(f",{_escape(key, ',= ')}={_escape(value, ',= ')}"
                   for key, value in sorted(labels.items()) if value != "")
    return _escape(measurement, ", ") + tags


def _string_field(value: Any) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _v2_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _rfc3339(ns: int) -> str:
    seconds, fraction = divmod(int(ns), 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def _label(config: Mapping[str, Any]) -> str:
    name = config.get("name")
    return f'influxdb connector "{name}"' if name else "influxdb connector"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
