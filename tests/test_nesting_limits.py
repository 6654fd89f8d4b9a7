"""Scripts and loop files nested past their limit are refused with a 400 (a 422 at deploy)
that names the limit and the place, instead of a RecursionError answered as a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import deploy

SELECT = 'select("nest").from(0)'


def nested_add(depth: int) -> str:
    query = SELECT
    for _ in range(depth):
        query = f"add({query}, {SELECT})"
    return query


@pytest.fixture(scope="module", autouse=True)
def points(api: httpx.Client) -> None:
    assert api.post("/write", content=b"nest value=1 1700000000000000000").status_code == 204


@pytest.mark.parametrize("depth", [200, 10_000])
def test_a_tsl_query_nested_past_the_limit_is_a_400(api: httpx.Client, depth: int) -> None:
    answer = api.post("/v1/query", json={"tsl": "add(" * depth + SELECT + ", 1)" * depth})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "TslError" and "nested deeper than 64 levels (the limit)" in \
        error["message"]
    assert error["details"]["line"] == 1 and error["details"]["char"] == 4 * 65  # the 65th '('


def test_a_tsl_query_at_the_limit_runs(api: httpx.Client) -> None:
    answer = api.post("/v1/query", json={"tsl": nested_add(63)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["series"][0]["values"] == [64.0]


@pytest.mark.parametrize("depth", [200, 10_000])
def test_warpscript_macros_nested_past_the_limit_are_a_400(api: httpx.Client,
                                                           depth: int) -> None:
    answer = api.post("/v1/query", json={"warpscript": "<% " * depth + "%> " * depth})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert "macros nested deeper than 64 levels (the limit)" in error["message"]
    assert (error["details"]["line"], error["details"]["col"]) == (1, 1 + 3 * 64)


def test_warpscript_lists_too_deep_to_answer_are_a_400(api: httpx.Client) -> None:
    answer = api.post("/v1/query", json={"warpscript": "[ " * 10_000 + "] " * 10_000})
    assert answer.status_code == 400, answer.text
    assert "nested deeper than 128 levels (the limit)" in answer.json()["error"]["message"]


def test_a_tsl_handler_nested_past_the_limit_is_refused_at_deploy(api: httpx.Client) -> None:
    body = {"content": "functions:\n  deep:\n    handler: deep.tsl\n",
            "files": {"deep.tsl": "add(" * 200 + SELECT + ", 1)" * 200}}
    answer = api.post("/v1/loops", json=body)
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["error"]["details"]["problems"]
    assert (problem["file"], problem["line"], problem["col"]) == ("deep.tsl", 1, 4 * 65)
    assert "(the limit)" in problem["message"]


def test_a_loop_file_nested_past_the_limit_is_refused(api: httpx.Client) -> None:
    params = "".join(" " * (8 + i) + "k:\n" for i in range(500)) + " " * 508 + "1\n"
    content = "functions:\n  deep:\n    handler: deep.js\n    events:\n      - e:\n" \
              "          params:\n" + params
    answer = api.post("/v1/loops", json={"content": content,
                                         "files": {"deep.js": "export default () => 1"}})
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["error"]["details"]["problems"]
    assert problem["file"] == "loops.yml" and problem["line"] is not None
    assert "nested deeper than 64 levels (the limit)" in problem["message"]
    assert deploy(api, "shallow", "export default () => 1").status_code == 201
