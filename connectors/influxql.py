"""InfluxQL text from tsq's values: every identifier, string and regular expression quoted and
escaped, so no name or label value a user writes can change a query's meaning.

Quoting follows InfluxQL's scanner: identifiers in double quotes (`\\"` and `\\\\` inside),
strings in single quotes (`\\'` and `\\\\`), regular expressions between slashes (`\\/`).
A tsq selector's matchers become a WHERE clause with the same meaning: `=~` matches the whole
value (anchored, as PromQL and tsq do), and a missing tag equals "" on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence

from tsq.selector import NAME_LABEL, Matcher

__all__ = ["ident", "regex", "string", "tag_conditions", "time_conditions", "where"]


def ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def regex(pattern: str) -> str:
    """A whole-value match of `pattern`, as an InfluxQL regular expression literal."""
    return "/^(?:" + pattern.replace("/", "\\/") + ")$/"


def tag_conditions(matchers: Sequence[Matcher]) -> list[str]:
    """One condition per label matcher (the name's matchers are the caller's business)."""
    conditions = []
    for matcher in matchers:
        if matcher.label == NAME_LABEL:
            continue
        literal = regex(matcher.value) if matcher.op in ("=~", "!~") else string(matcher.value)
        conditions.append(f"{ident(matcher.label)} {matcher.op} {literal}")
    return conditions


def time_conditions(start: int | None, end: int | None) -> list[str]:
    """`[start, end)` in epoch nanoseconds (InfluxQL reads a bare integer as nanoseconds)."""
    conditions = []
    if start is not None:
        conditions.append(f"time >= {int(start)}")
    if end is not None:
        conditions.append(f"time < {int(end)}")
    return conditions


def where(conditions: Sequence[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""
