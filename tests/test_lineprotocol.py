"""Line protocol: the parser's edge cases, then /write and /api/v2/write on a real server, with
raw requests and with the real influxdb-client package (synchronous and batching)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from unittest.mock import patch

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import InfluxDBClient, Point, WriteOptions
from influxdb_client.client.write_api import SYNCHRONOUS

from tsq import lineprotocol
from tsq.errors import BadRequest
from tsq.lineprotocol import PRECISIONS, ParsedBatch, parse_lines
from tsq.selector import parse_selector
from tsq.series import FIRST_NS, LAST_NS
from tsq.service import Service

NOW = 1_700_000_000_123_456_789


def points(text: str, precision: str = "ns") -> dict[str, list[tuple[dict[str, str], list[int],
                                                                    list[object]]]]:
    batch = parse_lines(text, precision, now_ns=NOW)
    found: dict[str, list[tuple[dict[str, str], list[int], list[object]]]] = {}
    for part in (batch.numbers, batch.strings):
        for s in part:
            found.setdefault(s.name, []).append(
                (dict(s.labels), s.timestamps.tolist(), s.values.tolist()))
    return found


@pytest.mark.parametrize(("line", "name", "labels", "value"), [
    ("cpu,host=a value=1.5 10", "cpu", {"host": "a"}, 1.5),
    ("cpu usage=2i 10", "cpu.usage", {}, 2.0),
    ("cpu u=7u 10", "cpu.u", {}, 7.0),
    ("cpu ok=t 10", "cpu.ok", {}, 1.0),
    ("cpu ok=FALSE 10", "cpu.ok", {}, 0.0),
    ("cpu v=-1.5e3 10", "cpu.v", {}, -1500.0),
    (r"my\ cpu,the\ host=web\,01,k\=x=v\=y value=1 10", "my cpu",
     {"the host": "web,01", "k=x": "v=y"}, 1.0),
    (r'log msg="say \"hi\" \\ bye" 10', "log.msg", {}, 'say "hi" \\ bye'),
    ('log msg="a,b=c d" 10', "log.msg", {}, "a,b=c d"),
    (r"cpu,host=a f\ x=1 10", "cpu.f x", {"host": "a"}, 1.0),
])
def test_syntax(line: str, name: str, labels: dict[str, str], value: object) -> None:
    assert points(line) == {name: [(labels, [10], [value])]}


def test_every_precision_and_a_missing_timestamp() -> None:
    for precision, factor in [("ns", 1), ("us", 1000), ("ms", 10**6), ("s", 10**9),
                              ("m", 60 * 10**9), ("h", 3600 * 10**9)]:
        assert points("cpu value=1 5", precision)["cpu"][0][1] == [5 * factor]
    assert points("cpu value=1")["cpu"][0][1] == [NOW]
    assert points("cpu value=1", "s")["cpu"][0][1] == [NOW - NOW % 10**9]
    with pytest.raises(BadRequest, match="unknown precision 'd'"):
        parse_lines("cpu value=1", "d")


def test_a_repeated_point_keeps_the_last_value_and_fields_split() -> None:
    found = points("cpu,h=a value=1 10\ncpu,h=a value=2 10\ncpu,h=a value=3,idle=9 20\n")
    assert found["cpu"] == [({"h": "a"}, [10, 20], [2.0, 3.0])]
    assert found["cpu.idle"] == [({"h": "a"}, [20], [9.0])]


def test_bad_lines_are_reported_by_number_and_the_rest_kept() -> None:
    text = "\n".join([
        "# a comment", "cpu value=1 10", "cpu value= 10", "cpu value=1.5.5 10",
        "cpu,host value=1 10", "cpu value=nan 10", 'cpu msg="open 10', "cpu value=1 1x",
        "just-a-measurement", "cpu value=1_000 10", "", "cpu value=2 20"])
    batch = parse_lines(text, now_ns=NOW)
    assert batch.points == 2
    assert [number for number, _ in batch.errors] == [3, 4, 5, 6, 7, 8, 9, 10]
    message = batch.error_message()
    assert message.startswith("partial write: 8 line(s)")
    assert "line 4: bad field value '1.5.5'" in message
    assert "line 7: unterminated string field" in message


# A comment line sends a batch to the line-by-line parser (the bulk one takes no comments),
# so appending one compares the two parsers through the public function.
LINE_BY_LINE = "\n# parsed line by line"


def both_paths(text: str, precision: str = "ns") -> tuple[ParsedBatch, ParsedBatch, ParsedBatch]:
    """The batch parsed by the compiled scan (tsq.linescan, as a large batch is), in bulk by
    pandas (as a large one is where the scan gives up or is not loaded), and line by line (as
    a small one is where the scan is not loaded)."""
    with patch.object(lineprotocol, "SCAN_CHARS", 0):
        scanned = parse_lines(text, precision, now_ns=NOW)
    with patch.object(lineprotocol, "BULK_CHARS", 0):
        bulk = parse_lines(text, precision, now_ns=NOW, scan=False)
    return scanned, bulk, parse_lines(text + LINE_BY_LINE, precision, now_ns=NOW)


def _which_parser(text: str, *, loaded: bool, scan: bool = True) -> str:
    """The parser that reads `text` (the others made to fail), the compiled scan counted as
    loaded in this process or not."""
    used: list[str] = []

    def by(name: str, real: object) -> object:
        return lambda *args: used.append(name) or real(*args)  # type: ignore[operator]

    with patch.object(lineprotocol, "_scan_loaded", lambda: loaded), \
            patch.object(lineprotocol, "_parse_scanned", by("scan", lineprotocol._parse_scanned)), \
            patch.object(lineprotocol, "_parse_bulk", by("bulk", lineprotocol._parse_bulk)), \
            patch.object(lineprotocol, "_parse_each", by("each", lineprotocol._parse_each)):
        parse_lines(text, now_ns=NOW, scan=scan)
    return "+".join(used)


def test_small_batches_never_wait_for_pandas_and_use_the_scan_once_it_is_loaded() -> None:
    """pandas' reader costs some 3 ms a batch however small: a one-point /write took 5.9 ms
    through HTTP, 1.7 with these choices."""
    line = "cpu,host=web01 value=1.5 1767225600000000000"
    few = "\n".join([line] * 20)
    large = "\n".join([line] * 1000)
    assert _which_parser(line, loaded=False) == "each"
    assert _which_parser(few, loaded=False) == "each"
    assert _which_parser(line, loaded=True) == "each"  # shorter than the scan's fixed cost
    assert _which_parser(few, loaded=True) == "scan"
    assert _which_parser(few, loaded=True, scan=False) == "each"
    assert _which_parser(few + LINE_BY_LINE, loaded=True) == "scan+each"  # the scan gave up
    assert _which_parser(large, loaded=False) == "scan"  # loads it: worth it
    assert _which_parser(large, loaded=False, scan=False) == "bulk"
    assert _which_parser(large + LINE_BY_LINE, loaded=False) == "scan+bulk+each"


def signs(batch: ParsedBatch) -> dict[object, list[bool]]:
    return {(s.name, tuple(sorted(s.labels.items()))): np.signbit(s.values).tolist()
            for s in batch.numbers}


def outcome(batch: ParsedBatch) -> tuple[object, ...]:
    """The points by series (in no particular order of series), the count and the errors."""
    series = {(s.name, tuple(sorted(s.labels.items()))): (s.timestamps.tolist(), s.values.tolist())
              for s in batch.numbers}
    return series, batch.strings.points, batch.points, batch.errors


@pytest.mark.parametrize(("stamp", "precision"), [
    ("9300000000", "s"),                   # wrapped around to 1680 once
    ("9223372036854775807", "ns"),         # int64's maximum: a read's open end, never readable
    ("-9223372036854775808", "ns"),        # int64's minimum, the other open end
    ("99999999999999999999", "ns"),        # beyond int64 before any scaling
    ("-9223372037", "s"),
    ("153722868", "m"),
    ("9" * 5000, "ms"),                    # too long for int() to be asked
])
def test_a_timestamp_outside_int64_nanoseconds_is_a_bad_line_on_both_paths(
        stamp: str, precision: str) -> None:
    for batch in both_paths(f"cpu value=1 {stamp}\ncpu value=2 1", precision):
        assert batch.points == 1 and len(batch.errors) == 1
        number, why = batch.errors[0]
        assert number == 1 and f"timestamp {stamp[:37]!r}"[:-1] in why
        assert f"at precision {precision} a timestamp must be from" in why
        assert "1677-09-21T00:12:43Z to 2262-04-11T23:47:16Z" in why


@pytest.mark.parametrize(("stamp", "precision", "ns"), [
    ("-1", "ns", -1),
    ("-1", "s", -10**9),
    ("9223372036854775806", "ns", LAST_NS),
    ("-9223372036854775807", "ns", FIRST_NS),
    ("9223372036", "s", 9223372036 * 10**9),
    ("-9223372036", "s", -9223372036 * 10**9),
])
def test_pre_1970_and_the_extreme_storable_times_are_points_on_both_paths(
        stamp: str, precision: str, ns: int) -> None:
    for batch in both_paths(f"cpu value=1 {stamp}", precision):
        assert batch.errors == [] and batch.numbers.timestamps.tolist() == [ns]


EDGE_STAMPS = sorted({edge + delta for scale in set(PRECISIONS.values())
                      for edge in (FIRST_NS // scale, -(-FIRST_NS // scale), LAST_NS // scale,
                                   0, 2**63 - 1, -(2**63), 2**63 // scale)
                      for delta in (-1, 0, 1)})
stamp_texts = st.one_of(st.none(), st.sampled_from(EDGE_STAMPS).map(str),
                        st.integers(-(2**70), 2**70).map(str),
                        st.sampled_from(["+5", "007", "-0", "1x", "1.5", "1e3", "٣"]))
field_values = st.one_of(st.integers(-(10**6), 10**6).map(str),
                         st.integers(-(10**6), 10**6).map(lambda n: f"{n}i"),
                         st.sampled_from(["1.5", "-2.25e3", ".5", "t", "FALSE", "7u", "nan",
                                          "oops", "1_0", "-0", "-0.0", "-0i", "0.001234", "1.",
                                          "+.5e-3", "1e22", "1e23", "1e-22", "3E-23", "-7u",
                                          "123456789012345678i", "1.5i", "1e", "--1"]),
                         # exact in one IEEE operation up to 15 digits, handed on beyond
                         st.floats(-1e30, 1e30).map(lambda x: f"{x:.15g}"),
                         st.floats(-1e30, 1e30).map(lambda x: f"{x:.16e}"),
                         st.floats(allow_nan=False, allow_infinity=False).map(repr))
lines = st.builds(
    lambda name, tags, fields, stamp: " ".join(filter(None, [
        name + "".join(f",{k}={v}" for k, v in tags),
        ",".join(f"{k}={v}" for k, v in fields), stamp])),
    st.sampled_from(["cpu", "mem", "disk.io"]),
    st.lists(st.tuples(st.sampled_from(["host", "dc"]), st.sampled_from(["a", "b"])),
             max_size=2, unique_by=lambda tag: tag[0]),
    st.lists(st.tuples(st.sampled_from(["value", "idle", "x"]), field_values), min_size=1,
             max_size=3, unique_by=lambda pair: pair[0]),
    stamp_texts)


@settings(max_examples=300, deadline=None)
@given(st.lists(lines, min_size=1, max_size=8), st.sampled_from(sorted(PRECISIONS)),
       st.booleans())
def test_the_bulk_and_line_by_line_parsers_agree(batch: list[str], precision: str,
                                                 sorted_codes: bool) -> None:
    """`sorted_codes`: the bulk parsers group the points by series by sorting their codes, as
    for a batch of many keys and field names, instead of counting them in an array."""
    text = "\n".join(batch)
    with patch.object(lineprotocol, "CODES_PER_POINT", -(2**40) if sorted_codes else 4):
        scanned, bulk, each = both_paths(text, precision)
    assert outcome(scanned) == outcome(bulk) == outcome(each)
    assert signs(scanned) == signs(each)  # -0.0 as well as 0.0
    for ts in bulk.numbers.timestamps.tolist() + scanned.numbers.timestamps.tolist():
        assert FIRST_NS <= ts <= LAST_NS


@pytest.fixture
def influx(api: httpx.Client) -> Iterator[InfluxDBClient]:
    token = api.headers["Authorization"].removeprefix("Bearer ")  # influxdb-client's `Token`
    with InfluxDBClient(url=str(api.base_url), token=token, org="ops") as client:
        yield client


def stored(service: Service, selector: str) -> dict[str, list[float]]:
    return {s.labels.get("host", ""): s.values.tolist()
            for s in service.store.select(parse_selector(selector))}


def test_influxdb_client_synchronous_and_batching_writes(
        api: httpx.Client, service: Service, influx: InfluxDBClient) -> None:
    write = influx.write_api(write_options=SYNCHRONOUS)
    write.write("metrics", record=[
        Point("ic_sync").tag("host", "a").field("value", 1.25).time(1_000_000_000),
        Point("ic_sync").tag("host", "b").field("value", 2.5).time(1_000_000_000),
        "ic_sync,host=a value=3.75 2000000000"])
    assert stored(service, "ic_sync") == {"a": [1.25, 3.75], "b": [2.5]}
    with influx.write_api(write_options=WriteOptions(batch_size=500, flush_interval=100)) as batch:
        batch.write("metrics", record=[f"ic_batch,host=h{i % 10} value={i} {i + 1}"
                                       for i in range(2000)])
    assert sum(len(v) for v in stored(service, "ic_batch").values()) == 2000


def test_raw_writes_v1_v2_gzip_and_partial(api: httpx.Client, service: Service) -> None:
    answer = api.post("/write", params={"db": "telegraf", "precision": "s"},
                      content=b"raw_v1,host=a value=1 1700000000\n")
    assert answer.status_code == 204, answer.text
    assert service.store.select(parse_selector("raw_v1"))[0].timestamps.tolist() == [
        1_700_000_000 * 10**9]
    zipped = gzip.compress(b"raw_gz value=5i 1\nraw_gz value=6i 2\n")
    answer = api.post("/api/v2/write", params={"org": "o", "bucket": "b", "precision": "ns"},
                      content=zipped, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 204, answer.text
    assert service.store.select(parse_selector("raw_gz"))[0].values.tolist() == [5.0, 6.0]
    partial = api.post("/write", content=b"raw_p value=1 1\nraw_p value=oops 2\nraw_p value=3 3")
    assert partial.status_code == 400
    error = partial.json()["error"]
    assert error["type"] == "PartialWrite" and error["details"]["errors"][0]["line"] == 2
    assert service.store.select(parse_selector("raw_p"))[0].values.tolist() == [1.0, 3.0]
    assert api.post("/api/v2/write", params={"precision": "m"}, content=b"x v=1").status_code \
        == 400
    bomb = gzip.compress(b"x" * (20 << 20))
    assert api.post("/write", content=bomb,
                    headers={"Content-Encoding": "gzip"}).status_code == 413
    assert api.post("/write", content=b"\xff\xfe").status_code == 400
    assert np.isfinite(service.store.select(parse_selector("raw_p"))[0].values).all()


@pytest.mark.parametrize("tail", ["", ',note="forces the line-by-line parser"'])
def test_writes_outside_the_storable_range_are_refused_and_the_extremes_read_back(
        api: httpx.Client, service: Service, tail: str) -> None:
    name = f"edge_{len(tail)}"
    wrapped = api.post("/write", params={"precision": "s"},
                       content=f"{name} value=1{tail} 9300000000\n".encode())
    assert wrapped.status_code == 400, wrapped.text
    error = wrapped.json()["error"]
    assert error["type"] == "PartialWrite" and error["details"]["written"] == 0
    assert "line 1: timestamp '9300000000' is out of range" in error["message"]
    assert "-9223372036 to 9223372036" in error["message"]
    too_late = api.post("/write", content=f"{name} value=1{tail} 9223372036854775807".encode())
    assert too_late.status_code == 400 and "line 1: timestamp" in too_late.json()["error"]["message"]
    assert service.store.select(parse_selector(name)).points == 0
    lines = f"{name} value=1{tail} -1\n{name} value=2{tail} {LAST_NS}\n{name} value=3{tail} {FIRST_NS}"
    assert api.post("/write", content=lines.encode()).status_code == 204
    found = service.store.select(parse_selector(name))
    assert found.timestamps.tolist() == [FIRST_NS, -1, LAST_NS]
    assert found.values.tolist() == [3.0, 1.0, 2.0]


def test_a_gzip_body_in_many_chunks_is_decompressed_as_it_arrives(api: httpx.Client,
                                                                   service: Service) -> None:
    lines = "\n".join(f"gz_chunks,host=h{i % 7} value={i} {i + 1}" for i in range(20_000))
    zipped = gzip.compress(lines.encode())
    pieces = [zipped[i:i + 4096] for i in range(0, len(zipped), 4096)]
    assert len(pieces) > 5
    answer = api.post("/write", content=iter(pieces), headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 204, answer.text
    assert sum(len(v) for v in stored(service, "gz_chunks").values()) == 20_000
    cut = api.post("/write", content=iter([zipped[:10], b"not gzip at all"]),
                   headers={"Content-Encoding": "gzip"})
    assert cut.status_code == 400 and "not valid gzip" in cut.json()["error"]["message"]
    update = api.post("/api/v0/update", content=gzip.compress(b"1000000// gz_gts{} 42\n"),
                      headers={"Content-Type": "application/gzip"})
    assert update.status_code == 200, update.text
    assert service.store.select(parse_selector("gz_gts"))[0].values.tolist() == [42.0]
