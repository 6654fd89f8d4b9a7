"""Rollup loops run by hand with real workers: a JavaScript and a TSL rollup of a scheduled
event, run for a scheduled time (`at`), for a window given directly, and for the latest
complete period; through the service and through `POST /v1/loops/{name}/run`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.scheduling_helpers import FakeClock, ms, utc
from tsq.config import Settings
from tsq.errors import BadRequest
from tsq.selector import parse_selector
from tsq.service import Service

BASE = 1767225600  # 2026-01-01T00:00:00Z; point i is at BASE + 10 i s and has value i
RATE = "R/2026-01-01T00:00:00Z/PT1M/ET1M"

JS_ROLLUP = """export default async function (event) {
  const cpu = await db.select('man_cpu{dc="gra"}', {start: event.window.start, end: event.window.end});
  const values = cpu.flatMap(s => Array.from(s.values));
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  await db.write([{name: "man_cpu_js", labels: {dc: "gra"}, timestamps: [event.window.startMs],
                   values: [mean]}]);
  return {start: event.window.start, end: event.window.end, points: values.length, mean};
}
"""
TSL_ROLLUP = """select("man_cpu").where("dc=gra").from(start, end)
  .sampleBy(1m, mean, "none")
  .rename("man_cpu_tsl")
  .store("token")
"""


def loops_yml() -> str:
    events = f"    events:\n      - tick:\n          rate: {RATE}\n"
    return (f"functions:\n  man-js:\n    handler: man-js.js\n{events}"
            f"  man-tsl:\n    handler: man-tsl.tsl\n{events}")


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(utc("2026-01-01T00:07:30Z"))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, clock: FakeClock) -> Iterator[Service]:
    """Real workers on a clock the tests set (the scheduler is not started: nothing fires)."""
    svc = Service(Settings.load(tmp_path_factory.mktemp("data")), clock=clock)
    svc.write_lines("\n".join(f"man_cpu,dc=gra,host=a value={i} {BASE + 10 * i}"
                              for i in range(60)), "s")
    svc.deploy(loops_yml(), "loops.yml", {"man-js.js": JS_ROLLUP, "man-tsl.tsl": TSL_ROLLUP}.get)
    yield svc
    svc.close()


def mean(first: int, last: int) -> float:
    """The mean of the values of points first … last (value i at point i)."""
    return (first + last) / 2


def js_written(service: Service, start: str) -> list[float]:
    """What the JavaScript rollup wrote for the window that starts at `start` (its label)."""
    [series] = service.store.select(parse_selector("man_cpu_js"))
    return [v for t, v in zip(series.timestamps.tolist(), series.values.tolist(), strict=True)
            if t == ms(start) * 10**6]


def tsl_values(result: dict[str, Any]) -> list[tuple[int, float]]:
    """The (time, value) points of a TSL run's one series."""
    [series] = result["series"]
    return list(zip(series["timestamps"], series["values"], strict=True))


def test_a_js_rollup_run_at_a_scheduled_time(service: Service) -> None:
    record = service.run("man-js", at=utc("2026-01-01T00:05:00Z"))
    assert record.status == "success", record.error
    # [00:04, 00:05) holds points 24 … 29
    assert record.result == {"start": "2026-01-01T00:04:00.000Z",
                                "end": "2026-01-01T00:05:00.000Z", "points": 6,
                                "mean": mean(24, 29)}
    assert js_written(service, "2026-01-01T00:04:00Z") == [mean(24, 29)]


def test_a_js_rollup_run_for_a_window_given(service: Service) -> None:
    record = service.run("man-js", window=(utc("2026-01-01T00:02:00Z"),
                                           utc("2026-01-01T00:03:30Z")))
    assert record.status == "success", record.error
    assert (record.result["points"], record.result["mean"]) == (9, mean(12, 20))
    assert js_written(service, "2026-01-01T00:02:00Z") == [mean(12, 20)]


def test_a_js_rollup_run_for_the_latest_complete_period(service: Service) -> None:
    record = service.run("man-js")  # the clock says 00:07:30: the latest period ends 00:07
    assert record.status == "success", record.error
    assert record.result["end"] == "2026-01-01T00:07:00.000Z"
    assert record.result["mean"] == mean(36, 41)
    assert js_written(service, "2026-01-01T00:06:00Z") == [mean(36, 41)]


def test_a_tsl_rollup_run_at_for_a_window_and_for_the_latest_period(service: Service) -> None:
    # TSL reads [start, end) as JavaScript does: [00:04, 00:05) holds points 24 … 29, and the
    # bucket is labelled by its start, as the JavaScript rollup labels its window
    at = service.run("man-tsl", at=utc("2026-01-01T00:05:00Z"))
    assert at.status == "success", at.error
    assert tsl_values(at.result) == [(ms("2026-01-01T00:04:00Z"), mean(24, 29))]
    given = service.run("man-tsl", window=(utc("2026-01-01T00:02:00Z"),
                                           utc("2026-01-01T00:04:00Z")))
    assert tsl_values(given.result) == [(ms("2026-01-01T00:02:00Z"), mean(12, 17)),
                                        (ms("2026-01-01T00:03:00Z"), mean(18, 23))]
    latest = service.run("man-tsl")
    assert tsl_values(latest.result) == [(ms("2026-01-01T00:06:00Z"), mean(36, 41))]
    [stored] = service.store.select(parse_selector("man_cpu_tsl"))
    assert stored.timestamps.tolist() == [ms(f"2026-01-01T00:0{m}:00Z") * 10**6
                                          for m in (2, 3, 4, 6)]


def test_the_run_endpoint_takes_at_and_window(api: httpx.Client) -> None:
    at = api.post("/v1/loops/man-js/run", json={"at": "2026-01-01T00:06:00Z"})
    assert at.status_code == 200, at.text
    assert at.json()["result"]["mean"] == mean(30, 35)
    assert at.json()["scheduled_ms"] == ms("2026-01-01T00:06:00Z")
    window = api.post("/v1/loops/man-tsl/run", json={
        "window": {"start": "2026-01-01T00:08:00Z", "end": "2026-01-01T00:09:00Z"}})
    assert window.status_code == 200, window.text
    assert tsl_values(window.json()["result"]) == [(ms("2026-01-01T00:08:00Z"), mean(48, 53))]


@pytest.mark.parametrize(("body", "message"), [
    ({"at": "2026-01-01T00:06:10Z"},
     "--at (`at`) 2026-01-01T00:06:10+00:00 is not a scheduled time of " + RATE + "; the nearest "
     "ones are 2026-01-01T00:06:00+00:00 and 2026-01-01T00:07:00+00:00"),
    ({"at": "tomorrow"}, "at 'tomorrow' is not an ISO-8601 time like 2026-01-01T00:00:00Z"),
    ({"at": 1767225600}, "at must be an ISO-8601 time string"),
    ({"window": "2026-01-01T00:08:00Z/2026-01-01T00:09:00Z"}, 'window must be an object'),
    ({"window": {"start": "2026-01-01T00:09:00Z", "end": "2026-01-01T00:08:00Z"}},
     "window [2026-01-01T00:09:00+00:00, 2026-01-01T00:08:00+00:00) is empty"),
    ({"at": "2026-01-01T00:06:00Z",
      "window": {"start": "2026-01-01T00:08:00Z", "end": "2026-01-01T00:09:00Z"}}, "not both"),
])
def test_bad_at_or_window_is_a_400_naming_it(api: httpx.Client, body: dict[str, Any],
                                             message: str) -> None:
    answer = api.post("/v1/loops/man-js/run", json=body)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]["message"]


def test_a_window_option_that_is_not_start_end_names_the_option() -> None:
    from tsq.client import split_window

    with pytest.raises(BadRequest, match="--window '2026-01-01T00:08:00Z' is not START/END"):
        split_window("2026-01-01T00:08:00Z")


def test_the_http_client_sends_at_and_window_as_the_endpoint_takes_them(
        api: httpx.Client) -> None:
    from tsq.client import HttpClient

    client = HttpClient(str(api.base_url),
                        api.headers["Authorization"].removeprefix("Bearer "))
    try:
        at = client.run("man-js", {}, None, "tick", wait=True, at="2026-01-01T00:03:00Z")
        given = client.run("man-js", {}, None, None, wait=True,
                           window="2026-01-01T00:00:00Z/2026-01-01T00:00:30Z")
        with pytest.raises(BadRequest, match=r"window\.end 'soon' is not an ISO-8601 time"):
            client.run("man-js", {}, None, None, wait=True, window="2026-01-01T00:00:00Z/soon")
    finally:
        client.close()
    assert (at["event"], at["result"]["mean"]) == ("tick", mean(12, 17))
    assert (given["result"]["points"], given["result"]["mean"]) == (3, mean(0, 2))
