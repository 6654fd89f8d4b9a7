"""The InfluxDB connector keeps the connector contract against a real InfluxDB 1.6 (started on
127.0.0.1 in a temporary directory), quotes every name it sends, and fails clearly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.influxdb import available, free_port, influxdb
from tests.connectors.contract import CPU, ConnectorContract, S
from tsq.connectors.influxdb import InfluxDB, series_name, split_name
from tsq.errors import ConnectorQueryError, ConnectorUnavailable, ConnectorUnsupported
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
        selector = parse_selector(f'{{__name__="{_quoted(name)}", tag="{_quoted(labels["tag"])}"}}')
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


def _quoted(text: str) -> str:
    """`text` inside a selector's double quotes."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def test_an_unreachable_server_fails_clearly_naming_it_without_secrets() -> None:
    port = free_port()
    store = InfluxDB(f"http://user:hunter2@127.0.0.1:{port}", "db", label='influxdb "main"')
    try:
        with pytest.raises(ConnectorUnavailable) as caught:
            store.select(parse_selector("cpu"))
        assert f'influxdb "main" at http://127.0.0.1:{port}' in caught.value.message
        assert "hunter2" not in caught.value.message
    finally:
        store.close()


def test_a_missing_database_is_the_servers_word(server: str) -> None:
    store = InfluxDB(server, "nope")
    try:
        with pytest.raises(ConnectorQueryError, match="database not found: nope"):
            store.select(parse_selector("cpu"))
    finally:
        store.close()
