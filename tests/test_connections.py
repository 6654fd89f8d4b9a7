"""Every host call of a run reaches the connector its loop file names, not the embedded store:
JavaScript's db.*, a rollup's reads and writes and a retention's deletes. Only `embedded` is
implemented, so a test double stands in for a second back-end: a connector type registered for
these tests that keeps its points in memory and records what it was asked."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tsq.connectors import CONNECTORS, ConnectorType
from tsq.connectors.base import Capabilities
from tsq.connectors.embedded import EmbeddedStore
from tsq.selector import Selector, parse_selector
from tsq.series import SeriesSet
from tsq.service import Service

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = 1_000_000_000  # ns


class RecordingConnector:
    """A back-end of its own (an in-memory store) that records each call by method name."""

    capabilities = Capabilities()  # no sampling: the service buckets for it
    opened: ClassVar[dict[str, RecordingConnector]] = {}

    @classmethod
    def open(cls, config: Mapping[str, Any], data_dir: Path) -> RecordingConnector:
        connector = cls()
        cls.opened[str(config["url"])] = connector
        return connector

    def __init__(self) -> None:
        self.inner = EmbeddedStore(":memory:")
        self.calls: list[str] = []

    def select(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> SeriesSet:
        self.calls.append("select")
        return self.inner.select(selector, start, end)

    def write(self, series: SeriesSet) -> int:
        self.calls.append("write")
        return self.inner.write(series)

    def delete(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> int:
        self.calls.append("delete")
        return self.inner.delete(selector, start, end)

    def names(self) -> list[str]:
        return self.inner.names()

    def labels(self, selector: Selector | None = None) -> dict[str, list[str]]:
        return self.inner.labels(selector)

    def describe(self, selector: Selector) -> list[tuple[str, dict[str, str]]]:
        self.calls.append("describe")
        return self.inner.describe(selector)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, RecordingConnector]]:
    """Connector type `recording` (url required), and the instances the service opened."""
    monkeypatch.setitem(CONNECTORS, "recording",  # type: ignore[arg-type]
                        ConnectorType(("url",), f"{__name__}:RecordingConnector"))
    RecordingConnector.opened.clear()
    yield RecordingConnector.opened
    RecordingConnector.opened.clear()


CONNECTORS_YAML = """
connectors:
  east: {type: recording, url: "http://east.invalid"}
  west: {type: recording, url: "http://west.invalid"}
  also-east: {type: recording, url: "http://east.invalid"}
"""
JS = """export default async function () {
  await db.write("route_cpu,host=%s value=1 1000000000\\nroute_cpu,host=%s value=2 2000000000");
  const found = await db.select("route_cpu");
  const removed = await db.delete("route_cpu", {start: 1500, end: 3000});
  return {series: found.length, points: found[0].values.length, removed: removed.deleted};
}
"""


def _series(connector: Any, selector: str) -> dict[str, list[int]]:
    return {f"{s.name}/{s.labels.get('host', '')}": s.timestamps.tolist()
            for s in connector.select(parse_selector(selector))}


def test_js_host_calls_reach_the_loops_own_connector(
        service: Service, recording: dict[str, RecordingConnector]) -> None:
    text = CONNECTORS_YAML + """functions:
  route-east: {handler: east.js, connector: east}
  route-west: {handler: west.js, connector: west}
  route-east-again: {handler: again.js, connector: also-east}
"""
    handlers = {"east.js": JS % ("e", "e"), "west.js": JS % ("w", "w"),
                "again.js": "export default async () => (await db.select('route_cpu')).length;"}
    service.deploy(text, "loops.yml", handlers.get)

    east = service.run("route-east")
    assert east.status == "success", east
    assert set(recording) == {"http://east.invalid"}  # opened on first use, one per back-end
    west = service.run("route-west")
    assert west.status == "success", west
    assert east.result == west.result == {"series": 1, "points": 2, "removed": 1}

    # Each back-end holds what its own loop wrote (its delete ran there too), and the
    # embedded store none of it.
    for url in ("http://east.invalid", "http://west.invalid"):
        assert set(recording[url].calls) == {"write", "select", "delete"}
    assert _series(recording["http://east.invalid"].inner, "route_cpu") == {"route_cpu/e": [S]}
    assert _series(recording["http://west.invalid"].inner, "route_cpu") == {"route_cpu/w": [S]}
    assert _series(service.store, "route_cpu") == {}

    # Another name for the same configuration is the same back-end, not a second instance.
    again = service.run("route-east-again")
    assert again.status == "success" and again.result == 1
    assert set(recording) == {"http://east.invalid", "http://west.invalid"}


def test_rollup_and_retention_use_the_connector_they_name(
        service: Service, recording: dict[str, RecordingConnector]) -> None:
    text = CONNECTORS_YAML + """functions:
  route-1m:
    rollup: {from: route_raw, to: route_raw_1m, span: 1m, aggregate: mean}
    connector: west
  route-retention:
    retention: {select: route_raw, keep: 1h, covered_by: [route-1m]}
    connector: west
"""
    service.deploy(text, "loops.yml", lambda name: None)
    # The raw points live only in the `west` back-end: every 10 s inside the first hour.
    west = service.connections.of({"type": "recording", "url": "http://west.invalid"})
    assert isinstance(west, RecordingConnector)
    stamps = [int(T0.timestamp() + 10 * i) * S for i in range(1, 360)]
    west.inner.write(SeriesSet.from_series([("route_raw", {"host": "a"}, stamps,
                                             [float(i) for i in range(359)])]))
    west.calls.clear()

    hour = (T0, datetime(2026, 1, 1, 1, tzinfo=UTC))
    rolled = service.run("route-1m", window=hour)
    assert rolled.status == "success", rolled
    assert rolled.result["written"] == 60
    assert len(west.inner.select(parse_selector("route_raw_1m"))[0].timestamps) == 60
    assert "write" in west.calls and "select" in west.calls

    # An hour later, retention deletes the covered raw hour, from `west`.
    kept = service.run("route-retention", window=(hour[1], datetime(2026, 1, 1, 2, tzinfo=UTC)))
    assert kept.status == "success", kept
    assert kept.result["deleted"] == 359 and "delete" in west.calls
    assert west.inner.select(parse_selector("route_raw")).points == 0
    assert _series(service.store, "route_raw") == _series(service.store, "route_raw_1m") == {}


def test_a_loop_reads_one_connector_and_writes_another_by_name(
        service: Service, recording: dict[str, RecordingConnector]) -> None:
    """The common case: read Prometheus, write InfluxDB. `{connector: "name"}` on db.* and TSL's
    connect() reach that connector of the loop file; any other name is refused, naming them."""
    text = CONNECTORS_YAML + """functions:
  route-copy: {handler: copy.js, connector: east}
  route-tsl: {handler: copy.tsl, connector: east}
  route-typo: {handler: typo.js, connector: east}
"""
    handlers = {
        "copy.js": """export default async function () {
  const found = await db.select("route_src");
  await db.write(found.map(s => ({...s, name: "route_copy"})), {connector: "west"});
  const back = await db.select("route_copy", {connector: "west"});
  const removed = await db.delete("route_copy", {start: 0, end: 1500, connector: "west"});
  return {copied: back.length, removed: removed.deleted};
}""",
        "copy.tsl": 'connect("prometheus", "west").select("route_copy").from(0, 5000)'
                    '.rename("route_tsl").store("t")\n',
        "typo.js": 'export default async () => db.select("x", {connector: "wset"});'}
    service.deploy(text, "loops.yml", handlers.get)
    east = service.connections.of({"type": "recording", "url": "http://east.invalid"})
    assert isinstance(east, RecordingConnector)
    east.inner.write(SeriesSet.from_series([("route_src", {"host": "a"}, [S, 2 * S],
                                             [1.0, 2.0])]))

    copied = service.run("route-copy")
    assert copied.status == "success", copied
    assert copied.result == {"copied": 1, "removed": 1}
    west = service.connections.of({"type": "recording", "url": "http://west.invalid"})
    assert isinstance(west, RecordingConnector)
    assert _series(west.inner, "route_copy") == {"route_copy/a": [2 * S]}
    assert _series(east.inner, "route_copy") == {}

    stored = service.run("route-tsl")
    assert stored.status == "success", stored
    assert _series(west.inner, "route_tsl") == {"route_tsl/a": [2 * S]}  # read and stored there

    typo = service.run("route-typo")
    assert typo.status == "failed" and typo.error is not None
    assert (typo.error.type, typo.error.message) == (
        "TypeError", "no connector named 'wset' in the loop file of route-typo (declared: "
                     "also-east, east, west)")
