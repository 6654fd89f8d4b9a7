"""The one way tsq reads a time written as text: RFC 3339, with a few forms people type.

Accepted: `2026-01-01T00:00:00Z`, an offset instead of `Z` (`+02:00`, or `+0200` as `date +%z`
prints it), a fraction of a second of up to nine digits (nanoseconds are kept by `parse_ns`),
`t`/`z` in lower case or a space instead of `T`, seconds left out (`2026-01-01T00:00`), and a
bare date (`2026-01-01`, midnight). A time without an offset is UTC: tsq has no local time zone,
so `2026-01-01T00:00:00` means `2026-01-01T00:00:00Z` everywhere (API fields, CLI options, TSL).

Everything else is refused, naming the field and giving an example of a right value, rather
than guessed: a time zone name (`CET` is several offsets), week or ordinal dates, the compact
form without separators, a bare number (seconds or milliseconds?), 24:00 or a leap second.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from tsq.errors import BadRequest

__all__ = ["EXAMPLE", "format_ms", "parse_ns", "parse_time", "time_field"]

EXAMPLE = "2026-01-01T00:00:00Z"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d\d-\d\d)"
    r"(?:[Tt ](?P<hour>\d\d):(?P<minute>\d\d)(?::(?P<second>\d\d)(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?P<zone>[Zz]|[+-]\d\d:?\d\d)?)?")


def parse_time(text: str, what: str) -> datetime:
    """An aware datetime (to the microsecond), or BadRequest naming `what`."""
    moment, _ = _parse(text, what)
    return moment


def parse_ns(text: str, what: str) -> int:
    """Epoch nanoseconds, every digit of the fraction kept, or BadRequest naming `what`."""
    moment, nanos = _parse(text, what)
    seconds = (moment.replace(microsecond=0) - _EPOCH) // timedelta(seconds=1)
    return seconds * 1_000_000_000 + nanos


def time_field(value: Any, what: str) -> datetime:
    """A JSON field that must hold a time as text (a number's unit would be a guess)."""
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be an ISO-8601 time string like {EXAMPLE}, "
                         f"not {orjson.dumps(value, default=repr).decode()[:40]}")
    return parse_time(value, what)


def _parse(text: str, what: str) -> tuple[datetime, int]:
    """(the instant, its nanoseconds within the second)."""
    found = _RFC3339.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise BadRequest(f"{what} {text!r} is not an ISO-8601 time like {EXAMPLE} "
                         f"(RFC 3339; without an offset it is UTC)")
    fraction = (found["fraction"] or "").ljust(9, "0")
    year, month, day = (int(part) for part in found["date"].split("-"))
    try:
        moment = datetime(year, month, day, int(found["hour"] or 0), int(found["minute"] or 0),
                          int(found["second"] or 0), int(fraction[:6]), _zone(found["zone"]))
    except ValueError as error:   # month 13, February 30, hour 24, second 60
        raise BadRequest(f"{what} {text!r} is not a valid time ({error}); write one like "
                         f"{EXAMPLE}") from None
    return moment, int(fraction)


def _zone(text: str | None) -> timezone:
    if text is None or text in "Zz":
        return UTC
    digits = text[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return timezone(-offset if text[0] == "-" else offset)


def format_ms(ms: int, timespec: str = "auto") -> str:
    """Epoch milliseconds as RFC 3339 in UTC with `Z`, as tsq writes times (`timespec` as
    datetime.isoformat takes it)."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
