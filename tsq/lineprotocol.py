"""InfluxDB line protocol: `measurement,tag=v field=1.5,other=2i 1700000000000000000`.

The whole of InfluxDB's syntax: backslash escapes (commas and spaces in measurements; commas,
equals signs and spaces in tag keys, tag values and field keys), double-quoted string fields with
`\\"` and `\\\\`, floats, `i` integers, `u` unsigned integers, booleans (t, T, true, True, TRUE and
the same for false), an optional timestamp in the request's precision (now when absent), and
`#` comment lines. Like InfluxDB, a batch is parsed line by line: the good lines are kept and
each bad one is reported with its line number.

A timestamp, scaled to nanoseconds, must lie in the range a point can have (`tsq.series.FIRST_NS`
to `LAST_NS`, 1677 to 2262; pre-1970 times are negative and fine): a line outside it is a bad
line like any other, never a point that wraps around to another year or that cannot be read
back. Both parsers, the bulk one and the line-by-line one, hold to the same rules: the bulk one
hands any batch it has a doubt about to the other.

Each field becomes a series named `measurement.field` (just `measurement` for a field called
`value`, so `cpu,host=a value=1` is the series `cpu{host="a"}`), labelled with the tags.
Integers and booleans are stored as doubles (exact up to 2^53); strings as strings.
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tsq.errors import BadRequest
from tsq.jitloaded import loaded
from tsq.series import FIRST_NS, LAST_NS, SeriesSet

if TYPE_CHECKING:
    from tsq.linescan import Scanned

__all__ = ["PRECISIONS", "ParsedBatch", "parse_joined", "parse_lines"]

PRECISIONS = {"n": 1, "ns": 1, "u": 1_000, "us": 1_000, "µ": 1_000, "ms": 1_000_000,
              "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
FALSE = frozenset({"f", "F", "false", "False", "FALSE"})
MAX_ERRORS_SHOWN = 20
_INTEGER = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
# Batches from this size on (a few hundred lines) are read by tsq.linescan's compiled pass even
# where it is not loaded yet (a second of numba's); once it is, it reads those from a few lines
# on (a hundred in 0.2 ms; below LOADED_SCAN_CHARS, parsing line by line is as quick).
SCAN_CHARS = 16_384
LOADED_SCAN_CHARS = 256
# Smaller batches that the pass does not read are read line by line: pandas' reader costs some
# 3 ms whatever the batch, which parsing line by line reaches at about 30 KB.
BULK_CHARS = 32_768
MAX_STAMP_DIGITS = 25  # longer is out of range at any precision; int() of it would be slow


@dataclass
class ParsedBatch:
    numbers: SeriesSet
    strings: SeriesSet
    points: int
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)

    def error_message(self) -> str:
        shown = "; ".join(f"line {n}: {why}" for n, why in self.errors[:MAX_ERRORS_SHOWN])
        more = len(self.errors) - MAX_ERRORS_SHOWN
        return (f"partial write: {len(self.errors)} line(s) could not be parsed and were "
                f"skipped ({shown}{f'; and {more} more' if more > 0 else ''})")


class _LineError(Exception):
    pass


@dataclass(frozen=True)
class _Stamps:
    """Timestamps at one precision: how to scale them and which ones a point can have."""

    precision: str
    scale: int

    @property
    def low(self) -> int:
        return -(-FIRST_NS // self.scale)  # rounded up: the first that scales into the range

    @property
    def high(self) -> int:
        return LAST_NS // self.scale

    def ns(self, text: str) -> int:
        if not _INTEGER.fullmatch(text):
            raise _LineError(f"bad timestamp {_shown(text)}; expected an integer")
        if len(text) > MAX_STAMP_DIGITS or not self.low <= int(text) <= self.high:
            raise _LineError(
                f"timestamp {_shown(text)} is out of range: at precision {self.precision} a "
                f"timestamp must be from {self.low} to {self.high} ({_iso(FIRST_NS)} to "
                f"{_iso(LAST_NS)})")
        return int(text) * self.scale


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _iso(ns: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def parse_lines(body: str, precision: str = "ns", now_ns: int | None = None, *,
                scan: bool = True) -> ParsedBatch:
    """The points of `body`; a large plain batch is read by the compiled pass (`tsq.linescan`)
    unless `scan` is False (numba not loaded yet: see `tsq.lineparsers`)."""
    stamps, default_ts = _stamps(precision, now_ns)
    if scan and _worth_scanning(len(body)):
        scanned = _parse_scanned(body.encode(), stamps, default_ts)
        if scanned is not None:
            return scanned[0]
    if len(body) >= BULK_CHARS:
        bulk = _parse_bulk(body, stamps, default_ts)
        if bulk is not None:
            return bulk
    return _parse_each(body, stamps, default_ts)


def parse_joined(bodies: Sequence[str], precision: str = "ns", now_ns: int | None = None, *,
                 scan: bool = True) -> tuple[ParsedBatch, list[int]] | None:
    """The points of `bodies` as if written one after another (a series in several is one
    series; of the points of one time the last stays), parsed as one batch, and how many points
    each body brought; None where the compiled pass does not take them all (a bad or unusual
    line, or `scan` False: see `parse_lines`): then each is parsed alone. Several writes'
    lines parsed together make each series' name and labels once, not once a write."""
    stamps, default_ts = _stamps(precision, now_ns)
    size = sum(len(body) for body in bodies)
    if not scan or not _worth_scanning(size):
        return None  # as parse_lines chooses: a few lines are as quick one write at a time
    raws = [body.encode() for body in bodies]
    scanned = _parse_scanned(b"\n".join(raws), stamps, default_ts)
    if scanned is None:
        return None
    batch, lines = scanned
    # where each body begins in the joined bytes, and so which body each point's line is in
    begins = np.cumsum([0] + [len(raw) + 1 for raw in raws[:-1]])
    body_of = np.searchsorted(begins, lines.key_start[lines.field_line], "right") - 1
    return batch, np.bincount(body_of, minlength=len(bodies)).tolist()


def _stamps(precision: str, now_ns: int | None) -> tuple[_Stamps, int]:
    """The precision's timestamps (BadRequest if there is no such precision), and the time
    of a point written without one: the request's."""
    scale = PRECISIONS.get(precision)
    if scale is None:
        raise BadRequest(f"unknown precision {precision!r}; expected one of "
                         f"{', '.join(p for p in PRECISIONS if p != 'µ')}")
    now = time.time_ns() if now_ns is None else now_ns
    return _Stamps(precision, scale), now - now % scale


def _worth_scanning(chars: int) -> bool:
    """Whether `chars` of lines go to the compiled pass: a large batch always (loading it), a
    smaller one once it is loaded, a few lines never."""
    return chars >= SCAN_CHARS or (chars >= LOADED_SCAN_CHARS and _scan_loaded())


def _scan_loaded() -> bool:
    """Whether the compiled pass is loaded in this process (never loading it)."""
    return loaded("tsq.linescan")


def _parse_each(body: str, stamps: _Stamps, default_ts: int) -> ParsedBatch:
    """Line by line, each bad line reported with its number and the good ones kept."""
    numbers: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[list[int], list[float]]] = \
        defaultdict(lambda: ([], []))
    strings: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[list[int], list[str]]] = \
        defaultdict(lambda: ([], []))
    errors: list[tuple[int, str]] = []
    # the lists of each (series key text, field) of this batch: most lines repeat a key
    slots: dict[tuple[str, str, bool], tuple[list[int], list[Any]]] = {}
    heads: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
    points = 0
    for number, raw in enumerate(body.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if "\\" in line or '"' in line:
                key, measurement, tag_list, fields, stamp = _parse_escaped(line)
                heads.setdefault(key, (measurement, tuple(sorted(tag_list))))
            else:
                key, fields, stamp = _parse_plain(line, heads)
            ts = default_ts if stamp is None else stamps.ns(stamp)
        except _LineError as exc:
            errors.append((number, f"{exc} in {_excerpt(line)}"))
            continue
        for name, value in fields:
            text = isinstance(value, str)
            slot = slots.get((key, name, text))
            if slot is None:
                measurement, tags = heads[key]
                series = measurement if name == "value" else f"{measurement}.{name}"
                target: Any = strings if text else numbers
                slot = slots[(key, name, text)] = target[(series, tags)]
            slot[0].append(ts)
            slot[1].append(value)
            points += 1
    return ParsedBatch(_to_set(numbers, np.float64), _to_set(strings, object), points, errors)


def _parse_bulk(body: str, stamps: _Stamps, default_ts: int) -> ParsedBatch | None:
    """The whole batch at C speed (pandas' CSV reader, vectorised conversions) when it is plain:
    no escapes, strings or comments, only numeric fields. None when anything is unusual: the
    line-by-line parser then handles it, with its exact errors."""
    if not body or "\\" in body or '"' in body or "#" in body:
        return None
    import pandas as pd

    lines = _read_lines(body)
    if lines is None:
        return None
    codes, unique_keys = pd.factorize(lines["key"])
    keys = unique_keys.tolist()
    texts = lines["fields"].tolist()
    joined = "\n".join(texts)
    found = None if _float_stamps(body, joined, keys, codes) else _series_heads(keys, codes)
    line_ts = None if found is None else _line_stamps(lines["ts"], stamps, default_ts)
    if found is None or line_ts is None:
        return None
    codes, heads = found
    if "," in joined:  # several fields on a line: one a line, so C reads the pairs too
        per_line = np.fromiter((text.count(",") + 1 for text in texts), np.int64, len(texts))
        joined = joined.replace(",", "\n")
    else:
        per_line = np.ones(len(texts), dtype=np.int64)
    lowered = joined.lower()
    if "_" in joined or "nan" in lowered or "inf" in lowered:
        return None
    pairs = _pairs(joined, float)  # all plain numbers: the common case, parsed in C
    if pairs is None:
        pairs = _pairs(joined, str)
        if pairs is None or (pairs["value"] == "").any():
            return None
    if len(pairs) != int(per_line.sum()) or (pairs["name"] == "").any():
        return None
    values = _bulk_values(pairs["value"]) if pairs["value"].dtype.kind != "f" else \
        pairs["value"].to_numpy(dtype=np.float64, copy=True)
    if values is None or not np.isfinite(values).all():
        return None
    line_of = np.repeat(np.arange(len(lines)), per_line)
    field_codes, unique_names = pd.factorize(pairs["name"])
    return _batch(codes, heads, line_of, field_codes, unique_names.tolist(), line_ts[line_of],
                  values)


def _parse_scanned(raw: bytes, stamps: _Stamps, default_ts: int
                   ) -> tuple[ParsedBatch, Scanned] | None:
    """The whole batch read by one compiled pass (`tsq.linescan`) when it is plain, and its
    lines as the pass found them; None when it is not, or a timestamp is out of range: the
    other parsers then take it."""
    from tsq.linescan import scan

    scanned = scan(raw)
    if scanned is None:
        return None
    found = _series_heads(scanned.keys(raw), scanned.key_code)
    if found is None:
        return None
    line_stamp = scanned.stamp
    if ((line_stamp < stamps.low) | (line_stamp > stamps.high)).any():
        return None
    line_ts = line_stamp * stamps.scale
    line_ts[~scanned.has_stamp] = default_ts
    return _batch(*found, scanned.field_line, scanned.name_code, scanned.names(raw),
                  line_ts[scanned.field_line], scanned.value), scanned


def _batch(codes: npt.NDArray[np.int64], heads: list[Head], line_of: npt.NDArray[np.int64],
           field_codes: npt.NDArray[np.intp], field_names: list[Any], ts: npt.NDArray[np.int64],
           values: npt.NDArray[np.float64]) -> ParsedBatch:
    """The parsed batch from each line's series head (`heads[codes[line]]`) and each field's
    line, name (`field_names[field_codes[field]]`), time and value."""
    series_code = codes[line_of] * len(field_names) + field_codes
    used, inverse, counts = _series_codes(series_code, len(heads) * len(field_names))
    # grouped by series, each series' points in the order written (a stable sort, a radix
    # sort on 16 bits); `normalized` then sorts a series by time only if it is not already
    order = np.argsort(inverse.astype(np.uint16) if len(used) <= 1 << 16 else inverse,
                       kind="stable")
    names, labels = [], []
    for code in used.tolist():
        measurement, tags = heads[code // len(field_names)]
        field_name = str(field_names[code % len(field_names)])
        names.append(measurement if field_name == "value" else f"{measurement}.{field_name}")
        labels.append(dict(tags))
    numbers = SeriesSet(tuple(names), tuple(labels), ts[order], values[order],
                        np.concatenate(([0], np.cumsum(counts))).astype(np.int64)).normalized()
    return ParsedBatch(numbers, SeriesSet.empty(), len(values))


# Series codes are counted in an array as long as the codes' range while it is at most this many
# times the points: a batch of many keys and many field names sorts its codes instead
CODES_PER_POINT = 4


def _series_codes(series_code: npt.NDArray[np.int64], span: int
                  ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The distinct codes (of `span` possible ones) in order, each point's rank among them,
    and each one's number of points."""
    if span > CODES_PER_POINT * len(series_code) + 1024:
        used, inverse, counts = np.unique(series_code, return_inverse=True, return_counts=True)
        return used, inverse, counts
    per_code = np.bincount(series_code, minlength=span)
    used = np.flatnonzero(per_code)
    rank = np.zeros(span, np.int64)
    rank[used] = np.arange(len(used))
    return used, rank[series_code], per_code[used]


def _series_heads(keys: list[str], codes: npt.NDArray[np.intp]
                  ) -> tuple[npt.NDArray[np.int64], list[Head]] | None:
    """Each line's series and the head of each series, from the series keys of the lines
    (`keys[codes[line]]`): keys that differ only in the order of their tags are one series.
    None when a key is bad."""
    series_of: dict[Head, int] = {}
    try:
        of_key = np.fromiter((series_of.setdefault(_HEADS.get(key) or _head(key),
                                                   len(series_of)) for key in keys),
                             np.int64, len(keys))
    except _LineError:
        return None
    return of_key[codes], list(series_of)


def _read_lines(body: str) -> Any:
    """The lines as a frame of key, fields and timestamp (Int64, NA where absent); None when
    they are not all of that shape."""
    import pandas as pd

    try:  # a stamp like 1.5 among integers makes pandas cast NaN: no warning, it gives up
        columns: dict[str, Any] = {"key": str, "fields": str, "ts": "Int64"}
        with np.errstate(invalid="ignore"):
            lines = pd.read_csv(io.StringIO(body), sep=" ", header=None,
                                names=["key", "fields", "ts"], dtype=columns,
                                quoting=csv.QUOTE_NONE, keep_default_na=False,
                                na_values={"ts": [""]}, engine="c", skip_blank_lines=True)
    # a stamp beyond int64 overflows, and one like 1.5 is a TypeError to the Int64 column
    except (ValueError, OverflowError, TypeError, pd.errors.ParserError):
        return None
    if lines.empty or (lines["key"] == "").any() or (lines["fields"] == "").any():
        return None
    return lines


def _line_stamps(column: Any, stamps: _Stamps, default_ts: int) -> npt.NDArray[np.int64] | None:
    """Each line's time in ns (the request's time where it has none); None if one is out of
    range, checked before scaling, which would wrap around int64."""
    missing = column.isna().to_numpy()
    line_ts: npt.NDArray[np.int64] = column.to_numpy(dtype=np.int64, na_value=0)
    if ((line_ts < stamps.low) | (line_ts > stamps.high)).any():
        return None
    line_ts *= stamps.scale
    line_ts[missing] = default_ts
    return line_ts


def _float_stamps(body: str, fields: str, keys: list[str], codes: npt.NDArray[np.intp]
                  ) -> bool:
    """Whether a timestamp is written like a float (1e3, 1.0): pandas reads it as the integer
    it equals, while a timestamp is digits only (InfluxDB's rule, and the line parser's).
    Every character of a plain body is in a series key, the fields, a timestamp or a
    separator, so the marks counted in the body less those in the keys and fields are the
    timestamps' own: a few counts at C speed instead of a look at every timestamp."""
    uses = np.bincount(codes, minlength=len(keys))
    for mark in ".eE":
        in_keys = int(np.dot(np.fromiter((key.count(mark) for key in keys), np.int64,
                                         len(keys)), uses))
        if body.count(mark) != in_keys + fields.count(mark):
            return True
    return False


def _pairs(joined: str, value_type: type) -> Any:
    """`name=value` lines as a frame; None when they do not read as `value_type`."""
    import pandas as pd

    try:
        return pd.read_csv(io.StringIO(joined), sep="=", header=None, names=["name", "value"],
                           dtype={"name": str, "value": value_type}, quoting=csv.QUOTE_NONE,
                           keep_default_na=False, na_values={"value": []}, engine="c",
                           skip_blank_lines=False)
    except (ValueError, pd.errors.ParserError):
        return None


Head = tuple[str, tuple[tuple[str, str], ...]]
_HEADS: dict[str, Head] = {}  # series keys seen lately: most batches repeat the same series
MAX_HEADS = 100_000


def _head(key: str) -> Head:
    measurement, *tag_parts = key.split(",")
    if not measurement:
        raise _LineError("missing measurement")
    head = measurement, tuple(sorted(_pair(part, "tag") for part in tag_parts))
    if len(_HEADS) >= MAX_HEADS:
        _HEADS.clear()
    _HEADS[key] = head
    return head


def _bulk_values(texts: Any) -> npt.NDArray[np.float64] | None:
    """Field values as floats: numbers, 12i, 12u, booleans; None if any is something else."""
    import pandas as pd

    values: npt.NDArray[np.float64] = np.array(pd.to_numeric(texts, errors="coerce"),
                                               dtype=np.float64)
    odd = np.isnan(values)
    if odd.any():
        raw = texts.to_numpy()[odd]
        fixed = np.array([_field_value(text) if _plain_field(text) else np.nan for text in raw],
                         dtype=np.float64)
        if np.isnan(fixed).any():
            return None
        values[odd] = fixed
    return values if np.isfinite(values).all() else None


def _plain_field(text: str) -> bool:
    try:
        _field_value(text)
    except _LineError:
        return False
    return True


def _to_set(groups: dict[Any, tuple[list[int], list[Any]]], dtype: Any) -> SeriesSet:
    return SeriesSet.from_series(
        (name, dict(tags), np.asarray(stamps, dtype=np.int64), np.asarray(values, dtype=dtype))
        for (name, tags), (stamps, values) in groups.items())


def _excerpt(line: str) -> str:
    return repr(line if len(line) <= 60 else line[:57] + "...")


def _parse_plain(line: str, heads: dict[str, tuple[str, tuple[tuple[str, str], ...]]]
                 ) -> tuple[str, list[tuple[str, Any]], str | None]:
    """The common case, no escapes and no strings: plain splits, the series key parsed once."""
    parts = line.split()
    if len(parts) not in (2, 3):
        raise _LineError("expected `measurement[,tag=value…] field=value[,…] [timestamp]`")
    key = parts[0]
    if key not in heads:
        measurement, *tag_parts = key.split(",")
        if not measurement:
            raise _LineError("missing measurement")
        heads[key] = (measurement, tuple(sorted(_pair(part, "tag") for part in tag_parts)))
    fields = [(name, _field_value(text)) for name, text in
              (_pair(part, "field") for part in parts[1].split(","))]
    return key, fields, parts[2] if len(parts) == 3 else None


def _pair(text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise _LineError(f"bad {what} {text!r}; expected key=value")
    return name, value


def _parse_escaped(line: str) -> tuple[str, str, list[tuple[str, str]], list[tuple[str, Any]],
                                       str | None]:
    """The general case: a scanner that honours backslash escapes and quoted strings."""
    at = 0
    measurement, at = _scan(line, at, stops=", ")
    if not measurement:
        raise _LineError("missing measurement")
    tags: list[tuple[str, str]] = []
    while at < len(line) and line[at] == ",":
        key, at = _scan(line, at + 1, stops=",= ")
        if at >= len(line) or line[at] != "=" or not key:
            raise _LineError("bad tag; expected key=value")
        value, at = _scan(line, at + 1, stops=", ", escapes="=")
        if not value:
            raise _LineError(f"tag {key!r} has no value")
        tags.append((key, value))
    if at >= len(line) or line[at] != " ":
        raise _LineError("expected a space before the fields")
    while at < len(line) and line[at] == " ":
        at += 1
    fields: list[tuple[str, Any]] = []
    while True:
        key, at = _scan(line, at, stops=",= ")
        if at >= len(line) or line[at] != "=" or not key:
            raise _LineError("bad field; expected key=value")
        at += 1
        if at < len(line) and line[at] == '"':
            value, at = _quoted(line, at + 1)
            fields.append((key, value))
        else:
            text, at = _scan(line, at, stops=", ")
            fields.append((key, _field_value(text)))
        if at < len(line) and line[at] == ",":
            at += 1
            continue
        break
    rest = line[at:].strip()
    key = "\0".join([measurement, *(f"{k}={v}" for k, v in tags)])  # never a plain-line key
    return key, measurement, tags, fields, rest or None


def _scan(line: str, at: int, stops: str, escapes: str = "") -> tuple[str, int]:
    """Up to the first unescaped character of `stops`; `\\` before one of `stops`, `escapes`
    or a backslash stands for that character."""
    chars: list[str] = []
    escapable = stops + escapes + "\\"
    while at < len(line):
        char = line[at]
        if char == "\\" and at + 1 < len(line) and line[at + 1] in escapable:
            chars.append(line[at + 1])
            at += 2
            continue
        if char in stops:
            break
        chars.append(char)
        at += 1
    return "".join(chars), at


def _quoted(line: str, at: int) -> tuple[str, int]:
    chars: list[str] = []
    while at < len(line):
        char = line[at]
        if char == "\\" and at + 1 < len(line) and line[at + 1] in '"\\':
            chars.append(line[at + 1])
            at += 2
            continue
        if char == '"':
            return "".join(chars), at + 1
        chars.append(char)
        at += 1
    raise _LineError("unterminated string field")


def _field_value(text: str) -> float | str:
    if not text:
        raise _LineError("a field has no value")
    last = text[-1]
    if last in "iu" and _INTEGER.fullmatch(text[:-1]):
        number = int(text[:-1])
        if last == "u" and number < 0:
            raise _LineError(f"unsigned field value {text!r} is negative")
        return float(number)
    if text in TRUE:
        return 1.0
    if text in FALSE:
        return 0.0
    if _FLOAT.fullmatch(text):
        value = float(text)
        if math.isfinite(value):
            return value
    raise _LineError(f"bad field value {text!r}; expected a finite number, 12i, 12u, "
                     f'true/false or "a string"')

