"""The loop and run endpoints against a real server with real worker processes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import deploy, run


def test_deploy_run_and_history(api: httpx.Client) -> None:
    source = ("export default async function (event, ctx) {\n"
              "  console.log('n is', event.params.n);\n"
              "  return {double: event.params.n * 2, loop: ctx.loop, secret: env.KEY.length};\n}")
    extra = "    environment:\n      KEY: {secret: hunter2}\n"
    assert deploy(api, "double", source, extra).status_code == 201
    again = deploy(api, "double", source, extra).json()["loops"][0]
    assert again["created"] is False and again["version"]["number"] == 1
    assert "hunter2" not in api.get("/v1/loops/double").text

    answer = run(api, "double", params={"n": 21})
    assert answer.status_code == 200
    record = answer.json()
    assert record["status"] == "success"
    assert record["result"] == {"double": 42, "loop": "double", "secret": 7}
    assert record["duration_ms"] is not None and record["version_id"] == again["version"]["id"]

    history = api.get("/v1/runs", params={"loop": "double", "status": "success"}).json()["runs"]
    assert history[0]["id"] == record["id"]
    logs = api.get(f"/v1/runs/{record['id']}/logs").json()["logs"]
    assert [line["message"] for line in logs] == ["n is 21"]


def test_async_run(api: httpx.Client) -> None:
    deploy(api, "slowish", "export default async () => { await new Promise(r => setTimeout(r, 50)); return 'done' }")
    queued = api.post("/v1/loops/slowish/run", params={"async": "true"}, json={})
    assert queued.status_code == 202
    run_id = queued.json()["id"]
    for _ in range(200):
        record = api.get(f"/v1/runs/{run_id}").json()
        if record["status"] == "success":
            break
        __import__("time").sleep(0.05)
    assert record["status"] == "success" and record["result"] == "done"


def test_failure_is_500_with_message_and_stack(api: httpx.Client) -> None:
    deploy(api, "thrower", "export default async () => {\n  throw new TypeError('no cell given');\n}")
    answer = run(api, "thrower")
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error["type"] == "RunFailed" and error["message"] == "no cell given"
    assert "thrower.js:2" in error["details"]["stack"]
    assert error["details"]["run"]["status"] == "failed"


def test_never_resolving_and_spinning_handlers_time_out(api: httpx.Client) -> None:
    extra = "    timeout: 0.5\n"
    for name, source in [("pending", "export default () => new Promise(() => {})"),
                         ("spin", "export default async () => { while (true) {} }"),
                         ("spin-after-await", "export default async () => { await null; while (true) {} }")]:
        deploy(api, name, source, extra)
        answer = run(api, name)
        assert answer.status_code == 504, name
        assert answer.json()["error"]["details"]["run"]["status"] == "timeout"
    assert run(api, "double", params={"n": 1}).json()["result"]["double"] == 2


def test_memory_bombs_fail_clearly_and_the_service_survives(api: httpx.Client) -> None:
    bombs = {
        "heap-bomb": "export default async () => { const a = []; while (true) a.push({x: Math.random()}) }",
        "buffer-bomb": "export default async () => { const a = []; while (true) a.push(new Float64Array(1 << 22).fill(1)) }",
        "deep": "function f(n) { return f(n + 1) + 1 }\nexport default async () => f(0)",
    }
    for name, source in bombs.items():
        deploy(api, name, source, "    memory: 64\n    timeout: 20\n")
        answer = run(api, name)
        assert answer.status_code == 500, name
        message = answer.json()["error"]["message"]
        expected = "call stack" if name == "deep" else "memory"
        assert expected in message, (name, message)
    assert run(api, "double", params={"n": 2}).json()["result"]["double"] == 4


def test_results_too_large_or_not_json(api: httpx.Client) -> None:
    deploy(api, "huge", "export default async () => 'x'.repeat(2 << 20)")
    deploy(api, "bigint", "export default async () => ({n: 1n})")
    assert "over the limit" in run(api, "huge").json()["error"]["message"]
    assert "not JSON-serialisable" in run(api, "bigint").json()["error"]["message"]


def test_no_require_process_or_imports(api: httpx.Client) -> None:
    deploy(api, "probe", "export default async () => [typeof require, typeof process, typeof fetch, typeof SharedArrayBuffer, typeof WebAssembly]")
    assert run(api, "probe").json()["result"] == ["undefined"] * 5
    rejected = deploy(api, "importer", "import fs from 'fs';\nexport default async () => 1")
    assert rejected.status_code == 422
    problem = rejected.json()["error"]["details"]["problems"][0]
    assert (problem["file"], problem["line"], problem["col"]) == ("importer.js", 1, 1)


def test_deploy_errors_list_every_problem_and_change_nothing(api: httpx.Client) -> None:
    before = api.get("/v1/loops").json()
    body = {"content": "functions:\n  a:\n    handler: a.js\n    timout: 3\n  b:\n    handler: b.js\n",
            "files": {"a.js": "export default async () => 1", "b.js": "export default async ( => 1"}}
    answer = api.post("/v1/loops", json=body)
    assert answer.status_code == 422
    problems = answer.json()["error"]["details"]["problems"]
    assert {(p["path"], p["line"]) for p in problems} == {("functions.a.timout", 4),
                                                          ("functions.b.handler", 1)}
    assert 'did you mean "timeout"' in problems[0]["message"]
    assert api.get("/v1/loops").json() == before


def test_rollback_and_delete_keep_history(api: httpx.Client) -> None:
    deploy(api, "versioned", "export default async () => 1")
    deploy(api, "versioned", "export default async () => 2")
    assert run(api, "versioned").json()["result"] == 2
    rolled = api.post("/v1/loops/versioned/rollback", json={})
    assert rolled.json()["version"]["number"] == 1
    assert run(api, "versioned").json()["result"] == 1
    assert api.delete("/v1/loops/versioned").status_code == 200
    assert api.get("/v1/loops/versioned").status_code == 404
    assert len(api.get("/v1/runs", params={"loop": "versioned"}).json()["runs"]) == 2


def test_concurrent_deploys_keep_both_versions(api: httpx.Client) -> None:
    sources = [f"export default async () => {i}" for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda s: deploy(api, "racy", s), sources))
    assert all(a.status_code == 201 for a in answers)
    loop = api.get("/v1/loops/racy").json()
    assert sorted(v["number"] for v in loop["versions"]) == [1, 2, 3, 4]
    latest = run(api, "racy").json()["result"]
    assert f"=> {latest}" in sources[latest] and loop["version"]["number"] in (1, 2, 3, 4)


def test_bad_requests(api: httpx.Client) -> None:
    wrong_type = api.post("/v1/loops", content=b"functions: {}", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415
    too_big = api.post("/v1/loops", content=b"x" * (17 << 20), headers={"content-type": "application/json"})
    assert too_big.status_code == 413 and too_big.json()["error"]["type"] == "PayloadTooLarge"
    assert api.post("/v1/loops/nope/run", json={}).json()["error"]["type"] == "NotFound"
    assert api.get("/v1/runs/nope").status_code == 404
    assert api.get("/v1/nothing-here").json()["error"]["type"] == "NotFound"
    assert api.get("/healthz").json()["status"] == "ok"


def test_scheduled_loop_shows_next_times_and_backfills_with_progress(
        api: httpx.Client) -> None:
    source = "export default async (e) => ({start: e.window.startMs, end: e.window.endMs})"
    extra = ("    events:\n      - agra:\n          rate: R/2018-01-01T00:00:00Z/PT1H/ET1M\n"
             "          params: {cell: ovh-a-gra}\n")
    assert deploy(api, "hourly", source, extra).status_code == 201
    [event] = api.get("/v1/loops/hourly").json()["events"]
    assert event["params"] == {"cell": "ovh-a-gra"} and len(event["next"]) == 3
    first = event["next"][0]
    assert first["time"].endswith(":00:00+00:00")
    assert first["window"][1] == first["time"]

    started = api.post("/v1/backfill", json={"loop": "hourly", "from": "2026-01-01T00:00:00Z",
                                             "to": "2026-01-01T06:00:00Z"})
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["total"] == 6
    deadline = time.monotonic() + 60
    while job["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.1)
        job = api.get(f"/v1/backfill/{job['id']}").json()
    assert (job["status"], job["success"], job["skipped"]) == ("done", 6, 0)
    runs = api.get("/v1/runs", params={"loop": "hourly", "trigger": "backfill"}).json()["runs"]
    windows = sorted((r["result"]["start"], r["result"]["end"]) for r in runs)
    assert windows[0] == (1767222000000, 1767225600000)  # [2025-12-31T23:00, 2026-01-01T00:00)
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:], strict=False)), "windows tile"

    again = api.post("/v1/backfill", json={"loop": "hourly", "from": "2026-01-01T00:00:00Z",
                                           "to": "2026-01-01T06:00:00Z"}).json()
    assert (again["skipped"], again["status"]) == (6, "done")


def test_backfill_bad_requests(api: httpx.Client) -> None:
    zone_name = api.post("/v1/backfill", json={"loop": "hourly", "from": "2026-01-01T00:00 CET",
                                               "to": "2026-01-02T00:00:00Z"})
    assert zone_name.status_code == 400
    assert "from '2026-01-01T00:00 CET' is not an ISO-8601 time like 2026-01-01T00:00:00Z" in (
        zone_name.json()["error"]["message"])
    garbage = api.post("/v1/backfill", json={"loop": "hourly", "from": "yesterday",
                                             "to": "2026-01-02T00:00:00Z"})
    assert garbage.status_code == 400 and "'yesterday'" in garbage.json()["error"]["message"]
    unknown = api.post("/v1/backfill", json={"loop": "nope", "from": "2026-01-01T00:00:00Z",
                                             "to": "2026-01-02T00:00:00Z"})
    assert unknown.status_code == 404
    assert api.get("/v1/backfill/0123").status_code == 404
