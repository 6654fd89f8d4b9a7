"""Loop-file shorthands for the two steps every metrics pipeline has: rollups and retention.

`rollup: {from, to, span, aggregate, by}` becomes a TSL loop (the TSL is its handler source, so
`tsq show` and the API show exactly what runs). Each run reads its window, buckets it, and
replaces that window of the target series: running a window again never duplicates its output.

`retention: {select, keep, covered_by, lookback}` becomes a step the service runs itself: it
deletes raw points older than `keep`, but only where every rollup in `covered_by` (by default the
loops it runs `after:`) succeeded for the window; see `tsq.retention`.

Time is tsq's (docs/time.md): `from(start, end)` reads [start, end) and a bucket of span s
stamped t holds [t, t + s). So the run for the window [start, end) owns the raw points in
[start, end) and the buckets stamped in [start, end): consecutive windows share no point, and a
rollup of rollups (1m → 1h) reads exactly the buckets its own window's raw points went into.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tsq.errors import BadRequest
from tsq.selector import Selector, parse_selector

__all__ = ["GROUP_AGGREGATES", "RATIO_AGGREGATES", "ROLLUP_AGGREGATES", "RetentionSpec",
           "RollupSpec", "duration_ms", "rollup_tsl"]

SPAN = re.compile(r"([1-9]\d*)(ms|s|m|h|d|w)")
SPAN_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
# aggregate → how per-series buckets combine when grouped `by` labels (None: they cannot).
# A grouped `mean` is the mean of the series' means, as Prometheus' `avg by`; `mean_of_points` is
# the mean of all the group's points, as InfluxQL's `mean() … GROUP BY`.
ROLLUP_AGGREGATES: dict[str, str | None] = {
    "mean": "mean", "mean_of_points": "sum", "sum": "sum", "min": "min", "max": "max",
    "count": "sum", "first": None, "last": None, "median": None,
}
# Aggregates a group computes as a ratio of two bucketings, each summed over the group's series:
# a series' mean cannot be combined exactly (it has forgotten how many points it had), but its
# sum and its count can. Buckets without points are left out (InfluxDB's `fill(none)`): a fill
# of the sum and of the count apart would invent points.
RATIO_AGGREGATES: dict[str, tuple[str, str]] = {"mean_of_points": ("sum", "count")}
# The TSL aggregator of an aggregate of one series, where its name is not TSL's.
SERIES_AGGREGATORS = {"mean_of_points": "mean"}
GROUP_AGGREGATES = tuple(a for a, g in ROLLUP_AGGREGATES.items() if g)
TSL_OPERATORS = {"=": "=", "!=": "!=", "=~": "~", "!~": "!~"}


def duration_ms(text: str) -> int:
    """`90s`, `1m`, `1h`, `7d`, `2w` → milliseconds (BadRequest otherwise)."""
    match = SPAN.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise BadRequest(f'{text!r} is not a duration like "1m", "1h", "7d" or "2w"')
    return int(match.group(1)) * SPAN_MS[match.group(2)]


@dataclass(frozen=True)
class RollupSpec:
    source: str  # a selector: name{label="value", …}
    target: str  # the series name the rollup writes
    span: str
    aggregate: str = "mean"
    by: tuple[str, ...] | None = None  # None: one output series per input series
    late_within_ms: int | None = None  # `late: {within:}`: late points re-run windows this young
    offset_ms: int = 0  # `offset:`: each scheduled run waits this long after its window's end

    def selector(self) -> Selector:
        return parse_selector(self.source)


@dataclass(frozen=True)
class RetentionSpec:
    select: str  # the raw series to delete from
    keep_ms: int  # points younger than this stay
    covered_by: tuple[str, ...]  # the rollups that must have succeeded for a window
    lookback_ms: int  # how far before the horizon a run looks for covered windows


def rollup_tsl(spec: RollupSpec) -> str:
    """The TSL a rollup runs: read the window, bucket it, group it, name it."""
    selector = spec.selector()
    if selector.name is None:
        raise BadRequest(f"rollup `from: {spec.source}` needs a series name, like cpu or "
                         f'cpu{{dc="gra"}}')
    read = f"select({_quote(selector.name)})"
    if selector.matchers:
        wheres = ", ".join(_quote(f"{m.label}{TSL_OPERATORS[m.op]}{m.value}")
                           for m in selector.matchers)
        read += f".where({wheres})"
    read += ".from(start, end)"
    ratio = RATIO_AGGREGATES.get(spec.aggregate)
    if ratio is not None and spec.by is not None:
        numerator, denominator = (_bucketed(read, spec, part) for part in ratio)
        query = f"div(\n  {numerator},\n  {denominator}\n)"
    else:
        query = _bucketed(read, spec, SERIES_AGGREGATORS.get(spec.aggregate, spec.aggregate))
    by = f" by {', '.join(spec.by)}" if spec.by else (" over all series" if spec.by == ()
                                                          else "")
    header = (f"// rollup: {spec.source} → {spec.target}, {spec.span} {spec.aggregate}{by}; "
              f"each run replaces its window of {spec.target}\n")
    return f"{header}{query}.rename({_quote(spec.target)})\n"


def _bucketed(read: str, spec: RollupSpec, aggregator: str) -> str:
    """`read` bucketed with `aggregator`, then grouped as `spec.by` says."""
    fill = ', "none"' if spec.aggregate in RATIO_AGGREGATES else ""
    query = f"{read}.sampleBy({spec.span}, {aggregator}{fill})"
    if spec.by is not None:
        grouped = ROLLUP_AGGREGATES[spec.aggregate]
        labels = ", ".join(_quote(label) for label in spec.by)
        query += f".groupBy([{labels}], {grouped})" if spec.by else f".group({grouped})"
    return query


def spec_json(spec: RollupSpec | RetentionSpec) -> dict[str, Any]:
    """The shorthand as the loop spec keeps it."""
    if isinstance(spec, RollupSpec):
        found: dict[str, Any] = {"from": spec.source, "to": spec.target, "span": spec.span,
                                 "aggregate": spec.aggregate,
                                 "by": list(spec.by) if spec.by is not None else None}
        if spec.late_within_ms is not None:  # absent otherwise: older versions hash the same
            found["late_within_ms"] = spec.late_within_ms
        if spec.offset_ms:
            found["offset_ms"] = spec.offset_ms
        return found
    return {"select": spec.select, "keep_ms": spec.keep_ms, "covered_by": list(spec.covered_by),
            "lookback_ms": spec.lookback_ms}


def retention_from_json(data: dict[str, Any]) -> RetentionSpec:
    return RetentionSpec(str(data["select"]), int(data["keep_ms"]),
                         tuple(data["covered_by"]), int(data["lookback_ms"]))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
