"""Differential tests of native TSL evaluation against a real Prometheus 2.42.

The same deterministic points go into tsq's embedded store and, through promtool, into a
throwaway Prometheus (benchmarks/prometheus.py). Each TSL query is evaluated natively
(`tsl.evaluate`), its PromQL counterpart is asked of Prometheus, and the two answers must agree
series by series (matched on their labels, less `__name__`, which Prometheus drops after
functions and aggregations), with the same timestamps exactly and the same values (rtol 1e-9).

Two families of queries:
- every conformance case of tests/conformance/tsl_promql.jsonl that compiles to PromQL,
  sent as `tsl.compile(…, "promql")` gives it. Where the compiled query cannot mean what the TSL
  means (a reference bug, or a PromQL function whose semantics differ), the case is skipped with
  the precise reason;
- rollups written here, where TSL and PromQL semantics overlap exactly.

Why the answers can agree at all: every series has a point every 10 s, 5 s off the 10 s marks
(…:05, …:15), with no gap, so no point sits on a bucket's or a range's boundary, where tsq and
Prometheus close on different sides (docs/time.md). A `sampleBy(1m, last)` bucket is [t, t + 1m),
labelled t by its start (tsq's time model); its last point is at t + 55 s, which a PromQL instant
selector at step t + 1m takes (the newest sample at or before the step, within the 5-minute
lookback), and `[1m]` at t + 1m holds exactly the bucket's points. So the native ticks are
compared one span later (`Check.shift`): the label Prometheus gives the same bucket is its end.
Gaps would make the two differ (TSL fills empty buckets by interpolation, PromQL carries the last
sample forward for 5 minutes), so the data has none.

The conformance cases the WarpScript differential (tests/runtimes/ws/test_tsl_differential.py)
shares with this module are also run as the reference's WarpScript on tsq's VM, over the same
points, and compared with Prometheus' answer (test_warpscript_agrees_with_prometheus): with the
native comparison and that one, TSL native, TSL→WarpScript and TSL→PromQL agree three ways.

Native `last(d)` reads [now - d, now): its buckets end at now - d + step … now, while a PromQL
range query from now - d also evaluates at now - d itself, over data before the native range.
The comparison drops that one leading step from Prometheus' answer (`after`), and nothing else;
the few rollups whose two ranges only partly overlap (`shift`, a `now` off the minute) are
compared on the overlap, each saying why. tsq disagreements found here are strict xfails naming
the bug.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from benchmarks.prometheus import available, prometheus, query, query_range, to_openmetrics
from tests.conftest import CONFORMANCE, summary_counts
from tests.runtimes.ws.test_tsl_differential import COMPILED, warpscript_answer
from tsq import tsl
from tsq.connectors.embedded import EmbeddedStore
from tsq.series import SeriesSet

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="Prometheus 2.42 is not installed here "
                                               "(apt-get install prometheus; .ci/run installs it)"),
]

PROMQL_CASES = CONFORMANCE / "tsl_promql.jsonl"
NOW = datetime(2021, 1, 1, tzinfo=UTC)  # the conformance cases' now
NOW_S = 1_609_459_200
NS = 1_000_000_000
HOUR = 3600
# One point every 10 s over the two hours before now, 5 s off the 10 s marks, so that none is on
# a boundary: now - 2h + 5 s, …, now - 5 s.
STAMPS = np.arange(NOW_S - 2 * HOUR + 5, NOW_S, 10, dtype=np.int64)
HOST_DC = [("web01", "lga"), ("web01", "gra"), ("web02", "lga"), ("web02", "gra"),
           ("web03", "lga"), ("web03", "gra")]
# The operands of the conformance operator cases (`add(select('foo')…, select('bar')…)`, and
# `.on("host")`): one series per host on each side, with the same labels on both, so that
# matching on all labels and `on(host)` are both one to one in PromQL (two series per host
# would make `foo + on(host) bar` a many-to-many match, which Prometheus refuses).
ONE_PER_HOST = [("web01", "lga"), ("web02", "gra"), ("web03", "lga")]

Key = tuple[tuple[str, str], ...]
Answer = dict[Key, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]


def _conformance() -> list[dict[str, Any]]:
    cases = [json.loads(line) for line in PROMQL_CASES.read_text().splitlines() if line.strip()]
    return [case for case in cases if case.get("promql")]


CASES = _conformance()


def _selected_names(cases: Sequence[Mapping[str, Any]]) -> set[str]:
    names: set[str] = set()
    for case in cases:
        names.update(m.group(2) for m in re.finditer(r"select\(\s*(['\"])(.*?)\1", case["tsl"]))
    return names


METRICS = sorted(_selected_names(CASES) | {"cpu", "sys.cpu.nice"})


def prom_name(name: str) -> str:
    """Prometheus metric names cannot hold dots (`sys.cpu.nice` is a parse error in PromQL and
    promtool refuses it), so dotted Warp 10 class names are stored and queried with underscores."""
    return name.replace(".", "_")


def to_prometheus_names(promql: str) -> str:
    for name in sorted(METRICS, key=len, reverse=True):
        if "." in name:
            promql = re.sub(re.escape(name) + r"(?![\w.:])", prom_name(name), promql)
    return promql


def dataset() -> list[tuple[str, dict[str, str], npt.NDArray[np.int64], npt.NDArray[Any]]]:
    """Deterministic series for every metric the queries select.

    - `sys.cpu.nice`: multiples of 0.5 from 0 to 4, so that `equal(2)` and the other comparisons
      with 2 keep some points and not others, and `round()` meets ties (x.5);
    - `foo`, `bar`: small integers 1-5, so `foo == bar` is sometimes true and `foo / bar` never
      divides by zero;
    - anything else (`cpu`): two decimals from 0 to 100.
    """
    rng = np.random.default_rng(20210101)
    rows = []
    for name in METRICS:
        pairs = ONE_PER_HOST if name in ("foo", "bar") else HOST_DC
        for host, dc in pairs:
            if name == "sys.cpu.nice":
                values = rng.integers(0, 9, len(STAMPS)) / 2
            elif name in ("foo", "bar"):
                values = rng.integers(1, 6, len(STAMPS)).astype(np.float64)
            else:
                values = np.round(rng.uniform(0, 100, len(STAMPS)), 2)
            rows.append((name, {"host": host, "dc": dc}, STAMPS, values))
    return rows


@dataclass
class Engines:
    base: str
    store: EmbeddedStore


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engines]:
    rows = dataset()
    assert len({prom_name(n) for n in METRICS}) == len(METRICS)
    store = EmbeddedStore(str(tmp_path_factory.mktemp("tsl-prom") / "points.duckdb"))
    store.write(SeriesSet.from_series([(name, labels, stamps * NS, values)
                                       for name, labels, stamps, values in rows]))
    text = to_openmetrics([(prom_name(name), labels, stamps, values)
                           for name, labels, stamps, values in rows])
    try:
        with prometheus(text) as base:
            yield Engines(base, store)
    finally:
        store.close()


# -- comparing ------------------------------------------------------------------------------

def _key(labels: Mapping[str, str]) -> Key:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def native_answer(source: str, store: EmbeddedStore, now: datetime = NOW) -> Answer:
    found: Answer = {}
    for series in tsl.evaluate(source, store, now=now):
        if len(series.timestamps) == 0:
            continue  # Prometheus leaves out a series with no point in the range
        key = _key(series.labels)
        assert key not in found, f"two native series with labels {dict(key)}"
        found[key] = (np.asarray(series.timestamps, np.int64),
                      np.asarray(series.values, np.float64))
    return found


def _ns(seconds: float | str) -> int:
    return round(float(seconds) * 1000) * 1_000_000  # Prometheus times are milliseconds


def prometheus_answer(base: str, request: Mapping[str, Any]) -> Answer:
    promql = to_prometheus_names(str(request["query"]))
    if request.get("instant_query"):
        result = query(base, promql, request["end"])
        rows = [(r["metric"], [r["value"]]) for r in result]
    else:
        result = query_range(base, promql, request["start"], request["end"], request["step"])
        rows = [(r["metric"], r["values"]) for r in result]
    found: Answer = {}
    for metric, points in rows:
        key = _key(metric)
        assert key not in found, f"two Prometheus series with labels {dict(key)}"
        found[key] = (np.array([_ns(t) for t, _ in points], np.int64),
                      np.array([float(v) for _, v in points], np.float64))
    return found


def _within(answer: Answer, after: int | None, until: int | None) -> Answer:
    out: Answer = {}
    for key, (stamps, values) in answer.items():
        keep = np.ones(len(stamps), dtype=bool)
        if after is not None:
            keep &= stamps > after
        if until is not None:
            keep &= stamps <= until
        if keep.any():
            out[key] = (stamps[keep], values[keep])
    return out


def assert_same(native: Answer, reference: Answer, *, what: str) -> None:
    assert reference, f"{what}: Prometheus has no data here, the comparison would be empty"
    assert sorted(native) == sorted(reference), f"{what}: different series"
    for key, (stamps, values) in reference.items():
        got_stamps, got_values = native[key]
        np.testing.assert_array_equal(got_stamps, stamps, err_msg=f"{what} {dict(key)} times")
        np.testing.assert_allclose(got_values, values, rtol=1e-9,
                                   err_msg=f"{what} {dict(key)} values")


@dataclass(frozen=True)
class Check:
    """A TSL query and the Prometheus request that must give the same answer.

    `shift` (seconds) is added to the native ticks: a native bucket is labelled by its start,
    and Prometheus answers for it at its end, a span later. `after`/`until` (epoch seconds)
    restrict both answers to (after, until], for queries whose ranges only overlap there;
    `scale` divides the native values (unit differences)."""

    tsl: str
    request: Mapping[str, Any]
    after: float | None = None
    until: float | None = None
    scale: float = 1.0
    now: datetime = NOW
    shift: float = 60.0


def run_check(engines: Engines, check: Check) -> None:
    native = native_answer(check.tsl, engines.store, check.now)
    native = {k: (t + round(check.shift * NS), v) for k, (t, v) in native.items()}
    if check.scale != 1.0:
        native = {k: (t, v / check.scale) for k, (t, v) in native.items()}
    reference = prometheus_answer(engines.base, check.request)
    after = None if check.after is None else round(check.after * NS)
    until = None if check.until is None else round(check.until * NS)
    assert_same(_within(native, after, until), _within(reference, after, until),
                what=check.tsl)


# -- the conformance cases ------------------------------------------------------------------

WRAP = "ovh/tsl:spec/doc.md:inline:"
_OPERATOR_FILTERS = (
    "semantics differ: PromQL `foo {op} bar` filters, keeping foo's value where the relation "
    "holds and no point elsewhere; TSL's {name}(a, b) is Warp 10's op.{w10}, true or false at "
    "every tick (tsq: 1 or 0). Compared with PromQL's `{op} bool` in "
    "test_operator_agrees_with_prometheus")
_TIME_PART = (
    "semantics differ: PromQL {fn}(v) reads each sample's value as a Unix time, TSL's {name}() "
    "(Warp 10's mapper.{name}) the tick's time. Compared with {fn}(timestamp(q)) in "
    "test_rollup_agrees_with_prometheus")
_SET_OPERATOR = (
    "semantics differ: PromQL `{op}` is a set operation on series (the left side's samples "
    "{what}), TSL's {op}(a, b) is Warp 10's op.{op}, a logical operator on the values at each "
    "tick (tsq: 1 or 0)")

# Cases whose compiled PromQL cannot say what the TSL says: skipped, with the reason.
CONFORMANCE_SKIPS: dict[str, str] = {
    **{f"{WRAP}{name}(select(...), select(...))": _OPERATOR_FILTERS.format(op=op, name=name,
                                                                           w10=w10)
       for name, op, w10 in [("equal", "==", "eq"), ("notEqual", "!=", "ne"),
                             ("greaterThan", ">", "gt"), ("greaterOrEqual", ">=", "ge")]},
    f"{WRAP}and(select(...), select(...))": _SET_OPERATOR.format(
        op="and", what="that have a match on the right"),
    f"{WRAP}or(select(...), select(...))": _SET_OPERATOR.format(
        op="or", what="and the right side's unmatched series"),
    **{f"{WRAP}.{name}()#promql-wrap": _TIME_PART.format(fn=fn, name=name)
       for name, fn in [("day", "day_of_month"), ("weekday", "day_of_week"), ("hour", "hour"),
                        ("minute", "minute"), ("month", "month"), ("year", "year")]},
    f"{WRAP}groupWithout(\"dc\", sum)#promql-wrap": (
        "reference bug: groupWithout(\"dc\", sum) compiles to `sum(q) by (dc)`; native "
        "evaluation groups without dc, as documented. Compared with `sum without (dc) (q)` in "
        "test_rollup_agrees_with_prometheus"),
    f"{WRAP}groupBy(\"dc\", percentile, 42)#promql-wrap": (
        "reference bug: groupBy(\"dc\", percentile, 42) compiles to `quantile(0.42, q)`, losing "
        "the `by (dc)`; native evaluation keeps the classes. Compared with `quantile by (dc) "
        "(0.42, q)` in test_rollup_agrees_with_prometheus"),
    f"{WRAP}shift(1h).mean(5m)#promql-wrap": (
        "not comparable: TSL's shift(1h) moves the 1-minute samples of [now - 1h, now) an hour "
        "forward, to [now, now + 1h), where the range query [now - 1h, now] has no step (PromQL "
        "`offset` keeps the step times); and the TSL window then averages the 1-minute samples "
        "of [t - 5m, t], where avg_over_time(q[5m] offset 1h) averages the raw 10 s points. "
        "shift and windows are compared on their own in test_rollup_agrees_with_prometheus"),
}
# Cases the reference compiles to text Prometheus refuses: the refusal is checked, then skipped.
CONFORMANCE_REJECTED: dict[str, tuple[str, str]] = {
    f"{WRAP}.shift(2m)#promql-wrap": (
        "unexpected right parenthesis", "reference bug: a lone shift(2m) compiles to the "
        "unbalanced `q offset 2m)`, a PromQL parse error. The intended `q offset 2m` is compared "
        "in test_rollup_agrees_with_prometheus"),
    f"{WRAP}window(mean, 1m)#promql-wrap": (
        "missing unit character in duration", "reference bug: window(mean, 1m) drops the 1m "
        "(the second positional slot is the aggregator's parameter) and compiles to "
        "`avg_over_time(q[0])`, a PromQL parse error. Windows are compared in "
        "test_rollup_agrees_with_prometheus"),
    f"{WRAP}.resets()#promql-wrap": (
        "expected type range vector", "reference bug: resets() compiles to `resets(q)` on an "
        "instant vector, a PromQL type error; and PromQL's resets() counts counter resets, where "
        "TSL's (Warp 10's FALSE RESETS) removes them: no PromQL query says the same"),
    "ovh/tsl:spec/doc.md:L356": (
        "exceeded maximum resolution", "the range is from(1346846400000000, 1346847000006000): "
        "microseconds, 2012-09-05 natively, where neither engine has data; the reference copies "
        "the literals into PromQL as seconds (the year ~42 million, more steps than Prometheus "
        "allows). Also window(sum, 2m, 1m) loses its 2m (reference bug: sum_over_time(q[1m]))"),
}
# tsq's native evaluation disagrees where the semantics are the same: expected to fail until
# fixed (strict: a fix makes these fail, so that the mark gets removed).
# tsq disagreements found here become strict xfails naming the bug, until fixed.
CONFORMANCE_XFAILS: dict[str, str] = {}
CONFORMANCE_SKIPS[f"{WRAP}.timestamp()#promql-wrap"] = (
    "semantics differ: TSL's timestamp() gives the tick, a bucket's start; PromQL's the time of "
    "the sample a step takes, the bucket's last point (55 s later here, as no point is on a "
    "boundary). Compared with `timestamp(cpu) - 55` in test_rollup_agrees_with_prometheus")
# tsq's timestamp() gives epoch milliseconds (Warp 10's platform unit at OVH is microseconds,
# tsq chose ms, see tsq/kernels/maps.py time_part); PromQL's timestamp() gives seconds.
CONFORMANCE_SCALES: dict[str, float] = {}


def _case_param(case: dict[str, Any]) -> Any:
    source = case["source"]
    marks = []
    if source in CONFORMANCE_XFAILS:
        marks.append(pytest.mark.xfail(reason=CONFORMANCE_XFAILS[source], strict=True,
                                       raises=AssertionError))
    return pytest.param(case, id=source, marks=marks)


@pytest.mark.parametrize("case", [_case_param(c) for c in CASES])
def test_conformance_case_agrees_with_prometheus(engines: Engines, case: dict[str, Any]) -> None:
    source = case["source"]
    requests = tsl.compile(case["tsl"], "promql", now=NOW)
    assert isinstance(requests, list) and len(requests) == 1, "one statement, one request"
    [request] = requests
    if source in CONFORMANCE_SKIPS:
        pytest.skip(CONFORMANCE_SKIPS[source])
    if source in CONFORMANCE_REJECTED:
        refusal, reason = CONFORMANCE_REJECTED[source]
        with pytest.raises(RuntimeError, match=refusal):
            prometheus_answer(engines.base, request)
        pytest.skip(reason)
    # A range request covers [start, end]; native last(1h) reads [now - 1h, now), whose
    # 1-minute buckets end at now - 59m … now (every case samples by 1m: Check.shift's default).
    after = None if request["instant_query"] else float(request["start"])
    run_check(engines, Check(case["tsl"], request, after=after,
                             scale=CONFORMANCE_SCALES.get(source, 1.0)))


def test_every_classified_case_exists() -> None:
    """The tables above name real cases (a renamed source would silently compare nothing)."""
    assert CASES, f"no conformance cases in {PROMQL_CASES}"
    sources = {case["source"] for case in CASES}
    for table in (CONFORMANCE_SKIPS, CONFORMANCE_REJECTED, CONFORMANCE_XFAILS, CONFORMANCE_SCALES):
        assert set(table) <= sources, set(table) - sources


# -- Prometheus' own boundaries, measured --------------------------------------------------

def test_prometheus_range_selectors_are_closed_on_both_ends(engines: Engines) -> None:
    """In Prometheus 2.42 `x[1m]` at t holds the samples in [t - 1m, t], both ends included
    (Prometheus 3 made it (t - 1m, t]): 7 points of a 10 s series when t is on a sample. TSL's
    time windows (`window(agg, pre=1m)`) are [t - 1m, t] too, so `<agg>_over_time(x[d])` and
    `window(agg, pre=d)` agree exactly at a sample. Off the samples, as at every minute here,
    `[1m]` holds 6 points, those of the `sampleBy(1m, agg)` bucket [t - 1m, t)."""
    one = 'cpu{host="web01",dc="lga"}'
    last = NOW_S - 5   # the newest sample
    [closed] = query(engines.base, f"count_over_time({one}[1m])", last)
    [open_left] = query(engines.base, f"count_over_time({one}[59999ms])", last)
    [minute] = query(engines.base, f"count_over_time({one}[1m])", NOW_S)
    assert (closed["value"][1], open_left["value"][1], minute["value"][1]) == ("7", "6", "6")
    native = tsl.evaluate('select("cpu").where("host=web01", "dc=lga").last(2m)'
                          '.window(count, pre=1m)', engines.store, now=NOW)
    [series] = list(native)
    assert (series.timestamps[-1], series.values[-1]) == (last * NS, 7.0)
    sampled = tsl.evaluate('select("cpu").where("host=web01", "dc=lga").last(2m)'
                           '.sampleBy(1m, count)', engines.store, now=NOW)
    assert sampled[0].timestamps.tolist() == [(NOW_S - 120) * NS, (NOW_S - 60) * NS]
    assert sampled[0].values.tolist() == [6.0, 6.0]


# -- rollups where TSL and PromQL mean the same thing ------------------------------------------

SAMPLED = 'select("cpu").last(1h).sampleBy(1m, last)'
NICE = 'select("sys.cpu.nice").last(1h).sampleBy(1m, last)'
LAST_HOUR = {"start": NOW_S - HOUR, "end": NOW_S, "step": 60}


def _rollup(tsl_source: str, promql: str, *, id: str | None = None, marks: Any = (),
            **options: Any) -> Any:
    request = {**LAST_HOUR, "instant_query": False, "query": promql,
               **options.pop("request", {})}
    options.setdefault("after", float(request["start"]))
    return pytest.param(Check(tsl_source, request, **options), id=id or tsl_source, marks=marks)


def _sampled(method: str, promql: str, **options: Any) -> Any:
    return _rollup(f"{SAMPLED}{method}", promql, id=method or "sampleBy(1m, last)", **options)


def _window(method: str, promql: str) -> Any:
    """A window over the raw points: sampleBy(10s, last) keeps every point of a 10 s series,
    each in the bucket [t, t + 10 s) that starts 5 s before it (hence `shift=5`: the point's own
    time, where a range query whose steps sit on the points evaluates), and last(70m) gives
    every window of the compared hour its full 5 minutes."""
    return _rollup(f'select("cpu").last(70m).sampleBy(10s, last){method}', promql, id=method,
                   request={"step": 10, "start": NOW_S - HOUR - 5, "end": NOW_S - 5},
                   after=NOW_S - HOUR - 6, shift=5.0)


MINUS_20S = NOW - timedelta(seconds=20)   # off the minute, and off the points (…:05, …:15)
ROLLUPS = [
    _sampled("", "cpu"),
    # group: REDUCE tick by tick, PromQL aggregation operators per step
    *[_sampled(f'.groupBy(["dc"], {tsl_agg})', f"{prom} by (dc) (cpu)")
      for tsl_agg, prom in [("sum", "sum"), ("mean", "avg"), ("min", "min"), ("max", "max"),
                            ("count", "count")]],
    *[_sampled(f".group({tsl_agg})", f"{prom}(cpu)")
      for tsl_agg, prom in [("sum", "sum"), ("mean", "avg"), ("min", "min"), ("max", "max"),
                            ("count", "count")]],
    # percentiles interpolate linearly between closest ranks in both (numpy's default and
    # Prometheus' quantile); median is the 0.5 quantile
    _sampled('.groupBy(["dc"], percentile, 42)', "quantile by (dc) (0.42, cpu)"),
    _sampled('.groupBy(["dc"], median)', "quantile by (dc) (0.5, cpu)"),
    _sampled(".group(median)", "quantile(0.5, cpu)"),
    _sampled('.groupWithout(["dc"], sum)', "sum without (dc) (cpu)"),
    _sampled('.groupBy(["host", "dc"], max)', "max by (host, dc) (cpu)"),
    # (stddev/stdvar are left out: tsq's are the sample statistics (n - 1), as Warp 10's
    # reducer.sd, and PromQL's stddev/stdvar the population ones (n).)
    # arithmetic and functions, point by point
    _sampled(".add(2)", "cpu + 2"),
    _sampled(".sub(2.5)", "cpu - 2.5"),
    _sampled(".mul(3)", "cpu * 3"),
    _sampled(".div(4)", "cpu / 4"),
    _sampled(".sub(50).abs()", "abs(cpu - 50)"),
    _sampled(".ceil()", "ceil(cpu)"),
    _sampled(".floor()", "floor(cpu)"),
    _sampled(".sqrt()", "sqrt(cpu)"),
    _sampled(".ln()", "ln(cpu)"),
    _sampled(".log2()", "log2(cpu)"),
    _sampled(".log10()", "log10(cpu)"),
    _rollup(f"{NICE}.round()", "round(sys.cpu.nice)", id=".round() on halves",
            ),
    # two decimals plus 0.003 is never a tie: there tsq, Warp 10 and PromQL agree
    _rollup(f"{SAMPLED}.add(0.003).round()", "round(cpu + 0.003)", id=".round() without ties"),
    # comparisons with a number keep the matching points, as PromQL's filters do
    _sampled(".greaterThan(50)", "cpu > 50"),
    _sampled(".greaterOrEqual(50)", "cpu >= 50"),
    _sampled(".lessThan(20)", "cpu < 20"),
    _sampled(".lessOrEqual(20)", "cpu <= 20"),
    _rollup(f"{NICE}.equal(2)", "sys.cpu.nice == 2", id=".equal(2)"),
    _rollup(f"{NICE}.notEqual(2)", "sys.cpu.nice != 2", id=".notEqual(2)"),
    _sampled(".maxWith(20)", "clamp_min(cpu, 20)"),
    _sampled(".minWith(80)", "clamp_max(cpu, 80)"),
    _sampled(".maxWith(20).minWith(80)", "clamp(cpu, 20, 80)"),
    # time parts of the tick: PromQL's take a Unix time as their value, so timestamp() first
    # (the last step is 2021-01-01T00:00:00Z, so year, month, day and hour all change there).
    # day_of_week is 0 on Sundays where Warp 10's ISO weekday is 7: no Sunday in this range.
    _sampled(".minute()", "minute(timestamp(cpu))"),
    _sampled(".hour()", "hour(timestamp(cpu))"),
    _sampled(".day()", "day_of_month(timestamp(cpu))"),
    _sampled(".weekday()", "day_of_week(timestamp(cpu))"),
    _sampled(".month()", "month(timestamp(cpu))"),
    _sampled(".year()", "year(timestamp(cpu))"),
    # native: epoch ms of the bucket's start; PromQL: seconds of its last point, 55 s later
    _sampled(".timestamp()", "timestamp(cpu) - 55", scale=1000.0),
    # shift(d) moves the points d later; PromQL's `offset d` shows at t the sample of t - d.
    # Native ticks, as compared (a bucket's end), are now - 57m … now + 2m, the steps
    # [now - 1h, now]: compared on the overlap.
    _sampled(".shift(2m)", "cpu offset 2m", after=NOW_S - HOUR + 120, until=NOW_S),
    # the last value: an instant query at the end
    _sampled(".keepLastValue()", "cpu", request={"instant_query": True}),
    _sampled(".group(max).keepLastValue()", "max(cpu)", request={"instant_query": True}),
    # sampleBy(1m, agg): a bucket is [t, t + 1m); with no point on a boundary, `[1m]` at
    # t + 1m holds the same points (see test_prometheus_range_selectors_are_closed_on_both_ends)
    *[_rollup(f'select("cpu").last(1h).sampleBy(1m, {tsl_agg})',
              f"{prom}_over_time(cpu[1m])", id=f"sampleBy(1m, {tsl_agg})")
      for tsl_agg, prom in [("max", "max"), ("min", "min"), ("sum", "sum"), ("mean", "avg"),
                            ("count", "count"), ("last", "last")]],
    _rollup('select("cpu").last(1h).sampleBy(5m, mean).groupBy(["dc"], max)',
            "max by (dc) (avg_over_time(cpu[5m]))", id="sampleBy(5m, mean).groupBy(max)",
            request={"step": 300}, shift=300.0),
    # windows of [t - 5m, t] over every point
    *[_window(f".window({tsl_agg}, pre=5m)", f"{prom}_over_time(cpu[5m])")
      for tsl_agg, prom in [("max", "max"), ("min", "min"), ("sum", "sum"), ("mean", "avg"),
                            ("count", "count")]],
    *[_window(f".{tsl_agg}(5m)", f"{prom}_over_time(cpu[5m])")
      for tsl_agg, prom in [("max", "max"), ("mean", "avg"), ("sum", "sum")]],
    _window('.window(percentile, 42, pre=5m)', "quantile_over_time(0.42, cpu[5m])"),
    # a now off the minute: relative=true aligns the buckets on now, as the steps of a range
    # query that ends at now; relative=false (the default) keeps them on the epoch's minutes,
    # as a range query on whole minutes (the last bucket, which now cuts short, is left out)
    _rollup(f"{SAMPLED[:-1]}, true)", "cpu", id="relative true, now off the minute",
            now=MINUS_20S, request={"start": NOW_S - 20 - HOUR, "end": NOW_S - 20},
            after=NOW_S - 20 - HOUR),
    _rollup(f"{SAMPLED[:-1]}, relative=true)", "cpu", id="relative=true, now off the minute",
            now=MINUS_20S, request={"start": NOW_S - 20 - HOUR, "end": NOW_S - 20},
            after=NOW_S - 20 - HOUR),
    _rollup(SAMPLED, "cpu", id="relative=false, now off the minute", now=MINUS_20S,
            request={"start": NOW_S - HOUR, "end": NOW_S - 60}, after=None, until=NOW_S - 60),
]


@pytest.mark.parametrize("check", ROLLUPS)
def test_rollup_agrees_with_prometheus(engines: Engines, check: Check) -> None:
    run_check(engines, check)


# -- operators between selects --------------------------------------------------------------

def _operator(tsl_op: str, promql: str, suffix: str = "", operands: int = 2) -> Any:
    sampled = ["select('foo').last(1h).sampleBy(1m, last)",
               "select('bar').last(1h).sampleBy(1m, last)"]
    chosen = [sampled[i % 2] for i in range(operands)]
    return _rollup(f"{tsl_op}({', '.join(chosen)}){suffix}", promql,
                   id=f"{tsl_op}(foo, bar{', foo' * (operands - 2)}){suffix}")


OPERATORS = [
    _operator("add", "foo + bar"),
    _operator("sub", "foo - bar"),
    _operator("mul", "foo * bar"),
    _operator("div", "foo / bar"),
    _operator("add", "foo + bar + foo", operands=3),
    _operator("sub", "foo - on(host) bar", suffix='.on("host")'),
    # Warp 10's op.eq/op.gt/… give a boolean at every tick: PromQL's `bool` comparisons
    *[_operator(name, f"foo {op} bool bar")
      for name, op in [("equal", "=="), ("notEqual", "!="), ("greaterThan", ">"),
                       ("greaterOrEqual", ">="), ("lessThan", "<"), ("lessOrEqual", "<=")]],
]


@pytest.mark.parametrize("check", OPERATORS)
def test_operator_agrees_with_prometheus(engines: Engines, check: Check) -> None:
    run_check(engines, check)


# -- the same cases compiled to WarpScript, on the VM --------------------------------------

# The reference's WarpScript of the conformance cases this module compares (same `source` ids).
WARPSCRIPT = {case["source"]: case["warpscript"] for case in COMPILED}
SHARED = [case for case in CASES if case["source"] in WARPSCRIPT]
_ONE_CLASS = (
    "semantics differ: the reference compiles an operator without on() to APPLY with no "
    "equivalence labels ([]), one class holding every series of both operands (three each "
    "here); PromQL `foo {op} bar` matches them on all their labels, one result per host. The "
    "VM {does}")
# Where the reference's WarpScript cannot say what the PromQL says (strict: a change that makes
# one agree fails, so that its mark goes).
WARPSCRIPT_XFAILS: dict[str, str] = {
    f"{WRAP}add(select(...), select(...))": _ONE_CLASS.format(
        op="+", does="adds the six series into one, labelled by what they share (nothing)"),
    f"{WRAP}mul(select(...), select(...))": _ONE_CLASS.format(
        op="*", does="multiplies the six series into one, labelled by what they share "
                     "(nothing)"),
    f"{WRAP}div(select(...), select(...))": _ONE_CLASS.format(
        op="/", does="refuses op.div over six series, as Warp 10 does (a binary op)"),
    f"{WRAP}add(...).on(\"host\")": (
        "semantics differ: PromQL `foo + on(host) bar` keeps only host on the result; the "
        "reference's APPLY by [ 'host' ] keeps the first operand's labels (host and dc)"),
    f"{WRAP}group(sum)#promql-wrap": (
        "semantics differ: Warp 10's REDUCE keeps the labels its members share (host=web01 "
        "here); PromQL's sum(q) drops every label"),
}
WARPSCRIPT_COUNTS = summary_counts("TSL→WarpScript on the VM vs Prometheus")



def warpscript_on_the_vm(source: str, store: EmbeddedStore) -> Answer:
    """The case's WarpScript run on tsq's VM, keyed as Prometheus' answer is (labels, no class
    name), ticks in nanoseconds.

    No shift, unlike the native answer: Warp 10's BUCKETIZE makes buckets (t - span, t] labelled
    by their end t, and a PromQL step at t reads the newest sample at or before t (or, with
    `[span]`, the samples of [t - span, t]). Both close on the right and name a bucket by its
    end, so the WarpScript tick of a bucket is the Prometheus step that reads the same points;
    with no point on a boundary the two closings cannot differ either (docs/time.md)."""
    found: Answer = {}
    for series in warpscript_answer(WARPSCRIPT[source], store):
        if not series.ticks:
            continue  # Prometheus leaves out a series with no point in the range
        key = _key(dict(series.key[1]))
        assert key not in found, f"two WarpScript series with labels {dict(key)}"
        found[key] = (np.array(series.ticks, np.int64) * 1000,
                      np.array(series.values, np.float64))
    return found


def _warpscript_param(case: dict[str, Any]) -> Any:
    source = case["source"]
    marks = []
    if source in WARPSCRIPT_XFAILS:
        marks.append(pytest.mark.xfail(reason=WARPSCRIPT_XFAILS[source], strict=True))
    return pytest.param(case, id=source, marks=marks)


@pytest.mark.parametrize("case", [_warpscript_param(c) for c in SHARED])
def test_warpscript_agrees_with_prometheus(engines: Engines, case: dict[str, Any]) -> None:
    """(c) of the three-way differential: the same rules as the native comparison (the leading
    step of a range query dropped, `after`), the WarpScript ticks taken as they are."""
    source = case["source"]
    skip = CONFORMANCE_SKIPS.get(source) or CONFORMANCE_REJECTED.get(source, ("", ""))[1]
    if skip:
        WARPSCRIPT_COUNTS["skipped"] += 1
        pytest.skip(f"no Prometheus answer to compare with: {skip}")
    WARPSCRIPT_COUNTS["xfail" if source in WARPSCRIPT_XFAILS else "agree"] += 1
    [request] = tsl.compile(case["tsl"], "promql", now=NOW)
    after = None if request["instant_query"] else round(float(request["start"]) * NS)
    reference = _within(prometheus_answer(engines.base, request), after, None)
    warpscript = _within(warpscript_on_the_vm(source, engines.store), after, None)
    assert_same(warpscript, reference, what=f"{source} (WarpScript)")


def test_the_shared_cases_are_classified() -> None:
    """Every case both differentials hold is compared here, and the xfails name shared cases."""
    assert len(SHARED) >= 40, f"only {len(SHARED)} cases shared with the WarpScript differential"
    assert set(WARPSCRIPT_XFAILS) <= {case["source"] for case in SHARED}
