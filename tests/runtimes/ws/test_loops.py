"""WarpScript end to end on a real server with real workers: a `runtime: ws` rollup loop
backfilled on its schedule writes what the same rollup in TSL writes; /v1/query and Warp 10's
/api/v0/exec answer scripts; errors keep their line and column."""

from __future__ import annotations

import time

import httpx
import numpy as np

from tests.conftest import loop_file
from tsq.selector import parse_selector
from tsq.service import Service

TSL_ROLLUP = """select("cpu").where("dc=${dc}").from(start, end)
  .sampleBy(1m, mean, "none")
  .groupBy(["dc"], mean)
  .rename("tsl_cpu_1m")
  .store("token")
"""
WS_ROLLUP = """// one-minute means per dc of the run's window [start, end), written back as ws_cpu_1m
[ 'token' 'cpu' { 'dc' $dc } $endTick 1 - $periodTick ] FETCH   // [start, end)
'raw' STORE
[ $raw bucketizer.mean $endTick 1 - 1 m 0 ] BUCKETIZE   // [t, t + 1m), labelled t + 1m - 1
[ SWAP [ 'dc' ] reducer.mean ] REDUCE
1 1 m - TIMESHIFT                                       // labelled t, the bucket's start
'ws_cpu_1m' RENAME
DUP 'token' UPDATE
"""
EVENTS = ("    events:\n      - gra:\n          rate: R/2026-01-01T00:00:00Z/PT1M/ET1M\n"
          "          params: {dc: gra}\n")
BASE = 1767225600  # 2026-01-01T00:00:00Z


def _deploy(api: httpx.Client, name: str, handler: str, source: str) -> httpx.Response:
    return api.post("/v1/loops", json={"content": loop_file(name, handler, EVENTS),
                                       "files": {handler: source}})


def _backfill(api: httpx.Client, loop: str) -> dict[str, object]:
    job = api.post("/v1/backfill", json={"loop": loop, "from": "2026-01-01T00:01:00Z",
                                         "to": "2026-01-01T00:05:00Z"}).json()
    deadline = time.monotonic() + 60
    while job["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.1)
        job = api.get(f"/v1/backfill/{job['id']}").json()
    return dict(job)


def test_a_warpscript_rollup_loop_writes_what_the_tsl_loop_writes(
        api: httpx.Client, service: Service) -> None:
    # Points on the minute boundaries, as Telegraf writes them. The TSL loop reads [start, end)
    # and labels a bucket by its start (docs/time.md); the WarpScript loop reads the same window
    # with `$endTick 1 - $periodTick` (FETCH's (end - span, end] one tick earlier) and buckets
    # ending one tick before each minute, shifted back to the minute's start: the same points in
    # the same buckets, under the same labels.
    stamps = BASE - 60 + 10 * np.arange(36)
    lines = [f"cpu,dc={dc},host={host} value={v} {t}"
             for dc, host, scale in (("gra", "a", 1), ("gra", "b", 3), ("rbx", "c", 100))
             for t, v in zip(stamps.tolist(), (scale * np.arange(36) * 1.5).tolist(),
                             strict=True)]
    assert api.post("/write", params={"precision": "s"},
                    content="\n".join(lines).encode()).status_code == 204
    assert _deploy(api, "tsl-roll", "tsl-roll.tsl", TSL_ROLLUP).status_code == 201
    answer = _deploy(api, "ws-roll", "ws-roll.mc2", WS_ROLLUP)
    assert answer.status_code == 201, answer.text
    for loop in ("tsl-roll", "ws-roll"):
        job = _backfill(api, loop)
        assert (job["status"], job["success"]) == ("done", 4), job

    [tsl] = service.store.select(parse_selector("tsl_cpu_1m"))
    [ws] = service.store.select(parse_selector("ws_cpu_1m"))
    assert dict(ws.labels) == dict(tsl.labels) == {"dc": "gra"}
    assert ws.timestamps.tolist() == tsl.timestamps.tolist() == (
        (BASE + 60 * np.arange(0, 4)) * 10**9).tolist()
    np.testing.assert_allclose(ws.values, tsl.values, rtol=1e-12)

    runs = api.get("/v1/runs", params={"loop": "ws-roll"}).json()["runs"]
    stack = runs[0]["result"]["stack"]
    assert stack[0][0]["c"] == "ws_cpu_1m"


def test_a_warpscript_syntax_error_fails_the_deploy_with_its_place(api: httpx.Client) -> None:
    answer = _deploy(api, "ws-broken", "ws-broken.mc2", "NOW\n  <% 1 DUPP %> EVAL\n")
    assert answer.status_code == 422
    problem = answer.json()["error"]["details"]["problems"][0]
    assert (problem["line"], problem["col"]) == (2, 8)
    assert "unknown function 'DUPP'; did you mean DUP?" in problem["message"]


def test_a_failing_warpscript_run_is_a_failed_run_naming_the_word(api: httpx.Client) -> None:
    assert _deploy(api, "ws-fails", "ws-fails.ws",
                   "1 2\n'too big' MSGFAIL\n").status_code == 201
    answer = api.post("/v1/loops/ws-fails/run", json={})
    assert answer.status_code == 500
    assert answer.json()["error"]["message"] == "too big (line 2, col 11)"


def test_query_and_warp10_exec(api: httpx.Client) -> None:
    answer = api.post("/v1/query", json={"warpscript": "NEWGTS 'q' RENAME 1000 NaN NaN NaN "
                                                       "2.5 ADDVALUE 42"}).json()
    assert answer["stack"][0] == 42
    assert answer["series"] == [{"name": "q", "labels": {}, "timestamps": [1],
                                 "values": [2.5]}]

    done = api.post("/api/v0/exec", content=b"1 2 + 'a'")
    assert done.status_code == 200 and done.json() == ["a", 3]
    failed = api.post("/api/v0/exec", content=b"1\n  0 / ")
    assert failed.status_code == 500
    assert failed.headers["X-Warp10-Error-Line"] == "2"
    assert "division by zero" in failed.headers["X-Warp10-Error-Message"]

    both = api.post("/v1/query", json={"warpscript": "1", "tsl": "x"})
    assert both.status_code == 400
