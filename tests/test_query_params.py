"""Every integer or time in a query string: a value out of range or of the wrong kind is a 400
with the API's one error shape, naming the parameter, and never a 500."""

from __future__ import annotations

import httpx
import pytest

HUGE = "99999999999999999999"  # beyond int64: SQLite and DuckDB overflow on it
# (path, parameter, other parameters the endpoint needs)
PARAMETERS = [
    ("/v1/runs", "since", {}),
    ("/v1/runs", "until", {}),
    ("/v1/runs", "changed_since", {}),
    ("/v1/runs", "limit", {}),
    ("/v1/runs/no-such-run/logs", "after", {}),
    ("/api/v0/delete", "start", {"selector": "qp{}", "end": "10"}),
    ("/api/v0/delete", "end", {"selector": "qp{}", "start": "10"}),
]
REFUSED = [HUGE, "-" + HUGE, "ten", "1.5", ""]


@pytest.mark.parametrize("value", REFUSED)
@pytest.mark.parametrize(("path", "name", "others"), PARAMETERS)
def test_an_out_of_range_or_non_numeric_parameter_is_a_400(
        api: httpx.Client, path: str, name: str, others: dict[str, str], value: str) -> None:
    answer = api.get(path, params={**others, name: value})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "BadRequest" and name in error["message"]


@pytest.mark.parametrize(("path", "name", "others"), PARAMETERS)
def test_a_negative_parameter_is_an_answer_or_a_400_never_a_500(
        api: httpx.Client, path: str, name: str, others: dict[str, str]) -> None:
    answer = api.get(path, params={**others, name: "-1"})
    assert answer.status_code in (200, 400, 404), answer.text
    if answer.status_code != 200:
        assert set(answer.json()["error"]) == {"type", "message", "details"}


def test_the_widest_times_still_answer(api: httpx.Client) -> None:
    widest = {"since": "-9223372036854", "until": "9223372036854",
              "changed_since": "-9223372036854"}
    assert api.get("/v1/runs", params=widest).status_code == 200
    assert api.get("/v1/loops/no-such-loop/run", params={"async": "maybe"}).status_code == 405
    answer = api.post("/v1/loops/no-such-loop/run", params={"async": "maybe"}, json={})
    assert answer.status_code == 400 and "async" in answer.json()["error"]["message"]
