"""TSL's `sampleBy` (and a group method right after it) as PromQL that Prometheus 2.42 answers
exactly as tsq's kernels would; the planning half of the Prometheus connector's pushdown, with
no I/O (the connector sends the queries and reads the windows this module names).

Why not `runtimes/tsl/promql.py`: that compiler reproduces the reference's PromQL byte for byte,
bugs included (docs/tsl.md §8); a pushdown must instead mean what tsq's kernels compute.

What a bucket is. tsq's bucket `t` holds the points in `[t, t + span)`. Prometheus keeps
milliseconds, and on 2.x a range selector `sel[r]` evaluated at `e` holds the samples in
`[e - r, e]`, both ends closed. So `fn(sel[span - 1ms])` evaluated at `e = t + span - 1ms` reads
exactly `[t, t + span)`, and `query_range` with `step = span` from the first whole bucket to the
last evaluates one bucket per step. Buckets cut by the query's range (its first and last, when
the range does not start or end on a bucket edge) are not whole: they are read raw and computed
by tsq.

What is exact, and how (tests/connectors/test_prometheus_pushdown.py checks each combination
against tsq's kernels on a real Prometheus, NaN points included):
- `mean`, `sum`, `min`, `max`, `count` of one series' bucket: `avg_over_time`, `sum_over_time`,
  `min_over_time`, `max_over_time`, `count_over_time`. tsq leaves NaN points out of a bucket;
  Prometheus keeps them. `avg_over_time` and `sum_over_time` then answer NaN, `min_over_time`
  and `max_over_time` skip NaN (as tsq does) and answer NaN only when every point is NaN;
  `count_over_time` counts NaN, so its answer cannot show one: it is sent as
  `count_over_time(r) + 0 * sum_over_time(r)`, NaN when a NaN point is in the bucket.
- Any answer that is NaN or infinite is not trusted: that bucket is read raw again and computed
  by tsq (for every series or group at that time). Infinite points are rare, and how Prometheus
  averages them is its own; a re-read costs a request, never exactness.
- A group (`groupBy(labels, agg)`, `groupWithout`, `group`) of the buckets: tsq reduces, at each
  bucket, the values of the series of a class, which is what `avg by`, `sum by`, `min by`,
  `max by` and `count by` do with the vector of a step. `avg` and `sum` spread a NaN of a
  series' bucket; `min`, `max` and `count` hide it, so they are sent with `+ 0 * sum by (…)`.
  Pushed only when the selector names one metric (PromQL drops the name; tsq's group keeps the
  name its series share), there are no fills (tsq fills each series before grouping), the
  labels are PromQL label names, and every matching series has the same label names with the
  grouping's kept labels sorting first: then tsq's class order (the order of each class' first
  series) is the order of the class labels, which is the order given back.
Anything else (other aggregators, fills under a group, right-closed buckets, an open range,
spans that are not whole milliseconds) is computed by tsq on the raw points.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tsq.kernels import Aggregator, Buckets, Fill, Grouping
from tsq.selector import NAME_LABEL

__all__ = ["GROUPED", "MAX_STEPS", "PUSHED", "Plan", "group_refusal", "local_windows",
           "plan", "query_text", "steps"]

MS = 1_000_000  # nanoseconds
# Prometheus refuses a query_range of more than 11,000 steps per series: longer ranges are
# asked in parts of this many steps.
MAX_STEPS = 10_000
# Reads of the buckets to recompute: one per run of adjacent buckets, but no more than this
# many (beyond it one read spans them all; it is still only the raw points of that span).
MAX_LOCAL_READS = 16

# tsq aggregator → the PromQL function over one series' bucket that equals it (NaN aside).
PUSHED = {"mean": "avg_over_time", "sum": "sum_over_time", "min": "min_over_time",
          "max": "max_over_time", "count": "count_over_time"}
# tsq aggregator of a group → the PromQL aggregation operator that equals it.
GROUPED = {"mean": "avg", "sum": "sum", "min": "min", "max": "max", "count": "count"}
HIDE_NAN_OVER_TIME = frozenset({"count"})  # its answer shows no NaN point of the bucket
HIDE_NAN_GROUPED = frozenset({"min", "max", "count"})  # its answer shows no NaN of a member
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Plan:
    """One pushed-down sampleBy (and group): the query, and the whole buckets it covers."""

    query: str
    span_ms: int
    first: int  # the first whole bucket's tick, ns
    last: int  # the last whole bucket's tick, ns (first > last: none is whole)
    edges: tuple[tuple[int, int], ...]  # [a, b) in ns: parts of buckets, computed by tsq

    @property
    def whole(self) -> int:
        return 0 if self.first > self.last else (self.last - self.first) // (self.span_ms * MS) + 1


def plan(promql: str | None, start: int | None, end: int | None, buckets: Buckets,
         aggregator: Aggregator, group: Grouping | None = None) -> Plan | str:
    """The pushdown of `bucketize(select(start, end), buckets, aggregator)` (then
    `group.apply`) on series `promql` selects, or why it cannot be pushed (a sentence)."""
    function = PUSHED.get(aggregator.name)
    if function is None:
        return f"Prometheus has no exact {aggregator.name} over time"
    if promql is None:
        return "no Prometheus series can match the selector"
    if start is None or end is None:
        return "the time range is open"
    if buckets.closed != "left" or buckets.label != "start":
        return "the buckets are closed on the right"
    if buckets.span % MS or buckets.anchor % MS or buckets.span < 2 * MS:
        return "the span or the grid is not whole milliseconds (Prometheus keeps milliseconds)"
    low, high = start, end
    if buckets.first is not None and buckets.last is not None:  # a fixed grid: points off it
        low, high = max(low, buckets.first), min(high, buckets.last + buckets.span)  # drop
    span = buckets.span
    first = buckets.anchor + -(-(low - buckets.anchor) // span) * span  # whole buckets only
    last = buckets.anchor + ((high - buckets.anchor) // span - 1) * span
    edges: tuple[tuple[int, int], ...]
    if first > last:
        edges = ((low, high),) if low < high else ()
    else:
        edges = tuple((a, b) for a, b in ((low, first), (last + span, high)) if a < b)
    return Plan(query_text(promql, span // MS, aggregator, group), span // MS, first, last, edges)


def query_text(promql: str, span_ms: int, aggregator: Aggregator,
               group: Grouping | None) -> str:
    """The PromQL of one step: a bucket of each series (and their groups)."""
    window = f"{promql}[{span_ms - 1}ms]"
    inner = f"{PUSHED[aggregator.name]}({window})"
    if aggregator.name in HIDE_NAN_OVER_TIME:
        inner = f"({inner} + 0 * sum_over_time({window}))"
    if group is None:
        return inner
    by = "" if group.labels is None else \
        f" {'without' if group.without else 'by'} ({', '.join(group.labels)})"
    outer = f"{GROUPED[group.aggregator.name]}{by}({inner})"
    if group.aggregator.name in HIDE_NAN_GROUPED:
        outer = f"{outer} + 0 * sum{by}({inner})"
    return outer


def group_refusal(name: str | None, fills: Sequence[Fill], group: Grouping,
                  described: Iterable[tuple[str, dict[str, str]]]) -> str | None:
    """Why `group` cannot be pushed after the sampleBy on these series (see the module's
    docstring), or None when PromQL's grouping is tsq's, order of the groups included."""
    if group.aggregator.name not in GROUPED:
        return f"Prometheus has no exact {group.aggregator.name} of a group"
    if name is None:
        return "the selector names no single metric (PromQL's groups keep no name)"
    if any(fill.policy != "none" for fill in fills):
        return "tsq fills each series before grouping"
    labels = group.labels or ()
    if any(not LABEL_NAME.fullmatch(label) or label == NAME_LABEL for label in labels):
        return "a grouping label is not a Prometheus label name"
    keys = {tuple(sorted(found)) for _, found in described}
    if len(keys) > 1:
        return "the series have different label names, so their groups' order is tsq's own"
    if keys and group.labels is not None:
        names = next(iter(keys))
        kept = [k for k in names if (k in labels) != group.without]
        if names[:len(kept)] != tuple(kept):
            return "the grouping's labels do not sort first, so the groups' order is tsq's own"
    return None


def steps(found: Plan) -> list[tuple[int, int]]:
    """The (first, last) evaluation times in ms of the query_range requests, each of at most
    MAX_STEPS steps: bucket t is evaluated at its last millisecond, t + span - 1 ms."""
    if found.whole == 0:
        return []
    span_ms = found.span_ms
    first_ms, last_ms = (found.first // MS + span_ms - 1, found.last // MS + span_ms - 1)
    return [(at, min(at + (MAX_STEPS - 1) * span_ms, last_ms))
            for at in range(first_ms, last_ms + 1, MAX_STEPS * span_ms)]


def local_windows(found: Plan, untrusted: Ints) -> list[tuple[int, int]]:
    """The windows [a, b) in ns to read raw and compute in tsq: the cut buckets at the range's
    edges, and the whole buckets whose answer was NaN or infinite (ticks `untrusted`), adjacent
    ones read together, in at most MAX_LOCAL_READS reads."""
    span = found.span_ms * MS
    windows = list(found.edges)
    ticks = np.unique(untrusted)
    if len(ticks):
        breaks = np.flatnonzero(np.diff(ticks) != span) + 1
        starts, ends = ticks[np.r_[0, breaks]], ticks[np.r_[breaks - 1, len(ticks) - 1]] + span
        runs = list(zip(starts.tolist(), ends.tolist(), strict=True))
        if len(runs) > MAX_LOCAL_READS:
            runs = [(runs[0][0], runs[-1][1])]
        windows.extend(runs)
    return sorted(windows)
