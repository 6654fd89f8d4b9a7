"""Warp 10's GTS input format and text selectors, both ways: what `/api/v0/update` and
`/api/v0/delete` take, written by the `warp10` connector and read by tsq's own endpoints.

A line is `TS/LAT:LON/ELEV CLASS{LABELS} VALUE` (`TS` in microseconds; empty: now), or
`=TS/LAT:LON/ELEV VALUE` for one more point of the line before's series. Class names, label
names and label values are percent-encoded (UTF-8; Warp 10 reads `+` as `+`, not a space), so
`{ } , = %` and spaces in them stay data. A value is a LONG (`12`, `0x1f`), a DOUBLE (`1.5`,
`NaN`, `Infinity`), a BOOLEAN (`T`, `F`, `true`, `false`) or a STRING (`'…'` or `"…"`,
percent-encoded inside the quotes). tsq keeps no locations: latitude, longitude and elevation
are read and dropped. A selector is `CLASS{LABEL=VALUE,LABEL~REGEX}`, each part percent-encoded,
the class `=exact`, `~regex` or bare (exact).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from tsq.errors import BadRequest
from tsq.selector import NAME_LABEL, Matcher, Selector
from tsq.series import SeriesSet

__all__ = ["NS_PER_TICK", "encode", "format_lines", "format_selector", "parse_selector",
           "parse_update", "series_key", "string_value", "tick_range"]

NS_PER_TICK = 1_000  # Warp 10's default time unit is the microsecond
MAX_ERRORS = 5  # bad lines named in an error
_BOOLEANS = {"t": 1.0, "true": 1.0, "f": 0.0, "false": 0.0}
_LABEL_PART = re.compile(r"([^=~]*)([=~])(.*)", re.DOTALL)


def encode(text: str) -> str:
    """`text` percent-encoded, every character but letters, digits and `_.-~` (URL-safe)."""
    return quote(text, safe="")


def string_value(text: str) -> str:
    return "'" + encode(text) + "'"


def series_key(name: str, labels: Mapping[str, str]) -> str:
    """`class{label=value,…}` of the input format; labels whose value is "" are left out (in
    tsq a missing label equals "")."""
    inner = ",".join(f"{encode(k)}={encode(v)}" for k, v in sorted(labels.items()) if v != "")
    return f"{encode(name)}{{{inner}}}"


def format_lines(series: SeriesSet) -> Iterator[str]:
    """Every point as an input-format line; times are cut to the microsecond."""
    for one in series:
        key = series_key(one.name, dict(one.labels))
        ticks = (np.asarray(one.timestamps, np.int64) // NS_PER_TICK).tolist()
        for tick, text in zip(ticks, _value_texts(one.values), strict=True):
            yield f"{tick}// {key} {text}"


def _value_texts(values: Any) -> list[str]:
    if values.dtype.kind in "fiub":
        doubles = np.asarray(values, np.float64)
        texts: list[str] = doubles.astype(str).tolist()  # shortest repr, with '.' or 'e'
        for i in np.flatnonzero(~np.isfinite(doubles)).tolist():
            texts[i] = _non_finite(float(doubles[i]))
        return texts
    # Object values: a set holding string series holds its numeric ones' values as objects too.
    return [string_value(value) if isinstance(value, str) else _value_texts(np.array([value]))[0]
            for value in values.tolist()]


def _non_finite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def parse_update(text: str, now_us: int) -> tuple[SeriesSet, SeriesSet]:
    """(numeric series, string series) of an input-format body, times in ns. Every bad line
    (up to MAX_ERRORS are named) makes it a BadRequest: nothing of a bad body is stored."""
    numbers: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[list[int], list[Any]]] = {}
    strings: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[list[int], list[Any]]] = {}
    errors: list[str] = []
    key: tuple[str, tuple[tuple[str, str], ...]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            tick, key, value = _parse_line(line, key, now_us)
        except BadRequest as error:
            errors.append(f"line {number}: {error.message}")
            continue
        slot = (strings if isinstance(value, str) else numbers).setdefault(key, ([], []))
        slot[0].append(tick * NS_PER_TICK)
        slot[1].append(value)
    if errors:
        more = f" (and {len(errors) - MAX_ERRORS} more)" if len(errors) > MAX_ERRORS else ""
        raise BadRequest("nothing was stored: " + "; ".join(errors[:MAX_ERRORS]) + more +
                         "; a line is TS/LAT:LON/ELEV CLASS{LABEL=VALUE,…} VALUE")
    return _series(numbers, np.float64), _series(strings, object)


def _series(found: Mapping[tuple[str, tuple[tuple[str, str], ...]], tuple[list[int], list[Any]]],
            dtype: Any) -> SeriesSet:
    return SeriesSet.from_series(
        [(name, dict(labels), np.array(ticks, np.int64), np.array(values, dtype=dtype))
         for (name, labels), (ticks, values) in found.items()])


def _parse_line(line: str, previous: tuple[str, tuple[tuple[str, str], ...]] | None,
                now_us: int) -> tuple[int, tuple[str, tuple[tuple[str, str], ...]], Any]:
    head, _, rest = line.partition(" ")
    if head.startswith("="):  # one more point of the series before
        if previous is None:
            raise BadRequest("a line starting with '=' continues a series, and none came before")
        return _tick(head[1:], now_us), previous, _value(rest.strip())
    key_text, _, value = rest.strip().partition(" ")
    name, labels = _key(key_text)
    return _tick(head, now_us), (name, tuple(sorted(labels.items()))), _value(value.strip())


def _tick(head: str, now_us: int) -> int:
    parts = head.split("/")
    if len(parts) != 3:
        raise BadRequest(f"{head!r} is not TS/LAT:LON/ELEV (each part may be empty)")
    if not parts[0]:
        return now_us
    try:
        return int(parts[0])
    except ValueError:
        raise BadRequest(f"the timestamp {parts[0]!r} is not a LONG (microseconds)") from None


def _key(text: str) -> tuple[str, dict[str, str]]:
    brace = text.find("{")
    if brace < 0 or not text.endswith("}"):
        raise BadRequest(f"{text!r} is not CLASS{{LABELS}}")
    name = _decoded(text[:brace])
    if not name:
        raise BadRequest("a series needs a class name")
    labels: dict[str, str] = {}
    for part in filter(None, text[brace + 1:-1].split(",")):
        label, equals, value = part.partition("=")
        if not equals or not label:
            raise BadRequest(f"the label {part!r} is not NAME=VALUE")
        labels[_decoded(label)] = _decoded(value)
    return name, {k: v for k, v in labels.items() if v != ""}


def _value(text: str) -> Any:
    if not text:
        raise BadRequest("the line has no value")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return _decoded(text[1:-1])
    if text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    try:
        return float(int(text, 16) if text.lower().startswith("0x") else int(text))
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise BadRequest(f"the value {text!r} is not a LONG, DOUBLE, BOOLEAN or quoted "
                         f"STRING") from None


def _decoded(text: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(f"{text!r} is not percent-encoded UTF-8") from None


# -- selectors ------------------------------------------------------------------------------------


def format_selector(cls: str, labels: Mapping[str, str]) -> str:
    """The text form of Warp 10's (class pattern, label patterns): `=cpu{dc=gra,host~web.*}`,
    with the class's and each label's `=`/`~` kept and the rest percent-encoded."""
    inner = ",".join(f"{encode(key)}{pattern[0]}{encode(pattern[1:])}"
                     for key, pattern in labels.items())
    return f"{cls[0]}{encode(cls[1:])}{{{inner}}}"


def parse_selector(text: str) -> Selector:
    """`class{label=value,label~regex}` (parts percent-encoded) as a tsq Selector."""
    brace = text.find("{")
    if brace < 0 or not text.endswith("}"):
        raise BadRequest(f"bad selector {text!r}; write class{{label=value,label~regex}}, "
                         f"e.g. '~cpu.*{{dc=gra}}'")
    cls = text[:brace]
    matchers = []
    name: str | None = None
    if cls.startswith("~"):
        matchers.append(Matcher.of(NAME_LABEL, "=~", _decoded(cls[1:])))
    else:
        name = _decoded(cls[1:] if cls.startswith("=") else cls)
    for part in filter(None, text[brace + 1:-1].split(",")):
        found = _LABEL_PART.fullmatch(part)
        if not found or not found.group(1):
            raise BadRequest(f"bad label selector {part!r} in {text!r}; write label=value or "
                             f"label~regex")
        label, op, value = found.groups()
        matchers.append(Matcher.of(_decoded(label), "=~" if op == "~" else "=", _decoded(value)))
    return Selector(name, tuple(matchers))


def tick_range(start: int, end: int) -> tuple[int, int]:
    """The ns range `[low, high)` of Warp 10's inclusive tick range `[start, end]`, as FETCH
    reads it on tsq's VM: a tick is its first nanosecond."""
    return start * NS_PER_TICK, end * NS_PER_TICK + 1
