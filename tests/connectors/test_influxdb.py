"""The InfluxDB connector keeps the connector contract against a real InfluxDB 1.6 (started on
127.0.0.1 in a temporary directory), quotes every name it sends, and fails clearly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from benchmarks.influxdb import available, free_port, influxdb
from tests.connectors.contract import (
    CPU,
    ConnectorContract,
    S,
    Unreachable,
    UnreachableContract,
    quoted,
)
from tsq import tsl
from tsq.connectors.influxdb import PUSHED_AGGREGATES, InfluxDB, series_name, split_name
from tsq.errors import ConnectorQueryError, ConnectorUnsupported
from tsq.explain import explaining
from tsq.kernels import Aggregator, Buckets, Fill, bucketize
from tsq.selector import parse_selector
from tsq.series import SeriesSet

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="InfluxDB 1.6 is not installed here "
                                               "(apt-get install influxdb; .ci/run installs it)"),
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with influxdb("tsq") as base:
        yield base


@pytest.fixture
def database(server: str, request: pytest.FixtureRequest) -> str:
    """A fresh database for each test: the contract starts from an empty store."""
    name = f"t{abs(hash(request.node.nodeid)) % 10**12}"
    answer = httpx.post(f"{server}/query", params={"q": f'CREATE DATABASE "{name}"'})
    assert answer.status_code == 200, answer.text
    return name


class TestInfluxDB(ConnectorContract):
    @pytest.fixture
    def connector(self, server: str, database: str) -> Iterator[InfluxDB]:
        store = InfluxDB.open({"type": "influxdb", "url": server, "database": database,
                               "name": "main"}, Path("."))
        yield store
        store.close()


def test_names_map_to_measurements_and_fields_both_ways() -> None:
    assert series_name("cpu", "value") == "cpu"
    assert series_name("cpu", "usage") == "cpu.usage"
    assert split_name("cpu") == [("cpu", "value")]
    assert split_name("disk.io") == [("disk.io", "value"), ("disk", "io")]


def test_a_field_beside_value_reads_as_a_dotted_series(server: str, database: str) -> None:
    httpx.post(f"{server}/write", params={"db": database},
               content=b"cpu,host=a value=1,usage=50i,up=true,state=\"ok\" 1000000000")
    store = InfluxDB(server, database)
    try:
        assert store.names() == ["cpu", "cpu.state", "cpu.up", "cpu.usage"]
        got = {s.name: s.values[0] for s in store.select(parse_selector('{host="a"}'))}
        assert got == {"cpu": 1.0, "cpu.usage": 50.0, "cpu.up": 1.0, "cpu.state": "ok"}
        with pytest.raises(ConnectorUnsupported, match="deletes whole points, and measurement "
                                                       "'cpu' has fields state, up, usage"):
            store.delete(parse_selector("cpu"))
    finally:
        store.close()


HOSTILE = ['we"ird', "it's", "back\\slash", "sp ace", "com,ma", "eq=ual", "sl/ash", "new\nline",
           "x'); DROP MEASUREMENT cpu; --", '" OR 1=1 --']


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_names_travel_every_path_as_data(server: str, database: str,
                                                 text: str) -> None:
    """A measurement, a field, a tag key and a tag value holding `text`: written, selected (by
    equality and by regular expression), described, counted and deleted, nothing else hit."""
    store = InfluxDB(server, database)
    clean = text.replace("\n", " ")  # line protocol has no escape for a newline
    name = f"m{clean}.f{clean}"
    labels = {f"k{clean}": "x", "tag": f"v{clean}"}
    try:
        store.write(SeriesSet.from_series(CPU))
        assert store.write(SeriesSet.from_series([(name, labels, [S, 2 * S], [1.0, 2.0])])) == 2
        selector = parse_selector(f'{{__name__="{quoted(name)}", tag="{quoted(labels["tag"])}"}}')
        [found] = store.select(selector)
        assert (found.name, dict(found.labels), list(found.values)) == (name, labels, [1.0, 2.0])
        assert store.describe(selector) == [(name, labels)]
        by_regex = parse_selector('{__name__=~"m.*", tag=~"v.*"}')
        assert [s.name for s in store.select(by_regex)] == [name]
        assert store.delete(selector, 2 * S, None) == 1
        assert [list(s.values) for s in store.select(selector)] == [[1.0]]
        assert store.select(parse_selector("cpu")).points == 6  # untouched
    finally:
        store.close()


class TestUnreachableInfluxDB(UnreachableContract):
    @pytest.fixture
    def unreachable(self) -> Unreachable:
        port = free_port()
        return Unreachable(
            InfluxDB(f"http://user:hunter2@127.0.0.1:{port}", "db", label='influxdb "main"'),
            f'influxdb "main" at http://127.0.0.1:{port}', ("hunter2",))


def test_a_missing_database_is_the_servers_word(server: str) -> None:
    store = InfluxDB(server, "nope")
    try:
        with pytest.raises(ConnectorQueryError, match="database not found: nope"):
            store.select(parse_selector("cpu"))
    finally:
        store.close()


# -- pushdown: GROUP BY time gives what tsq's kernels give on the raw points ----------------------

MINUTE = 60 * S
T0 = 1_767_225_600 * S


@pytest.fixture(scope="module")
def irregular(server: str) -> Iterator[InfluxDB]:
    """Irregular points of three series, some on minute boundaries, with a gap of minutes."""
    httpx.post(f"{server}/query", params={"q": 'CREATE DATABASE "pushdown"'})
    rng = np.random.default_rng(11)
    series = []
    for host in ("a", "b", "c"):
        stamps = np.sort(rng.choice(np.arange(T0, T0 + 20 * MINUTE, 5 * S), 150, replace=False))
        stamps = stamps[(stamps < T0 + 6 * MINUTE) | (stamps >= T0 + 11 * MINUTE)]
        series.append(("push", {"host": host, "dc": "gra" if host != "c" else "rbx"}, stamps,
                       rng.uniform(-50, 50, len(stamps)).round(3)))
    store = InfluxDB(server, "pushdown")
    store.write(SeriesSet.from_series(series))
    yield store
    store.close()


@pytest.mark.parametrize("aggregate", sorted(PUSHED_AGGREGATES))
@pytest.mark.parametrize(("grid", "fills"), [
    (Buckets(MINUTE), ()),
    (Buckets(5 * MINUTE, anchor=T0 + 30 * S), ()),
    (Buckets(MINUTE, first=T0, last=T0 + 19 * MINUTE), (Fill("previous"),)),
    (Buckets(2 * MINUTE), (Fill("interpolate"),)),
])
def test_pushed_down_buckets_equal_the_kernels_on_raw_points(
        irregular: InfluxDB, aggregate: str, grid: Buckets, fills: tuple[Fill, ...]) -> None:
    selector = parse_selector('push{dc="gra"}')
    span = (T0 + 30 * S, T0 + 18 * MINUTE)
    pushed = irregular.select_sampled(selector, *span, grid, Aggregator(aggregate), fills)
    local = bucketize(irregular.select(selector, *span), grid, Aggregator(aggregate), fills)
    assert [(s.name, dict(s.labels)) for s in pushed] == [(s.name, dict(s.labels))
                                                          for s in local]
    assert pushed.offsets.tolist() == local.offsets.tolist()
    assert pushed.timestamps.tolist() == local.timestamps.tolist()
    np.testing.assert_allclose(pushed.values, local.values, rtol=1e-12, atol=1e-12)


def test_what_influxql_cannot_compute_exactly_runs_in_tsq(irregular: InfluxDB,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Warp 10's right-closed buckets and percentiles (InfluxDB's are nearest-rank) are
    computed by tsq on the raw points: the query sent has no GROUP BY time."""
    sent: list[str] = []
    original = irregular._rows

    def spy(query: str) -> Any:
        sent.append(query)
        return original(query)

    monkeypatch.setattr(irregular, "_rows", spy)
    selector, span = parse_selector("push"), (T0, T0 + 10 * MINUTE)
    irregular.select_sampled(selector, *span, Buckets(MINUTE, closed="right"), Aggregator("mean"))
    irregular.select_sampled(selector, *span, Buckets(MINUTE), Aggregator("percentile", 90))
    assert sent and not any("GROUP BY time" in query for query in sent)
    irregular.select_sampled(selector, *span, Buckets(MINUTE), Aggregator("mean"))
    assert 'SELECT mean("value") AS "value"' in sent[-1] and "GROUP BY time(60000000000ns, " \
        "0ns), * fill(none)" in sent[-1]


def test_a_tsl_query_explains_what_influxdb_computed_and_what_tsq_did(
        irregular: InfluxDB) -> None:
    source = ('select("push").from(1767225600000, 1767226200000)'
              '.sampleBy(1m, mean, "none").groupBy(["dc"], mean)')
    with explaining() as plan:
        answer = tsl.query(source, irregular)
    sent = [step for step in plan if step["where"].startswith("influxdb at http")]
    assert any("GROUP BY time(60000000000ns, 0ns), * fill(none)" in step["step"]
               for step in sent)
    assert plan[-1] == {"where": "tsq", "step": f"groupBy([dc], mean): 2 series, "
                                                f"{sum(len(s['values']) for s in answer['series'])} points"}
