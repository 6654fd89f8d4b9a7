"""The Prometheus connector keeps the connector contract against a real Prometheus 2.42 (remote
write receiver and admin API on, out-of-order window open) and a real VictoriaMetrics 1.79, each
started on 127.0.0.1 in a temporary directory; sends every name as data; maps `[start, end)`
to its requests exactly; and fails clearly."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import cramjam
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import prometheus as prometheus_server
from benchmarks import victoriametrics as vm_server
from benchmarks.influxdb import free_port
from tests.connectors.contract import (
    CPU,
    ConnectorContract,
    S,
    Unreachable,
    UnreachableContract,
    quoted,
)
from tsq.connectors import CONNECTORS, load_connector_class
from tsq.connectors.prometheus import (
    MS,
    Prometheus,
    VictoriaMetrics,
    promql_selector,
    window_request,
)
from tsq.connectors.remotewrite import encode_request, snappy_request, varint
from tsq.errors import (
    ConnectorAuthError,
    ConnectorBadAnswer,
    ConnectorQueryError,
    ConnectorUnsupported,
)
from tsq.selector import parse_selector
from tsq.series import SeriesSet

needs_prometheus = pytest.mark.skipif(
    not prometheus_server.available(),
    reason="Prometheus 2.42 is not installed here (apt-get install prometheus; .ci/run installs it)")
needs_vm = pytest.mark.skipif(
    not vm_server.available(),
    reason="VictoriaMetrics 1.79 is not installed here (apt-get install victoria-metrics; "
           ".ci/run installs it)")
WINDOW = "100y"  # the contract writes samples of 1970


@pytest.fixture
def prometheus_url() -> Iterator[str]:
    """A fresh server for each test: the contract starts from an empty store, and Prometheus
    cannot drop a series' name from its index at once."""
    with prometheus_server.prometheus(writable=WINDOW) as base:
        yield base


@pytest.fixture
def vm_url() -> Iterator[str]:
    with vm_server.victoriametrics() as base:
        yield base


@pytest.mark.slow
@needs_prometheus
class TestPrometheus(ConnectorContract):
    @pytest.fixture
    def connector(self, prometheus_url: str) -> Iterator[Prometheus]:
        store = Prometheus.open({"type": "prometheus", "url": prometheus_url, "name": "main"},
                                Path("."))
        yield store
        store.close()


@pytest.mark.slow
@needs_vm
class TestVictoriaMetrics(ConnectorContract):
    @pytest.fixture
    def connector(self, vm_url: str) -> Iterator[Prometheus]:
        store = VictoriaMetrics.open({"type": "victoriametrics", "url": vm_url, "name": "main"},
                                     Path("."))
        yield store
        store.close()


# -- how requests are made -----------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end", "expected"), [
    (2 * S, 3 * S, (2999, 1000)),  # [2 s, 3 s): the query ends on its last millisecond
    (2 * S + 1, 3 * S + 1, (3000, 1000)),  # nanoseconds: the first whole millisecond in it
    (None, 2 * S, (1999, 1999)),  # an open start: from 1 ms after 1970
    (2 * S, 2 * S, None),  # empty
    (2 * S + 1, 2 * S + MS - 1, None),  # no whole millisecond inside
])
def test_a_window_becomes_the_last_millisecond_and_a_range(
        start: int | None, end: int | None, expected: tuple[int, int] | None) -> None:
    assert window_request(start, end, now_ms=10_000) == expected


def test_an_open_end_reaches_a_year_past_now() -> None:
    assert window_request(0, None, now_ms=5000) == (5000 + 366 * 86_400_000,
                                                     5000 + 366 * 86_400_000)


@pytest.mark.parametrize(("selector", "expected"), [
    ("cpu", '{__name__="cpu"}'),
    ('cpu{dc="gra", host=~"web.*"}', '{__name__="cpu", dc="gra", host=~"web.*"}'),
    ('{host!="a"}', '{__name__=~".+", host!="a"}'),  # PromQL wants a matcher refusing ""
    ('{__name__=~"m.m"}', '{__name__=~".+", __name__=~"m.m"}'),
    ("disk.io", '{__name__="disk.io"}'),  # not a PromQL name: still a valid query
    ('cpu{q="a\\"b\\\\c"}', '{__name__="cpu", q="a\\"b\\\\c"}'),
    ('cpu{host.name="a"}', None),  # a label Prometheus cannot hold: no series matches
    ('cpu{host.name=""}', '{__name__="cpu"}'),  # … and every series has it empty
])
def test_selectors_become_promql(selector: str, expected: str | None) -> None:
    assert promql_selector(parse_selector(selector)) == expected


def test_a_newline_in_a_value_is_escaped() -> None:
    from tsq.selector import Matcher, Selector
    selector = Selector("cpu", (Matcher.of("q", "=", "a\nb"),))
    assert promql_selector(selector) == '{__name__="cpu", q="a\\nb"}'


def test_remote_write_encoding_by_hand() -> None:
    """The bytes protoc's classes give for WriteRequest{TimeSeries{labels: __name__="up";
    samples: {value 1.0, timestamp 1000}}}."""
    body = encode_request([({"__name__": "up"}, [1000], [1.0])])
    label = b"\x0a\x08__name__\x12\x02up"
    sample = b"\x09" + struct.pack("<d", 1.0) + b"\x10\xe8\x07"
    series = b"\x0a" + bytes([len(label)]) + label + b"\x12" + bytes([len(sample)]) + sample
    assert body == b"\x0a" + bytes([len(series)]) + series
    assert bytes(cramjam.snappy.decompress_raw(snappy_request(
        [({"__name__": "up"}, [1000], [1.0])]))) == body


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_varints_read_back(number: int) -> None:
    encoded = varint(number)
    value = sum((byte & 0x7F) << (7 * i) for i, byte in enumerate(encoded))
    assert all(byte & 0x80 for byte in encoded[:-1]) and not encoded[-1] & 0x80
    assert value - (1 << 64 if value >= 1 << 63 else 0) == number


def test_both_types_are_registered_with_their_keys() -> None:
    for kind, name in (("prometheus", "Prometheus"), ("victoriametrics", "VictoriaMetrics")):
        assert load_connector_class(kind).__name__ == name
        assert CONNECTORS[kind].keys == ("type", "url", "token", "username", "password")


# -- against the servers -------------------------------------------------------------------------


HOSTILE = ['we"ird', "it's", "back\\slash", "sp ace", "com,ma", "eq=ual", "sl/ash", "new\nline",
           "x'); DROP TABLE cpu; --", '" OR 1=1 --', "{}[]", "ünï©ødé", "tab\tnul\x00"]


@pytest.mark.slow
@needs_prometheus
def test_hostile_label_values_travel_every_path_as_data(prometheus_url: str) -> None:
    """A label value holding each text: written, selected by equality and by regular
    expression, described, counted and deleted, nothing else hit."""
    store = Prometheus(prometheus_url)
    try:
        store.write(SeriesSet.from_series(CPU))
        for index, text in enumerate(HOSTILE):
            labels = {"tag": f"v{text}", "i": str(index)}
            assert store.write(SeriesSet.from_series([("evil", labels, [S, 2 * S],
                                                       [1.0, 2.0])])) == 2
            selector = parse_selector(f'evil{{tag="{quoted(labels["tag"])}"}}')
            [found] = store.select(selector)
            assert (dict(found.labels), list(found.values)) == (labels, [1.0, 2.0])
            assert store.describe(selector) == [("evil", labels)]
            by_regex = parse_selector(f'evil{{tag=~"(?s)v.*", i="{index}"}}')
            assert [dict(s.labels) for s in store.select(by_regex)] == [labels]
            assert store.delete(selector, 2 * S, None) == 1
            assert [list(s.values) for s in store.select(selector)] == [[1.0]]
        assert store.select(parse_selector("cpu")).points == 6  # untouched
    finally:
        store.close()


@pytest.mark.slow
@needs_prometheus
def test_a_window_reads_exactly_start_to_end(prometheus_url: str) -> None:
    """Samples on both bounds and one millisecond either side of them."""
    store = Prometheus(prometheus_url)
    stamps = [999 * MS, 1000 * MS, 1001 * MS, 1999 * MS, 2000 * MS, 2001 * MS]
    try:
        store.write(SeriesSet.from_series([("edge", {}, stamps, [1.0, 2, 3, 4, 5, 6])]))
        [inside] = store.select(parse_selector("edge"), 1000 * MS, 2000 * MS)
        assert list(inside.values) == [2.0, 3.0, 4.0]
        [ns] = store.select(parse_selector("edge"), 1000 * MS + 1, 2000 * MS + 1)
        assert list(ns.values) == [3.0, 4.0, 5.0]  # nanoseconds: whole milliseconds inside
        assert store.delete(parse_selector("edge"), 1000 * MS, 2000 * MS) == 3
        assert list(store.select(parse_selector("edge"))[0].values) == [1.0, 5.0, 6.0]
    finally:
        store.close()


@pytest.mark.slow
@needs_prometheus
def test_names_prometheus_cannot_select_are_refused_on_write(prometheus_url: str) -> None:
    store = Prometheus(prometheus_url, label='prometheus connector "main"')
    try:
        with pytest.raises(ConnectorQueryError, match=r"cannot store a series named 'disk\.io'"):
            store.write(SeriesSet.from_series([("disk.io", {}, [S], [1.0])]))
        with pytest.raises(ConnectorQueryError, match="with label 'host-name'"):
            store.write(SeriesSet.from_series([("disk", {"host-name": "a"}, [S], [1.0])]))
        assert store.names() == []
    finally:
        store.close()


@pytest.mark.slow
@needs_prometheus
def test_a_server_without_the_receiver_or_admin_api_names_the_flag() -> None:
    with prometheus_server.prometheus() as base:
        store = Prometheus(base)
        try:
            with pytest.raises(ConnectorUnsupported, match="remote write receiver"):
                store.write(SeriesSet.from_series(CPU))
        finally:
            store.close()


@pytest.mark.slow
@needs_vm
def test_victoriametrics_staleness_markers_are_not_data(vm_url: str) -> None:
    stale = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
    answer = httpx.post(f"{vm_url}/api/v1/write",
                        content=snappy_request([({"__name__": "up"}, [1000, 2000, 3000],
                                                 [1.0, stale, 3.0])]),
                        headers={"Content-Encoding": "snappy"})
    assert answer.status_code == 204, answer.text
    httpx.get(f"{vm_url}/internal/force_flush")  # visible to reads now, not in a second
    store = VictoriaMetrics(vm_url)
    try:
        [up] = store.select(parse_selector("up"))
        assert (list(up.timestamps), list(up.values)) == ([S, 3 * S], [1.0, 3.0])
    finally:
        store.close()


class TestUnreachablePrometheus(UnreachableContract):
    @pytest.fixture
    def unreachable(self) -> Unreachable:
        port = free_port()
        return Unreachable(
            Prometheus(f"http://user:hunter2@127.0.0.1:{port}", token="s3cret",
                       label='prometheus connector "main"'),
            f'prometheus connector "main" at http://127.0.0.1:{port}', ("hunter2", "s3cret"),
            asked='{__name__="cpu"}[999ms]')


MATRIX = {"status": "success", "data": {"resultType": "matrix", "result": [
    {"metric": {"__name__": "cpu"}, "values": [[1, "1"]]}]}}


def _double(path: str, answer: httpx.Response) -> Prometheus:
    """A connector whose server answers `path` with `answer`, and queries with one sample."""
    def handler(request: httpx.Request) -> httpx.Response:
        return answer if request.url.path == path else httpx.Response(200, json=MATRIX)
    store = Prometheus("http://127.0.0.1:9", label='prometheus connector "main"')
    store._server.client = httpx.Client(base_url=store._server.url,
                                        transport=httpx.MockTransport(handler))
    return store


@pytest.mark.parametrize(("path", "answer", "error", "message"), [
    ("/api/v1/query", httpx.Response(400, json={"status": "error", "errorType": "bad_data",
                                                "error": "parse error"}),
     ConnectorQueryError,
     r"""answered '\{__name__="cpu"\}\[999ms\]' with HTTP 400: parse error"""),
    ("/api/v1/query", httpx.Response(200, content=b"<html>a proxy</html>"),
     ConnectorBadAnswer, "is not Prometheus's API: not JSON"),
    ("/api/v1/query", httpx.Response(200, json={"status": "success", "data": {
        "resultType": "matrix", "result": [{"metric": {"a": "b"}, "values": [[1, "1"]]}]}}),
     ConnectorBadAnswer, "a series without a name"),
    ("/api/v1/query", httpx.Response(403, text="forbidden"), ConnectorAuthError, "HTTP 403"),
    ("/api/v1/admin/tsdb/delete_series",
     httpx.Response(500, json={"status": "error", "errorType": "unavailable",
                               "error": "admin APIs disabled"}),
     ConnectorUnsupported, "start Prometheus with --web.enable-admin-api"),
])
def test_answers_of_the_server_map_to_connector_errors(
        path: str, answer: httpx.Response, error: type[Exception], message: str) -> None:
    store = _double(path, answer)
    with pytest.raises(error, match=message) as caught:
        if "delete" in path:
            store.delete(parse_selector("cpu"))
        else:
            store.select(parse_selector("cpu"), 0, S)
    assert 'prometheus connector "main" at http://127.0.0.1:9' in str(caught.value)
