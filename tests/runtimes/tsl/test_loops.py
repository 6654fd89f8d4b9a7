"""TSL loops end to end on a real server with real workers: points written over HTTP, a deployed
TSL rollup backfilled over five minutes, its output read back from the store; and the errors a TSL
loop can meet, at deploy time and at run time."""

from __future__ import annotations

import time

import httpx
import numpy as np

from tests.conftest import loop_file
from tsq.selector import parse_selector
from tsq.service import Service

ROLLUP = """// one-minute means per dc, written back as tsl_cpu_1m
select("tsl_cpu").where("dc=${dc}").from(start, end)
  .sampleBy(1m, mean, "none")
  .groupBy(["dc"], mean)
  .rename("tsl_cpu_1m")
  .store("token")
"""
EVENTS = ("    events:\n      - gra:\n          rate: R/2026-01-01T00:00:00Z/PT1M/ET1M\n"
          "          params: {dc: gra}\n")
BASE = 1767225600  # 2026-01-01T00:00:00Z


def deploy_tsl(api: httpx.Client, name: str, source: str, extra: str = "") -> httpx.Response:
    return api.post("/v1/loops", json={"content": loop_file(name, f"{name}.tsl", extra),
                                       "files": {f"{name}.tsl": source}})


def test_a_tsl_loop_rolls_up_its_window_and_stores_it(api: httpx.Client, service: Service) -> None:
    stamps = BASE - 60 + 10 * np.arange(36)            # 23:59:00 … 00:04:50, every 10 s
    lines = [f"tsl_cpu,dc={dc},host={host} value={v}i {t}"
             for dc, host, scale in (("gra", "a", 1), ("gra", "b", 3), ("rbx", "c", 100))
             for t, v in zip(stamps.tolist(), (scale * np.arange(36)).tolist(), strict=True)]
    assert api.post("/write", params={"precision": "s"},
                    content="\n".join(lines).encode()).status_code == 204
    assert deploy_tsl(api, "tsl-rollup", ROLLUP, EVENTS).status_code == 201

    job = api.post("/v1/backfill", json={"loop": "tsl-rollup", "from": "2026-01-01T00:01:00Z",
                                         "to": "2026-01-01T00:05:00Z"}).json()
    deadline = time.monotonic() + 60
    while job["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.1)
        job = api.get(f"/v1/backfill/{job['id']}").json()
    assert (job["status"], job["success"]) == ("done", 4), job

    [rolled] = service.store.select(parse_selector("tsl_cpu_1m"))
    starts = BASE + 60 * np.arange(0, 4)   # each run's window is [start, start + 1m), labelled start
    expected = [np.mean([scale * i for scale in (1, 3) for i in range(36)
                         if start <= stamps[i] < start + 60]) for start in starts]
    assert dict(rolled.labels) == {"dc": "gra"}
    assert rolled.timestamps.tolist() == (starts * 10**9).tolist()
    np.testing.assert_allclose(rolled.values, expected)

    runs = api.get("/v1/runs", params={"loop": "tsl-rollup"}).json()["runs"]
    result = next(r for r in runs if r["scheduled_ms"] == (BASE + 120) * 1000)["result"]
    assert result["series"][0]["name"] == "tsl_cpu_1m"
    assert result["series"][0]["timestamps"] == [(BASE + 60) * 1000]   # the window [00:01, 00:02)


def test_a_tsl_syntax_error_fails_the_deploy_with_its_place(api: httpx.Client) -> None:
    answer = deploy_tsl(api, "tsl-broken", 'select("cpu")\n  .last(1h\n')
    assert answer.status_code == 422
    problem = answer.json()["error"]["details"]["problems"][0]
    assert (problem["line"], problem["col"]) == (2, 9)
    assert "missing closing parenthesis" in problem["message"]
    assert problem["message"].endswith("  .last(1h\n        ^")
    assert api.get("/v1/loops/tsl-broken").status_code == 404


def test_a_tsl_run_error_is_a_failed_run_with_the_message(api: httpx.Client) -> None:
    assert deploy_tsl(api, "tsl-unbound", 'select("cpu").last(1h).sampleBy(1m, mean)'
                      '.add(missing)').status_code == 201
    answer = api.post("/v1/loops/tsl-unbound/run", json={})
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert "this variable isn't declared" in error["message"]
    assert '"missing"' in error["message"]


def test_query_endpoint_evaluates_tsl_on_the_store(api: httpx.Client) -> None:
    lines = [f"tsl_q,host=h{h} value={h * 10 + i} {BASE + 60 * i}" for h in (1, 2) for i in range(3)]
    assert api.post("/write", params={"precision": "s"},
                    content="\n".join(lines).encode()).status_code == 204
    answer = api.post("/v1/query", json={
        "tsl": 'select("tsl_q").from(start, end).sampleBy(1m, max, "none").group(sum)',
        "variables": {"start": BASE * 1000, "end": (BASE + 180) * 1000}})   # [0:00, 0:03)
    assert answer.status_code == 200, answer.text
    [series] = answer.json()["series"]
    assert series["timestamps"] == [(BASE + 60 * i) * 1000 for i in range(3)]
    assert series["values"] == [30.0, 32.0, 34.0]
    assert "plan" not in answer.json()
    explained = api.post("/v1/query", params={"explain": "true"}, json={
        "tsl": 'select("tsl_q").from(start, end).sampleBy(1m, max, "none").group(sum)',
        "variables": {"start": BASE * 1000, "end": (BASE + 180) * 1000}}).json()
    assert explained["series"] == answer.json()["series"]
    # the sampleBy and the group pushed down: the store groups too
    assert [step["where"] for step in explained["plan"]] == ["embedded store"] * 3
    assert explained["plan"][1]["step"] == "bucketed by 60 s, max: 6 buckets"
    assert explained["plan"][2]["step"] == "group(sum): 1 series, 3 points"
    listed = api.post("/v1/query", json={"tsl": 'select("tsl_q").labels("host")'}).json()
    assert listed == {"series": [], "meta": [["h1", "h2"]]}
    bad = api.post("/v1/query", json={"tsl": 'select("x").sampleBy(1m mean)'})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "TslError"
    assert bad.json()["error"]["details"]["line"] == 1


def test_a_query_reaching_before_year_one_is_answered_and_explained(api: httpx.Client) -> None:
    """An explained read names its range even where no calendar holds it."""
    answer = api.post("/v1/query", params={"explain": "true"},
                      json={"tsl": 'select("tsl_q").last(1000000d)'})
    assert answer.status_code == 200, answer.text
    assert answer.json()["plan"][0]["step"].startswith("read 2 series of tsl_q in [")
    assert " ns, " in answer.json()["plan"][0]["step"]
