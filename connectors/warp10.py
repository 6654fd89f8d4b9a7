"""Warp 10 (2.x, 3.x) as a tsq connector, and tsq's own Warp-10-compatible API.

Reads are WarpScript sent to `/api/v0/exec`: `FETCH` for points, `FIND` for series; the answer
is the stack as JSON, each GTS `{c, l, a, v: [[tick, (lat, lon, elev,) value], …]}`. Writes are
the GTS input format (`tsq.gtsformat`) on `/api/v0/update`; deletes are `/api/v0/delete`. Class
names are tsq's series names, labels its labels.

How `[start, end)` (nanoseconds) becomes a FETCH: Warp 10 keeps microseconds (ticks), and
`[ token class labels end timespan ] FETCH` reads the ticks of `(end - timespan, end]`. The
first tick in the window is `first = ceil(start / 1 µs)`, the last `last = ceil(end / 1 µs) - 1`;
tsq asks for `end = last`, `timespan = last - first + 1`, and keeps exactly the points with
`start <= t < end` (a server that reads more than asked loses nothing, one that answers a point
on a boundary twice is not believed). Open bounds are the first and last ticks whose
nanoseconds fit an int64. A delete's `start` and `end` are inclusive ticks: `first` and `last`.

Selectors: Warp 10 has `=` (exact) and `~` (regular expression, the server's: Java's on Warp
10) and no negation. A matcher is sent only when it refuses "" (so it means the same whether a
server treats a missing label as "" or as no match); the others (`!=`, `!~`, `=""`, `=~".*"`)
are checked in tsq on what comes back, as is every matcher again. A delete of series that a
wider Warp 10 selector cannot name alone deletes them one by one, by their exact class and
labels, and refuses when that would also delete a series the selector does not match.

Tokens: `token` is read and write token both; `read_token` and `write_token` set either. They
travel in the script (read) and the `X-Warp10-Token` header (write), and never in a message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from tsq import explain
from tsq.connectors import http
from tsq.connectors.base import Capabilities, label_values
from tsq.connectors.http import HttpServer, shown
from tsq.errors import (
    ConnectorAuthError,
    ConnectorBadAnswer,
    ConnectorError,
    ConnectorQueryError,
    ConnectorUnavailable,
)
from tsq.gtsformat import NS_PER_TICK, encode, format_lines, format_selector
from tsq.selector import NAME_LABEL, Selector
from tsq.series import SeriesSet

__all__ = ["Warp10", "fetch_request", "warp10_selector"]

WRITE_BATCH = 50_000  # lines per /api/v0/update request
# The open bounds: the widest ticks whose nanoseconds, and those of the tick before the first
# (where tsq's own FETCH starts reading), fit an int64.
FIRST_TICK = -((2**63 - 1) // NS_PER_TICK) + 1
LAST_TICK = (2**63 - 2) // NS_PER_TICK
ERROR_HEADER = "X-Warp10-Error-Message"
ANY_CLASS = "~(?s).*"  # every class, names with a newline too
# How Warp 10 says a token was refused (with HTTP 500, as any failed script).
TOKEN_REFUSALS = ("invalid token", "token expired", "missing token", "token is missing")
Key = tuple[str, tuple[tuple[str, str], ...]]


def fetch_request(start: int | None, end: int | None) -> tuple[int, int] | None:
    """(last tick, timespan in ticks) of the FETCH that holds `[start, end)`, or None when no
    tick lies in it."""
    first = -(-start // NS_PER_TICK) if start is not None else FIRST_TICK
    last = -(-end // NS_PER_TICK) - 1 if end is not None else LAST_TICK
    first, last = max(first, FIRST_TICK), min(last, LAST_TICK)
    return (last, last - first + 1) if last >= first else None


def warp10_selector(selector: Selector) -> tuple[str, dict[str, str]]:
    """(class pattern, label patterns) of a Warp 10 selector matching at least what
    `selector` matches: `=` and `=~` matchers that refuse "", the first on each label."""
    cls = "=" + selector.name if selector.name is not None else ANY_CLASS
    labels: dict[str, str] = {}
    for matcher in selector.matchers:
        if matcher.op not in ("=", "=~") or matcher.matches(""):
            continue  # no Warp 10 selector means the same: tsq checks it
        pattern = ("=" if matcher.op == "=" else "~") + matcher.value
        if matcher.label == NAME_LABEL:
            cls = pattern if cls == ANY_CLASS else cls
        else:
            labels.setdefault(matcher.label, pattern)
    return cls, labels


def _script_string(text: str) -> str:
    """A WarpScript string literal of `text`: percent-encoded, which WarpScript decodes."""
    return "'" + encode(text) + "'"


def _selector_script(cls: str, labels: Mapping[str, str]) -> str:
    pairs = " ".join(f"{_script_string(k)} {_script_string(v)}" for k, v in labels.items())
    return f"{_script_string(cls)} {{ {pairs} }}"


class Warp10:
    capabilities = Capabilities()

    def __init__(self, url: str, *, read_token: str = "", write_token: str = "",
                 label: str = "warp10 connector", timeout_s: float = http.TIMEOUT_S) -> None:
        self._read_token = read_token
        self._write_token = write_token
        self._server = _Warp10Server(url, label, timeout_s=timeout_s,
                                     secrets=(read_token, write_token))
        self._request = self._server.request

    @classmethod
    def open(cls, config: Mapping[str, Any], data_dir: Path) -> Warp10:
        name = config.get("name")
        token = _text(config.get("token"))
        return cls(str(config["url"]),
                   read_token=_text(config.get("read_token")) or token,
                   write_token=_text(config.get("write_token")) or token,
                   label=f'warp10 connector "{name}"' if name else "warp10 connector")

    # -- the Connector protocol ------------------------------------------------------------

    def select(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> SeriesSet:
        window = fetch_request(start, end)
        if window is None:
            return SeriesSet.from_series([])
        last, span = window
        cls, labels = warp10_selector(selector)
        script = (f"[ {_script_string(self._read_token)} {_selector_script(cls, labels)} "
                  f"{last} {span} ] FETCH")
        low = start if start is not None else -(2**63)
        high = end if end is not None else 2**63 - 1
        found = []
        for name, tags, stamps, values in self._gts(script, f"FETCH {selector}"):
            keep = (stamps >= low) & (stamps < high)
            if keep.any() and selector.matches(name, tags):
                found.append((name, tags, stamps[keep], values[keep]))
        return SeriesSet.from_series(_joined(found))

    def write(self, series: SeriesSet) -> int:
        lines = list(format_lines(series))
        for first in range(0, len(lines), WRITE_BATCH):
            body = "\n".join(lines[first:first + WRITE_BATCH]) + "\n"
            self._request("POST", "/api/v0/update", what="update", content=body.encode(),
                          headers={"X-Warp10-Token": self._write_token,
                                   "Content-Type": "text/plain"})
        return len(lines)

    def delete(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> int:
        window = fetch_request(start, end)
        if window is None:
            return 0
        counted = self.select(selector, start, end).points
        if not counted:
            return 0
        cls, labels = warp10_selector(selector)
        wide = self._find(cls, labels, f"FIND {selector}")
        doomed = [key for key in wide if selector.matches(key[0], dict(key[1]))]
        if len(doomed) == len(wide):
            self._delete(format_selector(cls, labels), start, end, window)
            return counted
        for name, tags in doomed:
            kept = [other for other in wide if other not in doomed and other[0] == name
                    and set(tags) <= set(other[1])]
            if kept:
                raise ConnectorQueryError(
                    f"{self._where()} cannot delete {name}{dict(tags)} alone: Warp 10's "
                    f"selectors match every series with at least these labels, and "
                    f"{kept[0][0]}{dict(kept[0][1])}, which {selector} does not match, has them")
        for name, tags in doomed:
            exact = {key: "=" + value for key, value in tags}
            self._delete(format_selector("=" + name, exact), start, end, window)
        return counted

    def names(self) -> list[str]:
        return sorted({name for name, _ in self._find(ANY_CLASS, {}, "names")})

    def labels(self, selector: Selector | None = None) -> dict[str, list[str]]:
        return label_values(self.describe(selector or Selector()))

    def describe(self, selector: Selector) -> list[tuple[str, dict[str, str]]]:
        cls, labels = warp10_selector(selector)
        found = self._find(cls, labels, f"FIND {selector}")
        return [(name, dict(tags)) for name, tags in found if selector.matches(name, dict(tags))]

    def close(self) -> None:
        self._server.close()

    # -- requests ----------------------------------------------------------------------------

    def _find(self, cls: str, labels: Mapping[str, str], what: str) -> list[Key]:
        """The (class, labels) of the series Warp 10's selector matches, sorted."""
        script = f"[ {_script_string(self._read_token)} {_selector_script(cls, labels)} ] FIND"
        return sorted({(name, tuple(sorted(tags.items())))
                       for name, tags, _, _ in self._gts(script, what)})

    def _delete(self, text: str, start: int | None, end: int | None,
                window: tuple[int, int]) -> None:
        params: dict[str, str] = {"selector": text}
        if start is None and end is None:
            params["deleteall"] = ""
        else:
            last, span = window
            params |= {"start": str(last - span + 1), "end": str(last)}
        self._request("GET", "/api/v0/delete", what=f"delete {text}", params=params,
                      headers={"X-Warp10-Token": self._write_token})

    def _gts(self, script: str, what: str
             ) -> Iterator[tuple[str, dict[str, str], Any, Any]]:
        """(class, labels, times in ns, values) of each GTS the script leaves on top."""
        explain.note(self._where(), what)
        answer = self._request("POST", "/api/v0/exec", what=what, retry=True,
                               content=script.encode(),
                               # Warp 10 reads the script's own token; a tsq server asks for
                               # the header as its other Warp 10 endpoints do
                               headers={"Content-Type": "text/plain",
                                        "X-Warp10-Token": self._read_token})
        stack = _loads(answer.content)
        if not isinstance(stack, list) or not stack or not isinstance(stack[0], list):
            raise self._bad_answer(what, "not a stack with a list of GTS on top")
        for gts in stack[0]:
            yield self._one(gts, what)

    def _one(self, gts: Any, what: str) -> tuple[str, dict[str, str], Any, Any]:
        try:
            name, labels = str(gts["c"]), {str(k): str(v) for k, v in (gts["l"] or {}).items()}
            points = gts.get("v") or []
            stamps = np.array([int(p[0]) for p in points], np.int64) * NS_PER_TICK
            values = _values([p[-1] for p in points])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise self._bad_answer(what, f"a GTS without its class, labels or values ({exc})") \
                from None
        return name, {k: v for k, v in labels.items() if v != ""}, stamps, values

    def _bad_answer(self, what: str, why: str) -> ConnectorBadAnswer:
        return ConnectorBadAnswer(f"{self._where()} answered {shown(what)} with something "
                                  f"that is not Warp 10's JSON stack: {why}")

    def _where(self) -> str:
        return self._server.where


class _Warp10Server(HttpServer):
    """Warp 10 answers a script it refused with HTTP 500 and its error in a header: not a
    server that is down, and not worth another try."""

    def status_error(self, answer: httpx.Response, what: str) -> ConnectorError:
        refused = answer.headers.get(ERROR_HEADER)
        detail = self.scrub(refused or answer.text.strip()[:500])
        kind: Callable[[str], ConnectorError]
        if answer.status_code in (401, 403) or any(words in detail.lower()
                                                   for words in TOKEN_REFUSALS):
            kind = ConnectorAuthError
        elif refused is not None or answer.status_code < 500:
            kind = ConnectorQueryError
        else:
            kind = ConnectorUnavailable
        return kind(f"{what} with HTTP {answer.status_code}: {detail}")


# -- helpers -------------------------------------------------------------------------------------


def _loads(content: bytes) -> Any:
    """Warp 10's JSON; it writes NaN and infinities bare (tsq writes null), which orjson
    refuses and the standard library reads."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        try:
            return json.loads(content)
        except ValueError:
            return None


def _values(found: list[Any]) -> Any:
    """A GTS's values: numbers and booleans as doubles (null: NaN), or strings."""
    if any(isinstance(value, str) for value in found):
        return np.array([str(value) for value in found], dtype=object)
    return np.array([np.nan if value is None else float(value) for value in found], np.float64)


def _joined(found: list[tuple[str, dict[str, str], Any, Any]]
            ) -> list[tuple[str, dict[str, str], Any, Any]]:
    """One entry per series, in (name, labels) order: a server may split a series in parts."""
    parts: dict[Key, list[tuple[Any, Any]]] = {}
    for name, labels, stamps, values in found:
        parts.setdefault((name, tuple(sorted(labels.items()))), []).append((stamps, values))
    return [(name, dict(key), np.concatenate([p[0] for p in pieces]),
             np.concatenate([p[1] for p in pieces])) for (name, key), pieces in sorted(
                 parts.items())]


def _text(value: Any) -> str:
    return "" if value is None else str(value)
