"""The Prometheus pushdown against a real Prometheus 2.42: every sampleBy and group it computes
equals tsq's kernels on the same raw points (NaN points, buckets cut by the range's edges, and
empty buckets included), what it cannot compute exactly runs in tsq, and the plan says which
did what. Points are written through remote write, as loops write them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from benchmarks import prometheus as prometheus_server
from tests.connectors.contract import S
from tsq import tsl
from tsq.connectors import promqlpush
from tsq.connectors.base import grouping, sampling
from tsq.connectors.prometheus import SERVERS, Prometheus, VictoriaMetrics
from tsq.connectors.promqlpush import (
    GROUPED,
    MAX_STEPS,
    PUSHED,
    Plan,
    local_windows,
    plan,
    query_text,
)
from tsq.explain import explaining
from tsq.kernels import Aggregator, Buckets, Fill, Grouping, bucketize
from tsq.selector import parse_selector
from tsq.series import SeriesSet

MS = 1_000_000
MINUTE = 60 * S
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
SPAN = (T0 + 30 * S, T0 + 18 * MINUTE)  # starts inside a bucket, ends on an edge
CUT = (T0 + 30 * S, T0 + 17 * MINUTE + 7 * S + 5 * MS)  # ends inside a bucket, off the second

PUSH = '{__name__="push"}'  # the selector push, as the connector sends it
needs_prometheus = pytest.mark.skipif(
    not prometheus_server.available(),
    reason="Prometheus 2.42 is not installed here (apt-get install prometheus; .ci/run installs it)")


def points() -> SeriesSet:
    """Irregular points of four series, on bucket edges and their last millisecond too, a gap
    of minutes (empty buckets), NaN points among numbers, and one host whose every point in
    minute 3 is NaN."""
    rng = np.random.default_rng(7)
    series = []
    for host, dc in (("a", "gra"), ("b", "gra"), ("c", "rbx"), ("d", "rbx")):
        stamps = np.sort(rng.choice(np.arange(T0, T0 + 20 * MINUTE, 5 * S), 150, replace=False))
        stamps = stamps[(stamps < T0 + 6 * MINUTE) | (stamps >= T0 + 11 * MINUTE)]
        edges = T0 + np.array([2, 4, 12, 15]) * MINUTE
        stamps = np.union1d(stamps, np.concatenate([edges, edges - MS]))
        values = rng.uniform(-50, 50, len(stamps)).round(3)
        values[rng.random(len(stamps)) < 0.04] = np.nan
        if host == "d":
            values[(stamps >= T0 + 3 * MINUTE) & (stamps < T0 + 4 * MINUTE)] = np.nan
        series.append(("push", {"dc": dc, "host": host}, stamps, values))
    return SeriesSet.from_series(series)


@pytest.fixture(scope="module")
def store() -> Iterator[Prometheus]:
    if not prometheus_server.available():
        pytest.skip("Prometheus 2.42 is not installed here")
    with prometheus_server.prometheus(writable="100y") as base:
        connector = Prometheus(base, label="prometheus connector")
        connector.write(points())
        yield connector
        connector.close()


def assert_same(pushed: SeriesSet, local: SeriesSet) -> None:
    assert [(s.name, dict(s.labels)) for s in pushed] == [(s.name, dict(s.labels))
                                                          for s in local]
    assert pushed.offsets.tolist() == local.offsets.tolist()
    assert pushed.timestamps.tolist() == local.timestamps.tolist()
    np.testing.assert_allclose(pushed.values, local.values, rtol=1e-12, atol=1e-12)


def pushed_steps(plan_steps: list[dict[str, str]]) -> list[str]:
    return [step["step"] for step in plan_steps if step["step"].startswith("pushed down")]


# -- the server's range convention, which the pushdown stands on ---------------------------------


@needs_prometheus
def test_a_range_at_a_buckets_last_millisecond_reads_exactly_the_bucket(
        store: Prometheus) -> None:
    """2.42 closes `sel[r]` at `e` on both ends, [e - r, e]: `sel[59999ms]` at t + 59.999 s
    holds the points at t and t + 59.999 s, not the one at t + 60 s."""
    base = store._server.url
    edge = (T0 + 2 * MINUTE) // MS
    found = prometheus_server.query_range(
        base, 'count_over_time({__name__="push", host="a"}[59999ms])',
        (edge - 1) / 1000, (edge + MINUTE // MS - 1) / 1000, 60)
    [series] = found
    raw = store.select(parse_selector('push{host="a"}'), T0 + 2 * MINUTE - MINUTE,
                       T0 + 3 * MINUTE)
    before = int(((raw.timestamps >= T0 + MINUTE) & (raw.timestamps < T0 + 2 * MINUTE)).sum())
    within = int(((raw.timestamps >= T0 + 2 * MINUTE) & (raw.timestamps < T0 + 3 * MINUTE)).sum())
    assert [(round(float(t) * 1000), int(v)) for t, v in series["values"]] == [
        (edge - 1, before), (edge + MINUTE // MS - 1, within)]


# -- every pushed combination equals the kernels -------------------------------------------------


@needs_prometheus
@pytest.mark.parametrize("aggregate", sorted(PUSHED))
@pytest.mark.parametrize(("grid", "fills", "span"), [
    (Buckets(MINUTE), (), SPAN),
    (Buckets(MINUTE), (), CUT),
    (Buckets(5 * MINUTE, anchor=T0 + 30 * S), (), SPAN),
    (Buckets(MINUTE, first=T0, last=T0 + 19 * MINUTE), (Fill("previous"),), SPAN),
    (Buckets(2 * MINUTE), (Fill("interpolate"),), CUT),
])
def test_pushed_buckets_equal_the_kernels_on_raw_points(
        store: Prometheus, aggregate: str, grid: Buckets, fills: tuple[Fill, ...],
        span: tuple[int, int]) -> None:
    selector = parse_selector("push")
    with explaining() as steps:
        pushed = store.select_sampled(selector, *span, grid, Aggregator(aggregate), fills)
    local = bucketize(store.select(selector, *span), grid, Aggregator(aggregate), fills)
    assert_same(pushed, local)
    assert len(pushed_steps(steps)) == 1


@needs_prometheus
@pytest.mark.parametrize("aggregate", sorted(PUSHED))
@pytest.mark.parametrize("by", sorted(GROUPED))
def test_pushed_groups_equal_the_kernels_on_raw_points(store: Prometheus, aggregate: str,
                                                       by: str) -> None:
    selector, grid = parse_selector("push"), Buckets(MINUTE)
    group = Grouping(("dc",), Aggregator(by))
    with explaining() as steps:
        pushed = store.select_grouped(selector, *SPAN, grid, Aggregator(aggregate), (), group)
    local = group.apply(bucketize(store.select(selector, *SPAN), grid, Aggregator(aggregate)))
    assert_same(pushed, local)
    query = query_text(PUSH, 60_000, Aggregator(aggregate), group)
    assert pushed_steps(steps) == [
        f"pushed down sampleBy(60 s, {aggregate}) and groupBy([dc], {by}): 17 whole bucket(s) "
        f"as query_range {query} step 60000ms"]


@needs_prometheus
@pytest.mark.parametrize("group", [
    Grouping(None, Aggregator("mean")),
    Grouping(("host",), Aggregator("sum"), without=True),
    Grouping(("dc", "host"), Aggregator("max")),
])
@pytest.mark.parametrize("span", [SPAN, CUT, (T0 + 3 * MINUTE, T0 + 4 * MINUTE)])
def test_group_without_and_all_in_one_equal_the_kernels(store: Prometheus, group: Grouping,
                                                         span: tuple[int, int]) -> None:
    selector, grid = parse_selector("push"), Buckets(MINUTE)
    with explaining() as steps:
        pushed = store.select_grouped(selector, *span, grid, Aggregator("mean"), (), group)
    local = group.apply(bucketize(store.select(selector, *span), grid, Aggregator("mean")))
    assert_same(pushed, local)
    assert len(pushed_steps(steps)) == 1


@needs_prometheus
def test_nan_answers_are_recomputed_by_tsq_from_the_raw_points(store: Prometheus) -> None:
    """Minute 3 of host d is all NaN: Prometheus's mean is NaN there, tsq has no bucket; the
    minute is read raw again and computed by tsq, for every series of that minute."""
    selector, grid = parse_selector('push{dc="rbx"}'), Buckets(MINUTE)
    window = (T0 + 3 * MINUTE, T0 + 4 * MINUTE)
    with explaining() as steps:
        pushed = store.select_sampled(selector, *window, grid, Aggregator("mean"))
    d = next(s for s in pushed if s.labels["host"] == "d")
    assert list(d.timestamps) == [] and len(next(s for s in pushed if s.labels["host"] == "c")
                                            .timestamps) == 1
    assert {"where": "tsq", "step": "1 window(s) of cut, NaN or infinite buckets read raw and "
                                    "computed by tsq's kernels"} in steps
    assert_same(pushed, bucketize(store.select(selector, *window), grid, Aggregator("mean")))


@needs_prometheus
def test_what_promql_cannot_compute_exactly_runs_in_tsq(store: Prometheus) -> None:
    selector = parse_selector("push")
    cases = [
        (selector, Buckets(MINUTE), Aggregator("median"), (), None,
         "Prometheus has no exact median over time"),
        (selector, Buckets(MINUTE, closed="right"), Aggregator("mean"), (), None,
         "the buckets are closed on the right"),
        (selector, Buckets(MINUTE + 1), Aggregator("mean"), (), None,
         "the span or the grid is not whole milliseconds"),
        (parse_selector('{__name__=~"pu.*"}'), Buckets(MINUTE), Aggregator("mean"), (), None,
         "the selector names no single metric"),
        (selector, Buckets(MINUTE), Aggregator("mean"), (Fill("previous"),),
         Grouping(("dc",), Aggregator("mean")), "tsq fills each series before grouping"),
        (selector, Buckets(MINUTE), Aggregator("mean"), (),
         Grouping(("host",), Aggregator("mean")), "the grouping's labels do not sort first"),
        (selector, Buckets(MINUTE), Aggregator("mean"), (),
         Grouping(("dc",), Aggregator("median")), "Prometheus has no exact median of a group"),
    ]
    for chosen, grid, aggregator, fills, group, why in cases:
        with explaining() as steps:
            if group is None:
                found = store.select_sampled(chosen, *SPAN, grid, aggregator, fills)
                local = bucketize(store.select(chosen, *SPAN), grid, aggregator, fills)
            else:
                found = store.select_grouped(chosen, *SPAN, grid, aggregator, fills, group)
                local = group.apply(bucketize(store.select(chosen, *SPAN), grid, aggregator,
                                              fills))
        assert_same(found, local)
        said = " ".join(step["step"] for step in steps if step["where"] == "tsq")
        assert why in said, (why, steps)
        if group is None:
            assert not pushed_steps(steps)


@needs_prometheus
def test_a_tsl_query_explains_what_prometheus_computed_and_what_tsq_did(
        store: Prometheus) -> None:
    source = ('select("push").from(1767225630000, 1767226680000)'
              '.sampleBy(1m, mean, "none").groupBy(["dc"], mean).rename("push_1m")')
    with explaining() as steps:
        answer = tsl.query(source, store)
    local = tsl.query(source, _RawOnly(store))
    assert [s["labels"] for s in answer["series"]] == [{"dc": "gra"}, {"dc": "rbx"}]
    assert answer["series"][0]["timestamps"] == local["series"][0]["timestamps"]
    np.testing.assert_allclose([v for s in answer["series"] for v in s["values"]],
                               [v for s in local["series"] for v in s["values"]], rtol=1e-12)
    where = [step["where"] for step in steps]
    assert "prometheus connector at " + store._server.url in where[0]
    assert pushed_steps(steps)[0].startswith(
        "pushed down sampleBy(60 s, mean) and groupBy([dc], mean): 17 whole bucket(s)")
    assert any("query_range" in step["step"] for step in steps if step["where"] != "tsq")
    assert steps[-1] == {"where": "tsq", "step": "rename(push_1m): 2 series, "
                                                 f"{sum(len(s['values']) for s in answer['series'])} points"}
    assert not any(step["step"].startswith("groupBy") for step in steps)


class _RawOnly:
    """The same server without pushdown: every method in tsq's kernels."""

    def __init__(self, store: Prometheus) -> None:
        self.store = store
        self.capabilities = SERVERS["victoriametrics"].capabilities

    def select(self, *args: Any) -> SeriesSet:
        return self.store.select(*args)


# -- planning, without a server ------------------------------------------------------------------


def test_victoriametrics_reads_raw_and_prometheus_pushes() -> None:
    """VictoriaMetrics keeps two samples at one timestamp where tsq reads the later one, so its
    row does not promise sampling; the flag, not the server's name, decides."""
    vm = VictoriaMetrics("http://127.0.0.1:9")
    prom = Prometheus("http://127.0.0.1:9")
    try:
        assert sampling(vm) is None and grouping(vm) is None
        assert sampling(prom) is prom and grouping(prom) is prom
    finally:
        vm.close()
        prom.close()


def test_a_plan_covers_whole_buckets_and_leaves_the_cut_ones_to_tsq() -> None:
    found = plan('{__name__="x"}', *CUT, Buckets(MINUTE), Aggregator("count"))
    assert isinstance(found, Plan)
    assert (found.first, found.last, found.whole) == (T0 + MINUTE, T0 + 16 * MINUTE, 16)
    assert found.edges == ((CUT[0], T0 + MINUTE), (T0 + 17 * MINUTE, CUT[1]))
    assert found.query == ('(count_over_time({__name__="x"}[59999ms]) + 0 * '
                           'sum_over_time({__name__="x"}[59999ms]))')
    untrusted = T0 + np.array([3, 4, 9], np.int64) * MINUTE
    assert local_windows(found, untrusted) == [
        (CUT[0], T0 + MINUTE), (T0 + 3 * MINUTE, T0 + 5 * MINUTE),
        (T0 + 9 * MINUTE, T0 + 10 * MINUTE), (T0 + 17 * MINUTE, CUT[1])]
    inside = plan('{__name__="x"}', T0 + S, T0 + 2 * S, Buckets(MINUTE), Aggregator("sum"))
    assert isinstance(inside, Plan) and inside.whole == 0 and inside.edges == (
        (T0 + S, T0 + 2 * S),)
    assert plan('{__name__="x"}', None, T0, Buckets(MINUTE), Aggregator("sum")) == \
        "the time range is open"


def test_groups_that_hide_nan_are_sent_with_a_sum_that_shows_it() -> None:
    assert query_text("x", 60_000, Aggregator("mean"), Grouping(("dc",), Aggregator("min"))) == \
        "min by (dc)(avg_over_time(x[59999ms])) + 0 * sum by (dc)(avg_over_time(x[59999ms]))"
    assert query_text("x", 60_000, Aggregator("sum"), Grouping(None, Aggregator("mean"))) == \
        "avg(sum_over_time(x[59999ms]))"
    assert query_text("x", 1000, Aggregator("max"),
                      Grouping(("host",), Aggregator("sum"), without=True)) == \
        "sum without (host)(max_over_time(x[999ms]))"


def test_long_ranges_are_asked_in_parts_prometheus_accepts() -> None:
    """Prometheus refuses more than 11,000 steps a series: a day of 1-second buckets is asked
    in parts of at most MAX_STEPS steps, each step a bucket's last millisecond, none twice."""
    found = plan('{__name__="x"}', T0, T0 + 86_400 * S, Buckets(S), Aggregator("mean"))
    assert isinstance(found, Plan) and found.whole == 86_400
    parts = promqlpush.steps(found)
    assert len(parts) == 9 and parts[0] == (T0 // MS + 999, T0 // MS + 999 + 9_999_000)
    counts = [(last - first) // 1000 + 1 for first, last in parts]
    assert max(counts) == MAX_STEPS and sum(counts) == 86_400
    assert all(b[0] - a[1] == 1000 for a, b in zip(parts, parts[1:], strict=False))


@pytest.mark.parametrize(("described", "group", "why"), [
    ([("m", {"dc": "a", "host": "x"}), ("m", {"dc": "b", "host": "y"})],
     Grouping(("dc",), Aggregator("mean")), None),
    ([("m", {"dc": "a", "host": "x"}), ("m", {"dc": "b", "host": "y"})],
     Grouping(("host",), Aggregator("mean"), without=True), None),
    ([("m", {"dc": "a", "host": "x"}), ("m", {"dc": "b"})],
     Grouping(("dc",), Aggregator("mean")), "the series have different label names"),
    ([("m", {"a": "1", "dc": "x"})], Grouping(("dc",), Aggregator("sum")),
     "the grouping's labels do not sort first"),
    ([("m", {"a": "1", "dc": "x"})], Grouping(None, Aggregator("sum")), None),
    ([("m", {"dc": "x"})], Grouping(("host.name",), Aggregator("sum")),
     "a grouping label is not a Prometheus label name"),
])
def test_a_group_is_pushed_only_when_its_order_is_tsqs(
        described: list[tuple[str, dict[str, str]]], group: Grouping, why: str | None) -> None:
    """tsq orders groups by their first series; PromQL's come back in label order. They agree
    when every series has the same label names and the grouping's kept ones sort first."""
    found = promqlpush.group_refusal("m", (), group, described)
    assert (found or "").startswith(why or "") and (found is None) == (why is None)
