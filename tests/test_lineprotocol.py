"""Line protocol: the parser's edge cases, then /write and /api/v2/write on a real server, with
raw requests and with the real influxdb-client package (synchronous and batching)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from influxdb_client import InfluxDBClient, Point, WriteOptions
from influxdb_client.client.write_api import SYNCHRONOUS

from tsq.errors import BadRequest
from tsq.lineprotocol import parse_lines
from tsq.selector import parse_selector
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


@pytest.fixture
def influx(api: httpx.Client) -> Iterator[InfluxDBClient]:
    with InfluxDBClient(url=str(api.base_url), token="unused", org="ops") as client:
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
