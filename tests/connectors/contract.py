"""The contract every connector keeps. A connector's test module subclasses `ConnectorContract`
and provides a `connector` fixture giving an empty store; and subclasses `UnreachableContract`
with an `unreachable` fixture (no server needed) for how it fails when its server is not there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from tsq.connectors.base import Connector
from tsq.errors import BadRequest, ConnectorUnavailable, ConnectorUnsupported
from tsq.selector import parse_selector
from tsq.series import SeriesSet

S = 1_000_000_000
CPU = [("cpu", {"dc": "gra", "host": "web01"}, [1 * S, 2 * S, 3 * S], [1.0, 2.0, 3.0]),
       ("cpu", {"dc": "gra", "host": "web02"}, [1 * S, 2 * S], [10.0, 20.0]),
       ("cpu", {"dc": "rbx", "host": "db01"}, [2 * S], [100.0]),
       ("mem", {"dc": "gra", "host": "web01"}, [1 * S], [0.5])]


def quoted(text: str) -> str:
    """`text` inside a selector's double quotes (hostile names, escaped as a user writes them)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def hosts(result: SeriesSet) -> list[str]:
    return [s.labels.get("host", "") for s in result]


class ConnectorContract:
    @pytest.fixture
    def loaded(self, connector: Connector) -> Connector:
        assert connector.write(SeriesSet.from_series(CPU)) == 7
        return connector

    def test_round_trip_keeps_names_labels_times_and_values(self, loaded: Connector) -> None:
        result = loaded.select(parse_selector("cpu"))
        assert sorted(hosts(result)) == ["db01", "web01", "web02"]
        web01 = next(s for s in result if s.labels["host"] == "web01")
        assert web01.name == "cpu" and dict(web01.labels) == {"dc": "gra", "host": "web01"}
        assert list(web01.timestamps) == [1 * S, 2 * S, 3 * S]
        assert list(web01.values) == [1.0, 2.0, 3.0]

    @pytest.mark.parametrize(("selector", "expected"), [
        ('cpu{dc="gra"}', ["web01", "web02"]),
        ('cpu{dc!="gra"}', ["db01"]),
        ('cpu{host=~"web.*"}', ["web01", "web02"]),
        ('cpu{host!~"web.*"}', ["db01"]),
        ('cpu{host=~"web"}', []),  # regular expressions match the whole value
        ('{host="web01"}', ["web01", "web01"]),
        ('{__name__=~"m.m"}', ["web01"]),
        ('cpu{nope=""}', ["db01", "web01", "web02"]),  # a missing label equals ""
        ("disk", []),
    ])
    def test_label_matchers(self, loaded: Connector, selector: str,
                            expected: list[str]) -> None:
        assert sorted(hosts(loaded.select(parse_selector(selector)))) == expected

    def test_time_range_is_start_inclusive_end_exclusive(self, loaded: Connector) -> None:
        result = loaded.select(parse_selector('cpu{host="web01"}'), 2 * S, 3 * S)
        assert [list(s.timestamps) for s in result] == [[2 * S]]
        assert loaded.select(parse_selector('cpu{host="web01"}'), None, 2 * S)[0].values[0] == 1

    def test_a_point_written_again_replaces_the_old_one(self, loaded: Connector) -> None:
        if not loaded.capabilities.replaces:
            pytest.skip(f"{type(loaded).__name__} does not promise that a point written again "
                        f"replaces the one it holds (capabilities.replaces is False)")
        loaded.write(SeriesSet.from_series(
            [("cpu", {"dc": "gra", "host": "web01"}, [2 * S, 4 * S], [-2.0, 4.0])]))
        [web01] = loaded.select(parse_selector('cpu{host="web01"}'))
        assert list(web01.values) == [1.0, -2.0, 3.0, 4.0]

    def test_delete_by_selector_and_range(self, loaded: Connector) -> None:
        if not loaded.capabilities.range_delete:  # refused, not widened to whole series
            with pytest.raises(ConnectorUnsupported, match="deletes whole series only"):
                loaded.delete(parse_selector('cpu{dc="gra"}'), 2 * S, None)
            assert loaded.delete(parse_selector('cpu{dc="gra"}')) == 5
            assert hosts(loaded.select(parse_selector("cpu"))) == ["db01"]
            return
        assert loaded.delete(parse_selector('cpu{dc="gra"}'), 2 * S, None) == 3
        left = {s.labels["host"]: list(s.values) for s in loaded.select(parse_selector("cpu"))
                if len(s.values)}
        assert left == {"web01": [1.0], "web02": [10.0], "db01": [100.0]}
        assert len(loaded.select(parse_selector("mem"))[0].values) == 1

    def test_names_and_labels(self, loaded: Connector) -> None:
        assert loaded.names() == ["cpu", "mem"]
        assert loaded.labels(parse_selector('cpu{dc="gra"}')) == {
            "dc": ["gra"], "host": ["web01", "web02"]}
        assert loaded.labels()["host"] == ["db01", "web01", "web02"]

    def test_describe_lists_series_in_select_order(self, loaded: Connector) -> None:
        selector = parse_selector('cpu{host=~"web.*|db01"}')
        described = loaded.describe(selector)
        assert described == [(s.name, dict(s.labels)) for s in loaded.select(selector)]
        assert [labels["host"] for _, labels in described] == ["web01", "web02", "db01"]

    def test_values_are_data_never_sql(self, connector: Connector) -> None:
        sneaky = "x'); DROP TABLE points; --"
        connector.write(SeriesSet.from_series([("evil", {"q": sneaky}, [S], [1.0])]))
        [found] = connector.select(parse_selector(f'evil{{q="{sneaky}"}}'))
        assert found.labels["q"] == sneaky and list(found.values) == [1.0]
        assert connector.names() == ["evil"]

    def test_strings_and_nan(self, connector: Connector) -> None:
        status = SeriesSet.from_series(
            [("status", {}, [S, 2 * S], np.array(["up", "down"], dtype=object))])
        if connector.capabilities.strings:
            connector.write(status)
            assert list(connector.select(parse_selector("status"))[0].values) == ["up", "down"]
        else:  # a back-end of numbers only (Prometheus) refuses them, naming the series
            with pytest.raises(ConnectorUnsupported, match=r"status.*numbers only"):
                connector.write(status)
        connector.write(SeriesSet.from_series([("gauge", {}, [S, 2 * S], [np.nan, 1.5])]))
        [gauge] = connector.select(parse_selector("gauge"))
        if connector.capabilities.nan:
            assert np.isnan(gauge.values[0]) and gauge.values[1] == 1.5
        else:  # a back-end without NaN (InfluxDB) keeps the other points
            assert (list(gauge.timestamps), list(gauge.values)) == ([2 * S], [1.5])

    def test_empty_and_bad_selectors(self, loaded: Connector) -> None:
        assert len(loaded.select(parse_selector("nothing"))) == 0
        with pytest.raises(BadRequest, match="at column 7: expected one of = != =~ !~"):
            parse_selector('cpu{dc}')
        with pytest.raises(BadRequest, match="bad regular expression"):
            parse_selector('cpu{host=~"("}')


# -- a server that is not there ------------------------------------------------------------------

CALLS: dict[str, Callable[[Connector], object]] = {
    "select": lambda store: store.select(parse_selector("cpu"), 0, S),
    "write": lambda store: store.write(SeriesSet.from_series(CPU)),
    "names": lambda store: store.names(),
}


@dataclass(frozen=True)
class Unreachable:
    """A connector pointed at a port nothing listens on, with credentials in its URL or keys."""

    connector: Connector
    where: str  # how every message must name it: the connector and its URL, no credentials
    secrets: tuple[str, ...]  # what no message may contain
    calls: tuple[str, ...] = ("select",)  # which of CALLS to try
    asked: str = ""  # what the select message must also name: the query the server missed


class UnreachableContract:
    def test_an_unreachable_server_fails_clearly_naming_it_without_secrets(
            self, unreachable: Unreachable) -> None:
        try:
            for call in unreachable.calls:
                with pytest.raises(ConnectorUnavailable) as caught:
                    CALLS[call](unreachable.connector)
                message = caught.value.message
                assert unreachable.where in message, (call, message)
                assert call != "select" or unreachable.asked in message, message
                assert not [secret for secret in unreachable.secrets if secret in message]
        finally:
            unreachable.connector.close()
