"""The service killed with SIGKILL in the middle of a pipeline, and started again: the pipeline
finishes, the step that was running runs again, and no step that had finished runs twice. Both
kinds of pipeline: a JavaScript caller with `Loop.run` steps, and a chain of `after:` steps."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.test_restart import serve

pytestmark = pytest.mark.slow

COUNTED = """export default async function (event) {
  await db.write(`executions,loop=${event.loop} value=1 ${Date.now() * 1e6 + Math.floor(Math.random() * 1e6)}`);
  %s
}
"""
WAIT_FOR_RELEASE = """for (;;) {
    if ((await db.select('release')).length) break;
    await new Promise(r => setTimeout(r, 20));
  }
  return event.loop;"""
LOOPS = """\
functions:
  k-a: {handler: k-a.js}
  k-b: {handler: k-b.js, timeout: 120}
  k-c: {handler: k-c.js}
  k-main: {handler: k-main.js, timeout: 300}
  h-1:
    handler: h-1.js
    events: [{hourly: {rate: "R/2026-01-01T00:00:00Z/PT1H/ET1M"}}]
  h-2:
    handler: h-2.js
    timeout: 120
    events: [{after-1: {after: h-1}}]
  h-3:
    handler: h-3.js
    events: [{after-2: {after: h-2}}]
"""
FILES = {
    "k-a.js": COUNTED % "return 'a';",
    "k-b.js": COUNTED % WAIT_FOR_RELEASE,
    "k-c.js": COUNTED % "return 'c';",
    "k-main.js": COUNTED % """return [await Loop.run("k-a"), await Loop.run("k-b"),
                                     await Loop.run("k-c")];""",
    "h-1.js": COUNTED % "return event.window;",
    "h-2.js": COUNTED % WAIT_FOR_RELEASE,
    "h-3.js": COUNTED % "return event.window;",
}


def _executions(api: httpx.Client) -> dict[str, int]:
    answer = api.post("/v1/query", json={"tsl": 'select("executions").last(1d)'}).json()
    return {s["labels"]["loop"]: len(s["timestamps"]) for s in answer["series"]}


def _until(condition: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_killed_mid_pipeline_finishes_at_restart_without_repeating_steps(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serve(tmp_path, port, workers=2) as process, httpx.Client(base_url=base, timeout=60) as api:
        assert api.post("/v1/loops", json={"content": LOOPS, "files": FILES}).status_code == 201
        main = api.post("/v1/loops/k-main/run", params={"async": "true"}, json={}).json()
        backfill = api.post("/v1/backfill", json={"loop": "h-1", "from": "2026-01-01T00:00:00Z",
                                                   "to": "2026-01-01T01:00:00Z"})
        assert backfill.status_code == 202, backfill.text
        _until(lambda: _executions(api).get("k-b") == 1 and _executions(api).get("h-2") == 1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    with serve(tmp_path, port, workers=2), httpx.Client(base_url=base, timeout=60) as api:
        assert api.post("/write", content=b"release value=1 1000000000").status_code == 204
        _until(lambda: api.get(f"/v1/runs/{main['id']}").json()["status"] == "success")
        _until(lambda: _executions(api).get("h-3") == 1)
        final = api.get(f"/v1/runs/{main['id']}").json()
        assert final["result"] == ["a", "k-b", "c"]
        assert final["attempt"] == 2
        counts = _executions(api)
        # The steps that were running when the service died ran again; no finished one did.
        assert counts == {"k-main": 2, "k-a": 1, "k-b": 2, "k-c": 1, "h-1": 1, "h-2": 2, "h-3": 1}
        chain = api.get("/v1/runs", params={"loop": "h-2"}).json()["runs"]
        assert [(r["status"], r["attempt"], r["trigger"]) for r in chain] == [
            ("success", 2, "after")]
        logs = api.get(f"/v1/runs/{chain[0]['id']}/logs").json()["logs"]
        assert any("resumed at restart" in line["message"] for line in logs)
        h1 = api.get("/v1/runs", params={"loop": "h-1"}).json()["runs"][0]
        assert chain[0]["pipeline_id"] == h1["id"]
