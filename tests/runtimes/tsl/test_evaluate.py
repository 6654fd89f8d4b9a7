"""Native TSL evaluation, method by method, on the embedded store: each result checked against
values worked out by hand or with numpy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tsq import tsl
from tsq.connectors.base import Capabilities
from tsq.connectors.embedded import EmbeddedStore
from tsq.errors import TslError
from tsq.series import SeriesSet

T0 = 1609459200  # 2021-01-01T00:00:00Z
NOW = datetime.fromtimestamp(T0 + 600, UTC)
S = 10**9


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStore]:
    path: Path = tmp_path_factory.mktemp("tsl") / "points.duckdb"
    store = EmbeddedStore(path)
    stamps = (T0 + 10 * np.arange(60)) * S              # 00:00:00 … 00:09:50
    rows = [("cpu", {"dc": "gra", "host": "a"}, stamps, np.arange(60.0)),
            ("cpu", {"dc": "gra", "host": "b"}, stamps, 2 * np.arange(60.0)),
            ("cpu", {"dc": "rbx", "host": "c"}, stamps, np.full(60, 5.0)),
            ("mem", {"dc": "gra", "host": "a"}, stamps[::6], np.arange(10.0))]
    store.write(SeriesSet.from_series(rows))
    yield store
    store.close()


def run(store: EmbeddedStore, source: str, **variables: object) -> dict[str, tuple[list[int], list[float]]]:
    found = tsl.evaluate(source, store, now=NOW, variables=variables)  # type: ignore[arg-type]
    return {",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) or s.name:
            ([int(t) // S - T0 for t in s.timestamps], [float(v) for v in s.values]) for s in found}


def test_where_and_last_push_down_and_read_the_half_open_range(store: EmbeddedStore) -> None:
    out = run(store, 'select("cpu").where("host=a").last(1m)')
    # [540, 600): the point on the window's start is in, the one at now would not be
    assert out == {"dc=gra,host=a": ([540, 550, 560, 570, 580, 590],
                                     [54.0, 55.0, 56.0, 57.0, 58.0, 59.0])}
    regex = run(store, 'select("~c.u").where("dc~g.*", "host!=b").last(20s)')
    assert list(regex) == ["dc=gra,host=a"]


def test_from_reads_numbers_by_their_size_and_iso_dates(store: EmbeddedStore) -> None:
    seconds = run(store, f'select("mem").from({T0 + 60}, {T0 + 180})')
    micros = run(store, f'select("mem").from({(T0 + 60) * 10**6}, {(T0 + 180) * 10**6})')
    iso = run(store, 'select("mem").from("2021-01-01T00:01:00Z", "2021-01-01T00:03:00Z")')
    assert seconds == micros == iso == {"dc=gra,host=a": ([60, 120], [1.0, 2.0])}   # [60, 180)


def test_last_count_shift_and_timestamp(store: EmbeddedStore) -> None:
    assert run(store, 'select("mem").last(2)') == {"dc=gra,host=a": ([480, 540], [8.0, 9.0])}
    shifted = run(store, 'select("mem").last(2m, shift=5m)')
    assert shifted == {"dc=gra,host=a": ([180, 240], [3.0, 4.0])}   # [180, 300)
    at = run(store, f'select("mem").last(1m, timestamp={T0 + 120})')
    assert at == {"dc=gra,host=a": ([60], [1.0])}   # [60, 120)


def test_sample_by_buckets_left_closed_on_the_epoch_grid(store: EmbeddedStore) -> None:
    out = run(store, 'select("cpu").where("host=a").last(3m).sampleBy(1m, mean)')
    # [420, 480) holds 420..470, [480, 540) 480..530, [540, 600) 540..590
    assert out == {"dc=gra,host=a": ([420, 480, 540], [44.5, 50.5, 56.5])}
    maxed = run(store, 'select("cpu").where("host=a").last(3m).sampleBy(2m, max, relative=true)')
    assert maxed == {"dc=gra,host=a": ([360, 480], [47.0, 59.0])}   # [360, 480), [480, 600)


def test_sample_by_fills(store: EmbeddedStore) -> None:
    base = 'select("mem").from({a}, {b}).sampleBy(30s, max, {fill})'
    window = {"a": T0 + 120, "b": T0 + 270}   # buckets [120, 150) … [240, 270)
    assert run(store, base.format(fill='"none"', **window)) == {
        "dc=gra,host=a": ([120, 180, 240], [2.0, 3.0, 4.0])}
    assert run(store, base.format(fill='"previous"', **window)) == {
        "dc=gra,host=a": ([120, 150, 180, 210, 240], [2.0, 2.0, 3.0, 3.0, 4.0])}
    assert run(store, base.format(fill="fill(-1)", **window)) == {
        "dc=gra,host=a": ([120, 150, 180, 210, 240], [2.0, -1.0, 3.0, -1.0, 4.0])}
    assert run(store, base.format(fill='"interpolate"', **window)) == {
        "dc=gra,host=a": ([120, 150, 180, 210, 240], [2.0, 2.5, 3.0, 3.5, 4.0])}


def test_group_by_and_without(store: EmbeddedStore) -> None:
    query = 'select("cpu").last(1m).sampleBy(1m, last).{}'
    assert run(store, query.format('groupBy(["dc"], sum)')) == {
        "dc=gra": ([540], [59.0 + 118.0]), "dc=rbx": ([540], [5.0])}
    assert run(store, query.format('groupWithout(["host"], max)')) == {
        "dc=gra": ([540], [118.0]), "dc=rbx": ([540], [5.0])}
    assert run(store, query.format("group(mean)")) == {"cpu": ([540], [(59 + 118 + 5) / 3])}
    percentile = run(store, query.format('groupBy("dc", percentile, 50)'))
    assert percentile["dc=gra"] == ([540], [88.5])


def test_window_mappers_and_cumulative(store: EmbeddedStore) -> None:
    base = 'select("mem").last(3m)'   # [420, 600): 7 at 420, 8 at 480, 9 at 540
    summed = run(store, base + ".window(sum, 1, 0)")["dc=gra,host=a"]
    assert summed == ([420, 480, 540], [7.0, 8.0 + 7.0, 9.0 + 8.0])   # 420 has none before it
    assert run(store, base + ".window(sum, pre=1, post=0)")["dc=gra,host=a"] == summed
    shorthand = run(store, base + ".sum(1, 0)")["dc=gra,host=a"]
    assert shorthand == summed
    # a duration window on unsampled data is sampled by 1m first, as in the reference
    timed = run(store, 'select("cpu").where("host=a").last(3m).max(2m)')["dc=gra,host=a"]
    assert timed == ([420, 480, 540], [47.0, 53.0, 59.0])
    assert run(store, base + ".cumulativeSum()")["dc=gra,host=a"][1] == [7.0, 15.0, 24.0]
    assert run(store, base + ".cumulative(max)")["dc=gra,host=a"][1] == [7.0, 8.0, 9.0]


def test_point_wise_methods(store: EmbeddedStore) -> None:
    base = 'select("mem").last(3m)'   # [420, 600): 7 at 420, 8 at 480, 9 at 540
    assert run(store, base + ".add(1).mul(2)")["dc=gra,host=a"][1] == [16.0, 18.0, 20.0]
    assert run(store, base + ".sub(1).div(4)")["dc=gra,host=a"][1] == [1.5, 1.75, 2.0]
    assert run(store, base + ".greaterThan(8)")["dc=gra,host=a"] == ([540], [9.0])
    assert run(store, base + ".maxWith(8.5).minWith(8.7)")["dc=gra,host=a"][1] == [8.5, 8.5, 8.7]
    assert run(store, base + ".shift(1m)")["dc=gra,host=a"][0] == [480, 540, 600]
    assert run(store, base + ".rate()")["dc=gra,host=a"] == ([480, 540], [1 / 60, 1 / 60])
    assert run(store, base + ".minute()")["dc=gra,host=a"][1] == [7.0, 8.0, 9.0]
    assert run(store, base + ".keepLastValue()")["dc=gra,host=a"] == ([540], [9.0])
    assert run(store, base + ".keepFirstValues(1)")["dc=gra,host=a"] == ([420], [7.0])
    assert run(store, base + ".timeclip(now, 30s)") == {"dc=gra,host=a": ([], [])}
    assert run(store, base + ".timeclip(now, 1m)") == {"dc=gra,host=a": ([540], [9.0])}
    # timeclip keeps [end - d, end): the point at 540 is in [540, 600), not in [480, 540)
    assert run(store, base + f".timeclip({T0 + 540}, 1m)") == {"dc=gra,host=a": ([480], [8.0])}


def test_sort_top_and_filters(store: EmbeddedStore) -> None:
    base = 'select("cpu").last(1m)'
    assert list(run(store, base + ".topN(1)")) == ["dc=gra,host=b"]
    assert list(run(store, base + ".bottomN(1)")) == ["dc=rbx,host=c"]
    assert list(run(store, base + ".sortDesc()")) == ["dc=gra,host=b", "dc=gra,host=a", "dc=rbx,host=c"]
    assert list(run(store, base + '.filterByLabels("dc=rbx")')) == ["dc=rbx,host=c"]
    assert list(run(store, base + '.filterByLastValue(">=59")')) == ["dc=gra,host=a", "dc=gra,host=b"]
    assert list(run(store, base + '.filterWithoutLabels("nope")')) == [
        "dc=gra,host=a", "dc=gra,host=b", "dc=rbx,host=c"]
    with pytest.raises(TslError, match="count above 0"):
        run(store, base + ".topN(0)")


def test_names_and_labels_are_edited(store: EmbeddedStore) -> None:
    found = tsl.evaluate('select("mem").last(1m).rename("m").addSuffix("_1m")'
                         '.renameLabelKey("host", "h").removeLabels("dc")', store, now=NOW)
    assert found.names == ("m_1m",) and dict(found.labels[0]) == {"h": "a"}
    templated = tsl.evaluate('select("mem").last(1m).renameTemplate("${this.name}.${this.labels.host}")',
                             store, now=NOW)
    assert templated.names == ("mem.a",)


def test_operators_across_sets_match_on_labels(store: EmbeddedStore) -> None:
    query = ('a = select("cpu").where("dc=gra").last(2m).sampleBy(30s, last)\n'
             'b = select("mem").last(2m).sampleBy(30s, last)\n'
             'add(a, b).on(["host"])')
    # b has points at 480 and 540 only: the default fill interpolates 510 and carries 9 forward
    # to 570. As in PromQL, one-to-one matching on(host) keeps only the host label.
    assert run(store, query) == {"host=a": ([480, 510, 540, 570],
                                            [50.0 + 8.0, 53.0 + 8.5, 56.0 + 9.0, 59.0 + 9.0])}


def test_create_builds_series_in_memory(store: EmbeddedStore) -> None:
    out = run(store, 'create(series("t").setLabels(["k=v"]).setValues("now", [-1m, 2], [0, 3]))')
    assert out == {"k=v": ([540, 600], [2.0, 3.0])}


def test_store_writes_to_the_connector(store: EmbeddedStore) -> None:
    run(store, 'select("mem").last(3m).rename("mem_copy").store("token")')
    assert run(store, 'select("mem_copy").last(10m)') == {
        "dc=gra,host=a": ([420, 480, 540], [7.0, 8.0, 9.0])}   # last(3m) read [420, 600)


def test_variables_and_templates(store: EmbeddedStore) -> None:
    out = run(store, 'select("cpu").where("host=${h}").last(span).sampleBy(1m, max)', h="c", span="1m")
    assert out == {"dc=rbx,host=c": ([540], [5.0])}


def test_errors_name_the_method_and_place(store: EmbeddedStore) -> None:
    with pytest.raises(TslError) as caught:
        tsl.evaluate('select("mem").last(1h)\n  .timesplit(now, 2, "x")', store, now=NOW)
    assert "timesplit() needs a duration or a number of microseconds, not now" in caught.value.message
    assert (caught.value.line, caught.value.char) == (2, 4)
    with pytest.raises(TslError, match="names no connector"):
        tsl.evaluate('connect("prometheus", "http://127.0.0.1:1")\nselect("x").last(1m)', store)


def test_sample_takes_its_aggregator_first(store: EmbeddedStore) -> None:
    """`sample(agg)`: 100 buckets over the range (the reference's default count)."""
    out = run(store, 'select("mem").last(10m).sample(max, "none")')["dc=gra,host=a"]
    assert out[1] == list(np.arange(0.0, 10.0))   # [0, 600): one point per bucket, as it was
    assert run(store, 'select("mem").last(10m).sample(count)')["dc=gra,host=a"][1][-1] == 1.0


SPLIT_GTS = ('create(series("test name").setLabels(["label0=42"]).setValues(0, '
             + ", ".join(f"[{t}, {v}]" for t, v in ((100, 10), (200, 9), (300, 8), (400, 7), (500, 6),
                                                   (1100, 10), (1200, 9), (1300, 8), (1400, 7),
                                                   (1500, 6))) + "))")


def test_timesplit_as_warp10_documents_it(store: EmbeddedStore) -> None:
    """Warp 10's TIMESPLIT example (warp10.io function_TIMESPLIT.md): 250 quiet, 2 values."""
    found = tsl.evaluate(SPLIT_GTS + '.timesplit(250, 2, "subSequenceNumber")', store, now=NOW)
    assert [dict(s.labels) for s in found] == [
        {"label0": "42", "subSequenceNumber": "1"}, {"label0": "42", "subSequenceNumber": "2"}]
    assert [s.values.tolist() for s in found] == [[10, 9, 8, 7, 6], [10, 9, 8, 7, 6]]
    assert tsl.evaluate(SPLIT_GTS + '.timesplit(250, 6, "n")', store, now=NOW).points == 0


def test_timemodulo_splits_by_quotient(store: EmbeddedStore) -> None:
    found = tsl.evaluate(SPLIT_GTS + '.timemodulo(1000, "sub-sequence")', store, now=NOW)
    assert sorted(s.labels["sub-sequence"] for s in found) == ["0", "1"]
    first = next(s for s in found if s.labels["sub-sequence"] == "1")
    assert (first.timestamps // 1000).tolist() == [100, 200, 300, 400, 500]   # ticks % 1000 µs


def test_quantize_counts_values_per_bucket(store: EmbeddedStore) -> None:
    found = tsl.evaluate(SPLIT_GTS + '.quantize("bucket", [7, 9])', store, now=NOW)
    counts = {s.labels["bucket"]: s.values.tolist() for s in found}
    assert counts == {"<=7": [4.0], "7<v<=9": [4.0], ">9": [2.0]}
    stepped = tsl.evaluate(SPLIT_GTS + '.quantize("bucket", 2)', store, now=NOW)
    assert sum(s.values.sum() for s in stepped) == 10


def test_sample_by_a_span_without_a_range_buckets_the_data(store: EmbeddedStore) -> None:
    """A created series has no range: its buckets run from its first point to its last."""
    out = run(store, 'create(series("m").setValues([60, 1], [130, 2], [170, 3]))'
                     '.sampleBy(1m, max, "none")')
    assert out == {"m": ([60 - T0, 120 - T0], [1.0, 3.0])}   # [60, 120), [120, 180)


def test_sample_by_calendar_months(store: EmbeddedStore) -> None:
    points = ", ".join(f'[{t}, {v}]' for t, v in (
        (1609459200, 1), (1610000000, 2), (1612137600, 3), (1612200000, 4), (1614600000, 5)))
    query = f'create(series("m").setValues({points})).sampleBy(1M, sum, "none")'
    [series] = tsl.evaluate(query, store, now=NOW)
    months = series.timestamps.astype("datetime64[ns]").astype("datetime64[D]").astype(str)
    # left-closed, labelled by the month's first instant: 2021-01-01T00:00 opens January
    assert months.tolist() == ["2021-01-01", "2021-02-01", "2021-03-01"]
    assert series.values.tolist() == [1.0 + 2.0, 3.0 + 4.0, 5.0]


class _NoSampling:
    """The store, minus its sampling: evaluation must sample itself and agree."""

    capabilities = Capabilities()

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store

    def select(self, *args: object) -> SeriesSet:
        return self.store.select(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize("query", [
    'select("cpu").last(3m).sampleBy(1m, mean)',
    'select("cpu").where("host=a").last(5m).sampleBy(2m, max, "previous", relative=true)',
    'select("mem").from({a}, {b}).sampleBy(30s, sum, fill(0)).groupBy("dc", sum)',
    'select("cpu").last(4m).sampleBy(10, percentile, 90)',
    'select("cpu").last(4m).sample(count)',
])
def test_sampling_pushed_to_the_store_agrees_with_sampling_after(
        store: EmbeddedStore, query: str) -> None:
    source = query.format(a=T0 + 90, b=T0 + 300)
    assert store.capabilities.sampling
    pushed = tsl.evaluate(source, store, now=NOW)
    after = tsl.evaluate(source, _NoSampling(store), now=NOW)
    assert pushed.to_json() == after.to_json() and pushed.points > 0


def test_metadata_statements_list_the_matching_series(store: EmbeddedStore) -> None:
    from tsq.runtimes.tsl.evaluate import Evaluation

    results = Evaluation(store, now=NOW).run_all(
        'select("cpu").where("dc=gra").names()\n'
        'select("cpu").labels()\n'
        'select("cpu").labels("host")\n'
        'select("mem").selectors()\n'
        'select("mem").attributes()\n'
        'select("mem").last(1m)')
    assert results.meta == [
        ["cpu"],
        [{"dc": "gra", "host": "a"}, {"dc": "gra", "host": "b"}, {"dc": "rbx", "host": "c"}],
        ["a", "b", "c"],
        ["mem{dc=gra,host=a}"],
        [{}],
    ]
    assert results.joined().names == ("mem",)


@pytest.mark.parametrize("then", ['groupBy(["dc"], mean)', 'groupBy(["dc"], sum).add(1)', 'window(sum, 2)'])
def test_a_variable_keeps_its_sampling_for_the_methods_after_it(store: EmbeddedStore,
                                                                then: str) -> None:
    """`x = select(…).sampleBy(…)` then `x.groupBy(…)` is the chain written in one piece: the
    methods after the variable must not sample again at the default 1m."""
    chain = f'select("cpu").from({T0}, {T0 + 600}).sampleBy(5m, mean)'
    inline = run(store, f"{chain}.{then}")
    assert run(store, f"x = {chain}\nx.{then}") == inline
    assert all(times == [0, 300] for times, _ in inline.values())
    assert tsl.compile(f"x = {chain}\nx.{then}", "warpscript") == \
        tsl.compile(f"{chain}.{then}", "warpscript")


def test_a_script_asked_again_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from tsq.runtimes.tsl import binder

    parsed: list[str] = []
    real = binder.parse_script
    monkeypatch.setattr(binder, "parse_script", lambda text: parsed.append(text) or real(text))
    binder._parsed.cache_clear()
    binder._bound.cache_clear()
    source = 'select("cpu").where("dc=gra").last(1m)'
    assert binder.parse(source) == binder.parse(source)
    assert parsed == [source]
    bad = 'select("cpu").last('
    for _ in range(2):
        with pytest.raises(TslError):
            binder.parse(bad)
    assert parsed == [source, bad, bad]  # a script that fails is not kept
    long = source + "\n" * binder.PARSED_CHARS
    assert binder.parse(long) == binder.parse(long) == binder.parse(source)
    assert parsed == [source, bad, bad, long, long]  # too long to keep


def test_a_script_asked_again_without_values_is_not_bound_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A dashboard's query binds once; a run's (its values change each time) binds each time,
    each with its own values."""
    from tsq.runtimes.tsl import binder

    bound: list[str] = []
    real = binder.bind
    monkeypatch.setattr(binder, "bind", lambda script, source, **kw: bound.append(source)
                        or real(script, source, **kw))
    binder._bound.cache_clear()
    source = 'select("cpu").where("dc=gra").last(n)'
    with pytest.raises(TslError):
        binder.parse(source)  # n is not defined: not kept
    assert len(bound) == 1
    asked = 'select("cpu").where("dc=gra").last(1m)'
    first = binder.parse(asked)
    assert binder.parse(asked) is first
    assert binder.parse(asked, token="other") is not first  # the token is part of what binds
    assert len(bound) == 3
    one, two = binder.parse(source, values={"n": "1m"}), binder.parse(source, values={"n": "2m"})
    assert one != two and len(bound) == 5
    assert binder.parse(source, values={"n": "1m"}) == one and len(bound) == 6
