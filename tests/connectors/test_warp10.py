"""The Warp 10 connector keeps the connector contract against tsq's own Warp-10-compatible API
(`/api/v0/exec`, `/api/v0/update`, `/api/v0/delete` of a real tsq server on 127.0.0.1 with a
temporary data directory: no Warp 10 server is packaged here); sends every name as data through
every path; maps `[start, end)` to FETCH exactly; and fails clearly, never showing a token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import tsq_server
from tests.connectors.contract import CPU, ConnectorContract, S, Unreachable, UnreachableContract
from tsq.connectors import CONNECTORS, load_connector_class
from tsq.connectors.warp10 import LAST_TICK, Warp10, fetch_request, warp10_selector
from tsq.errors import BadRequest, ConnectorAuthError, ConnectorQueryError
from tsq.gtsformat import format_lines, format_selector, parse_selector, parse_update
from tsq.masking import mask_spec
from tsq.selector import Selector
from tsq.selector import parse_selector as tsq_selector
from tsq.series import SeriesSet

US = 1_000
TOKEN = "s3cr3t-t0ken/+%"


@pytest.fixture
def warp10_url() -> Iterator[str]:
    """A fresh server for each test: the contract starts from an empty store."""
    with tsq_server() as url:
        yield url


@pytest.fixture
def connector(warp10_url: str) -> Iterator[Warp10]:
    store = Warp10.open({"type": "warp10", "url": warp10_url, "token": TOKEN, "name": "main"},
                        Path("."))
    yield store
    store.close()


class TestWarp10OnTsq(ConnectorContract):
    """`connector` is the fixture above: tsq's own server behind the Warp 10 API."""


# -- hostile names and values, through every path ------------------------------------------------

HOSTILE = ["a b", "x{y}", "c,d=e", "100%", "'q'\"", "plus+sign", "new\nline", "é→✓", "~tilde",
           "=eq", "back\\slash", "semi;colon//", "<% MACRO %>"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_names_and_values_are_data_everywhere(connector: Warp10, text: str) -> None:
    name = "n." + text
    labels = {"k" + text: text, "plain": "v"}
    series = SeriesSet.from_series([
        (name, labels, [S, 2 * S], [1.0, 2.0]),
        ("s" + text, {"k": text}, [S], np.array([text], dtype=object))])
    assert connector.write(series) == 3
    selector = Selector(name, tsq_selector('{plain="v"}').matchers)
    [found] = connector.select(selector)
    assert (found.name, dict(found.labels), list(found.values)) == (name, labels, [1.0, 2.0])
    [strings] = connector.select(Selector("s" + text))
    assert list(strings.values) == [text]
    assert connector.describe(selector) == [(name, labels)]
    assert connector.names() == sorted([name, "s" + text])
    assert connector.labels(Selector(name))["k" + text] == [text]
    assert connector.delete(selector, 2 * S, None) == 1
    assert list(connector.select(selector)[0].values) == [1.0]
    assert connector.delete(selector) == 1


def test_a_regex_matcher_goes_to_the_server_and_is_checked_again(connector: Warp10) -> None:
    connector.write(SeriesSet.from_series(CPU))
    assert [s.labels["host"] for s in connector.select(tsq_selector('cpu{host=~"web0[12]"}'))
            ] == ["web01", "web02"]


def test_a_delete_the_server_cannot_name_is_done_series_by_series(connector: Warp10) -> None:
    connector.write(SeriesSet.from_series(CPU))
    # host!~"web01" has no Warp 10 selector: each series it matches is deleted by its labels
    assert connector.delete(tsq_selector('cpu{host!~"web01"}')) == 3
    assert [s.labels["host"] for s in connector.select(tsq_selector("cpu"))] == ["web01"]


def test_a_delete_that_would_take_more_series_is_refused(connector: Warp10) -> None:
    connector.write(SeriesSet.from_series([("m", {}, [S], [1.0]),
                                           ("m", {"dc": "gra"}, [S], [2.0])]))
    # m{} in Warp 10 is every series of class m, so m{dc=""} cannot be deleted alone
    with pytest.raises(ConnectorQueryError, match="cannot delete m"):
        connector.delete(tsq_selector('m{dc=""}'))
    assert connector.select(tsq_selector("m")).points == 2


# -- how requests are made -----------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end", "expected"), [
    (2 * S, 3 * S, (3 * S // US - 1, S // US)),  # [2 s, 3 s): ends on its last tick
    (2 * S + 1, 3 * S + 1, (3 * S // US, S // US)),  # nanoseconds: the whole ticks inside
    (2 * S, 2 * S, None),  # empty
    (2 * S + 1, 2 * S + US - 1, None),  # no whole tick inside
])
def test_a_window_becomes_the_last_tick_and_a_timespan(
        start: int, end: int, expected: tuple[int, int] | None) -> None:
    assert fetch_request(start, end) == expected


def test_open_bounds_stay_in_int64_nanoseconds() -> None:
    last, span = fetch_request(None, None) or (0, 0)
    assert last == LAST_TICK and last * US + 1 < 2**63
    assert ((last - span) * US + 1) >= -(2**63)  # what tsq's FETCH reads first


@pytest.mark.parametrize(("selector", "expected"), [
    ("cpu", ("=cpu", {})),
    ('cpu{dc="gra", host=~"web.*"}', ("=cpu", {"dc": "=gra", "host": "~web.*"})),
    ('cpu{dc!="gra", host!~"x"}', ("=cpu", {})),  # no negation in Warp 10: checked in tsq
    ('cpu{dc="", host=~".*"}', ("=cpu", {})),  # they accept a missing label: checked in tsq
    ('{__name__=~"m.m"}', ("~m.m", {})),
    ('{host="a"}', ("~(?s).*", {"host": "=a"})),
])
def test_selectors_become_warp10_selectors(selector: str,
                                           expected: tuple[str, dict[str, str]]) -> None:
    assert warp10_selector(tsq_selector(selector)) == expected


def test_the_input_format_escapes_names_and_values() -> None:
    series = SeriesSet.from_series([
        ("a b{c}", {"k,=": "v %\n", "empty": ""}, [1500 * US, 2 * S],
         [np.nan, 1e20]),
        ("s", {}, [S], np.array(["it's"], dtype=object)),
        ("i", {}, [S], np.array([3, -1], dtype=np.int64)[:1])])
    assert list(format_lines(series)) == [
        "1500// a%20b%7Bc%7D{k%2C%3D=v%20%25%0A} NaN",
        "2000000// a%20b%7Bc%7D{k%2C%3D=v%20%25%0A} 1e+20",
        "1000000// s{} 'it%27s'",
        "1000000// i{} 3.0"]


def test_the_input_format_reads_back() -> None:
    text = ("# a comment\n"
            "1000// a%20b{k%2C=v%2B} 1\n"
            "=2000/48.0:-4.5/10 -2.5\n"
            "3000// a%20b{k%2C=v%2B} T\n"
            "4000// s{} 'x%20y'\n"
            "5000// s{} \"z\"\n"
            "// now{} 0x10\n"
            "6000// d{} NaN\n")
    numbers, strings = parse_update(text, now_us=7)
    by_name = {s.name: s for s in numbers}
    assert dict(by_name["a b"].labels) == {"k,": "v+"}
    assert list(by_name["a b"].timestamps) == [1000 * US, 2000 * US, 3000 * US]
    assert list(by_name["a b"].values) == [1.0, -2.5, 1.0]
    assert (list(by_name["now"].timestamps), list(by_name["now"].values)) == ([7 * US], [16.0])
    assert np.isnan(by_name["d"].values[0])
    assert list(strings[0].values) == ["x y", "z"]


@pytest.mark.parametrize(("line", "message"), [
    ("1000 cpu{} 1", "is not TS/LAT:LON/ELEV"),
    ("x// cpu{} 1", "is not a LONG"),
    ("1000// cpu 1", "is not CLASS{LABELS}"),
    ("1000// cpu{dc} 1", "is not NAME=VALUE"),
    ("1000// cpu{}", "has no value"),
    ("1000// cpu{} what", "is not a LONG, DOUBLE, BOOLEAN or quoted STRING"),
    ("=1000// 1", "continues a series, and none came before"),
])
def test_a_bad_line_stores_nothing_and_is_named(line: str, message: str) -> None:
    with pytest.raises(BadRequest, match=f"nothing was stored: line 2: .*{message}"):
        parse_update("# a series of line 2 cannot go on one of line 1\n" + line, now_us=0)


def test_text_selectors_round_trip() -> None:
    text = format_selector("=a{b}", {"k,=": "=v}", "r": "~w.*"})
    assert text == "=a%7Bb%7D{k%2C%3D=v%7D,r~w.%2A}"
    chosen = parse_selector(text)
    assert chosen.matches("a{b}", {"k,=": "v}", "r": "wx"})
    assert not chosen.matches("a{b}", {"k,=": "v}", "r": "x"})
    assert parse_selector("~c.*{}").matches("cpu", {})


def test_the_delete_endpoint_counts_series_and_keeps_its_range(warp10_url: str) -> None:
    with httpx.Client(base_url=warp10_url) as http:
        assert http.post("/api/v0/update", content="1000000// c{} 1\n2000000// c{} 2\n"
                         ).status_code == 200
        answer = http.get("/api/v0/delete", params={"selector": "c{}", "start": "2000000",
                                                    "end": "1970-01-01T00:00:03Z"})
        assert (answer.status_code, answer.text) == (200, "c{}\n")
        assert http.get("/api/v0/delete", params={"selector": "c{}"}).status_code == 400
        stack = http.post("/api/v0/exec", content="[ 't' 'c' {} 10000000 10000000 ] FETCH")
        assert stack.json()[0][0]["v"] == [[1000000, 1]]


# -- failures ------------------------------------------------------------------------------------


class TestUnreachableWarp10(UnreachableContract):
    @pytest.fixture
    def unreachable(self) -> Unreachable:
        return Unreachable(
            Warp10.open({"type": "warp10", "url": "http://127.0.0.1:9", "token": TOKEN,
                         "name": "w"}, Path(".")),
            'warp10 connector "w" at http://127.0.0.1:9 could not be reached',
            (TOKEN, "s3cr3t"), calls=("select", "write", "names"))


def test_a_script_the_server_refuses_is_a_query_error_without_the_token(
        connector: Warp10) -> None:
    with pytest.raises(ConnectorQueryError) as caught:
        list(connector._gts(f"'{TOKEN}' FAIL", "a script"))
    assert "HTTP 500" in caught.value.message and TOKEN not in caught.value.message


def test_the_type_is_registered_with_its_keys_and_hides_its_tokens() -> None:
    assert load_connector_class("warp10") is Warp10
    assert CONNECTORS["warp10"].keys == ("type", "url", "token", "read_token", "write_token")
    shown = mask_spec({"connector": {"type": "warp10", "url": "http://u:p@h:8080",
                                     "read_token": {"secret": "r"}, "write_token": "w"}})
    assert shown["connector"] == {"type": "warp10", "url": "http://u:********@h:8080",
                                  "read_token": "********", "write_token": "********"}


def test_a_refused_token_is_an_auth_error_without_the_token(connector: Warp10) -> None:
    with pytest.raises(ConnectorAuthError) as caught:
        list(connector._gts(f"'Invalid token {TOKEN}' MSGFAIL", "a script"))
    assert TOKEN not in caught.value.message and "********" in caught.value.message
