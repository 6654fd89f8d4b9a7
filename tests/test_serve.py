"""`tsq serve` as a real process, and the CLI talking to it, as a new user would meet them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import _free_port
from tests.test_cli import tsq

START_S = 60.0


@contextmanager
def serving(data: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`tsq serve` on a free port of 127.0.0.1 until the block ends (then SIGINT, then kill);
    its stderr goes to `data`/serve.err (a file: a pipe nobody reads would block its logs)."""
    port = _free_port()
    env = {**os.environ, "TSQ_DATA_DIR": str(data), "TSQ_WORKERS": "1"}
    env.pop("TSQ_URL", None)
    with (data / "serve.err").open("wb") as stderr:
        server = subprocess.Popen([sys.executable, "-m", "tsq", "serve", "--port", str(port),
                                   *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server, data / "serve.err")
        yield url, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_healthy(url: str, server: subprocess.Popen[bytes], stderr: Path) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"tsq serve exited {server.returncode}: {stderr.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"tsq serve did not answer at {url} within {START_S} s")


@pytest.mark.slow
def test_a_bad_query_reads_the_same_through_the_server(tmp_path: Path) -> None:
    with serving(tmp_path):
        assert (tmp_path / "server.json").exists()  # so the CLI below talks to the server
        bad = tsq(tmp_path, "query", "--tsl", "select(")
    assert bad.returncode == 3, bad.stderr
    assert "Traceback" not in bad.stderr
    assert bad.stderr.splitlines() == [
        "error: Cannot parsed query: a string is not closed on its line; found the end of the "
        "query at line 1, char 7",
        "select(",
        "      ^",
    ]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_demo_through_a_running_server(tmp_path: Path) -> None:
    with serving(tmp_path) as (url, _):
        shown = tsq(tmp_path, "demo")
        assert shown.returncode == 0, shown.stderr
        assert "Traceback" not in shown.stderr
        assert "wrote 38880 raw cpu points (3 hosts, one a minute, 9 days)" in shown.stdout
        assert "rolled up 216 hours" in shown.stdout and "made 8 daily reports" in shown.stdout
        reports = httpx.get(f"{url}/v1/runs", params={"loop": "cpu-report"}).json()["runs"]
    newest = max(reports, key=lambda r: r["scheduled_ms"])
    assert f"newest report: run {newest['id']} (success)" in shown.stdout
