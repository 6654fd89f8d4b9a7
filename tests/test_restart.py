"""The real clock end to end: `tsq serve` fires a PT1S schedule, is killed with SIGKILL while
runs are due, and is started again. Every scheduled time in the whole span, the gap included,
must have exactly one run, run once (catchup: all), and the schedule must fire again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow

LOOPS = """\
functions:
  tick:
    handler: tick.js
    catchup: all
    events:
      - every-second:
          rate: R/2026-01-01T00:00:00Z/PT1S/ET1S
          params: {cell: gra}
"""
HANDLER = "export default async (event) => ({window: event.window, cell: event.params.cell})"


@contextmanager
def serve(data: Path, port: int, workers: int = 1,
          database_url: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    # Tokens off (on loopback): these tests are of runs and points through kills, and their
    # clients talk to the server by port, before it has made the data directory's token.
    env = {**os.environ, "TSQ_DATA_DIR": str(data), "TSQ_WORKERS": str(workers),
           "TSQ_AUTH": "off"}
    if database_url is not None:
        env["TSQ_DATABASE_URL"] = database_url
    # The server's log goes to a file: a pipe nobody reads fills up (64 KB: a few hundred
    # request lines) and the server then blocks on its next log line
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, "-m", "tsq", "serve", "--port", str(port)],
                                   env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz",
                                 timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise AssertionError(f"tsq serve did not start: {log.read()[-4000:]!r}")
                time.sleep(0.1)
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def runs(port: int) -> list[dict]:
    body = httpx.get(f"http://127.0.0.1:{port}/v1/runs",
                     params={"loop": "tick", "limit": 1000}, timeout=10).json()
    return sorted(body["runs"], key=lambda run: run["scheduled_ms"])


def wait_for(check, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def test_kill_and_restart_runs_every_second_exactly_once(tmp_path: Path,
                                                         database_url: str | None) -> None:
    (tmp_path / "loops.yml").write_text(LOOPS)
    (tmp_path / "tick.js").write_text(HANDLER)
    data = tmp_path / "data"
    port = free_port()
    with serve(data, port, database_url=database_url) as first:
        deployed = httpx.post(f"http://127.0.0.1:{port}/v1/loops", json={
            "file": "loops.yml", "content": LOOPS, "files": {"tick.js": HANDLER}}, timeout=30)
        assert deployed.status_code == 201, deployed.text
        loop = httpx.get(f"http://127.0.0.1:{port}/v1/loops/tick", timeout=10).json()
        assert len(loop["events"][0]["next"]) == 3
        wait_for(lambda: sum(r["status"] == "success" for r in runs(port)) >= 3)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    killed_at = time.time()
    time.sleep(3)  # the schedule keeps ticking while nothing serves it
    server_file = data / "server.json"
    assert json.loads(server_file.read_text())["pid"] == first.pid  # stale: the restart must cope
    with serve(data, port, database_url=database_url):
        wait_for(lambda: any(r["scheduled_ms"] > (killed_at + 4) * 1000 and
                             r["status"] == "success" for r in runs(port)))
        wait_for(lambda: all(r["status"] not in ("queued",) for r in runs(port)))
        records = runs(port)
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)), "no scheduled time ran twice"
    times = [r["scheduled_ms"] for r in records]
    assert times == list(range(times[0], times[-1] + 1, 1000)), "no scheduled time was lost"
    statuses = {r["status"] for r in records}
    assert statuses <= {"success", "failed", "running"}, statuses
    interrupted = [r for r in records if r["status"] == "failed"]
    assert all(r["error"]["type"] == "Interrupted" for r in interrupted)
    assert len(interrupted) <= 1, "only a run in flight at the kill can be interrupted"
    gap = [r for r in records if killed_at * 1000 < r["scheduled_ms"] < (killed_at + 3) * 1000]
    assert gap and all(r["status"] == "success" for r in gap), "catchup: all ran the gap"
    last = next(r for r in reversed(records) if r["status"] == "success")
    assert last["result"]["window"]["endMs"] == last["scheduled_ms"]
    assert last["result"]["window"]["startMs"] == last["scheduled_ms"] - 1000
