"""`tsq serve` as a real process, and the CLI talking to it, as a new user would meet them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import EXAMPLE, demo_reports, free_port, tsq

START_S = 60.0


@contextmanager
def serving(data: Path, *args: str, locale: Mapping[str, str] | None = None
            ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`tsq serve` on a free port of 127.0.0.1 until the block ends (then SIGINT, then kill);
    its stderr goes to `data`/serve.err (a file: a pipe nobody reads would block its logs)."""
    port = free_port()
    env = {**os.environ, **(locale or {}), "TSQ_DATA_DIR": str(data), "TSQ_WORKERS": "1"}
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


def admin(data: Path) -> dict[str, str]:
    """The headers of a request with the admin token the server made in `data`."""
    return {"Authorization": f"Bearer {(data / 'admin.token').read_text().strip()}"}


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
        started = datetime.now(UTC)
        shown = tsq(tmp_path, "demo")
        assert shown.returncode == 0, shown.stderr
        assert "Traceback" not in shown.stderr
        assert "wrote 38880 raw cpu points (3 hosts, one a minute, 9 days)" in shown.stdout
        assert "rolled up 216 hours" in shown.stdout
        made = demo_reports(started, datetime.now(UTC))
        assert any(f"made {count} daily reports" in shown.stdout for count in made)
        reports = httpx.get(f"{url}/v1/runs", params={"loop": "cpu-report"},
                            headers=admin(tmp_path)).json()["runs"]
    newest = max(reports, key=lambda r: r["scheduled_ms"])
    assert f"newest report: run {newest['id']} (success)" in shown.stdout


# A machine whose locale is not UTF-8 and Python's UTF-8 mode off: open() and read_text()
# without an encoding read ASCII there, and the grammars are UTF-8 text.
ASCII_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}


@pytest.mark.slow
def test_a_server_starts_and_answers_in_an_ascii_locale(tmp_path: Path) -> None:
    with serving(tmp_path, locale=ASCII_LOCALE) as (url, _):
        query = 'select("temp\u00b0C").where("room=\u00e9t\u00e9").last(1m)'
        answer = httpx.post(f"{url}/v1/query", json={"tsl": query}, headers=admin(tmp_path))
        assert answer.status_code == 200, answer.text
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONIOENCODING"}
    script = 'select("temp\u00b0C").where("room=\u00e9t\u00e9").last(1h).sampleBy(1m, last)'
    (tmp_path / "query.tsl").write_text(script, encoding="utf-8")
    for how in ([f"@{tmp_path / 'query.tsl'}"], [script], ["-"]):  # a file, an argument, stdin
        compiled = subprocess.run(
            [sys.executable, "-m", "tsq", "tsl", "compile", "--to", "promql", "--now",
             "2026-01-01T00:00:00Z", *how], capture_output=True, input=script.encode(),
            env={**plain, **ASCII_LOCALE}, timeout=120, check=False)
        assert compiled.returncode == 0, (how, compiled.stderr.decode(errors="replace"))
        [request] = json.loads(compiled.stdout.decode("utf-8"))
        assert request["query"] == 'temp\u00b0C{room="\u00e9t\u00e9"}', (how, request)


def _json_lines(path: Path) -> list[dict[str, Any]]:
    complete = path.read_text().split("\n")[:-1]  # the server may be writing the last one
    return [json.loads(line) for line in complete if line.strip()]


@pytest.mark.slow
def test_json_logs_of_a_deploy_and_requests(tmp_path: Path) -> None:
    with serving(tmp_path, "--log-format", "json") as (url, _):
        assert tsq(tmp_path, "deploy", str(EXAMPLE)).returncode == 0
        assert httpx.get(f"{url}/v1/loops/hello", headers=admin(tmp_path)).status_code == 200
        assert httpx.get(f"{url}/v1/loops/nope", headers=admin(tmp_path)).status_code == 404
        time.sleep(0.3)  # the request line is written once the answer has gone
    lines = _json_lines(tmp_path / "serve.err")  # every line is JSON, or this fails
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    [started] = [line for line in lines if line["message"].startswith("tsq serving on")]
    assert started["url"] == url and started["level"] == "info"
    assert started["config_file"] == ""  # no tsq.toml: no file to name

    [deployed] = [line for line in lines if line["message"] == "deployed demo/hello version 1"]
    assert deployed["logger"] == "tsq.loopstore" and deployed["number"] == 1
    requests = {(line["method"], line["path"], line["status"]): line for line in lines
                if line["logger"] == "tsq.api"}
    assert ("POST", "/v1/loops", 201) in requests
    assert ("GET", "/v1/loops/nope", 404) in requests
    assert requests[("GET", "/v1/loops/hello", 200)]["duration_ms"] > 0
    assert lines[-1]["message"] == "stopped"


@pytest.mark.slow
def test_the_start_line_names_the_config_file_it_read(tmp_path: Path) -> None:
    (tmp_path / "tsq.toml").write_text('log_format = "json"\n')
    with serving(tmp_path):
        pass
    [started] = [line for line in _json_lines(tmp_path / "serve.err")
                 if line["message"].startswith("tsq serving on")]
    assert started["config_file"] == str(tmp_path / "tsq.toml")
    assert f"; settings from {tmp_path / 'tsq.toml'}" in started["message"]


def _fired_and_ended(lines: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The first scheduled fire of heartbeat in the log and the line of how its run ended."""
    for fired in lines:
        if fired["message"].startswith("fired demo/heartbeat"):
            for ended in lines:
                if ended.get("run") == fired["run"] and ended["logger"] == "tsq.dispatcher":
                    return fired, ended
    return None


@pytest.mark.slow
def test_debug_logs_scheduler_fires_and_run_ends(tmp_path: Path) -> None:
    assert tsq(tmp_path, "deploy", str(EXAMPLE)).returncode == 0  # heartbeat: every 10 s
    with serving(tmp_path, "--log-format", "json", "--log-level", "debug"):
        deadline = time.monotonic() + 40
        while not _fired_and_ended(_json_lines(tmp_path / "serve.err")):
            assert time.monotonic() < deadline, "no fire of heartbeat and its end in 40 s"
            time.sleep(0.5)
    found = _fired_and_ended(_json_lines(tmp_path / "serve.err"))
    assert found is not None
    fired, ended = found
    assert fired["logger"] == "tsq.scheduler" and fired["trigger"] == "schedule"
    assert fired["level"] == "debug" and fired["loop"] == "heartbeat"
    assert ended["status"] == "success" and ended["level"] == "debug"
    assert ended["message"].startswith(f"run {fired['run']} of demo/heartbeat success in ")


def _statuses(data: Path) -> dict[str, str]:
    from tsq.config import Settings
    from tsq.db import connect
    from tsq.runstore import RunFilter, RunStore

    store = RunStore(connect(Settings.load(data).database_url))
    try:
        return {run.id: run.status for run in store.find(RunFilter(limit=100))}
    finally:
        store.close()


def _leave_unfinished_runs(data: Path) -> dict[str, str]:
    """A queued and a running run, as a server that stopped abruptly leaves them."""
    from tsq.config import Settings
    from tsq.datafiles import version_key
    from tsq.db import connect
    from tsq.loopstore import LoopStore
    from tsq.outcomes import RunStatus
    from tsq.runstore import NewRun, RunStore
    from tsq.sealing import Sealer

    assert tsq(data, "deploy", str(EXAMPLE)).returncode == 0
    engine = connect(Settings.load(data).database_url)
    version = LoopStore(engine, version_key=version_key(data),
                        sealer=Sealer.of(data)).get("demo", "hello").latest.id
    store = RunStore(engine)
    for status in (RunStatus.QUEUED, RunStatus.RUNNING):
        store.create(NewRun(project="demo", loop="hello", event="gra", version_id=version,
                            trigger="cli", params={}, status=status))
    store.close()
    return _statuses(data)


@pytest.mark.slow
def test_serve_on_a_busy_port_fails_before_touching_runs(tmp_path: Path) -> None:
    before = _leave_unfinished_runs(tmp_path)
    assert sorted(before.values()) == ["queued", "running"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        failed = tsq(tmp_path, "serve", "--port", str(port))
    assert failed.returncode == 3
    assert failed.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use by another program; "
        f"choose another with --port"]
    assert "serving on" not in failed.stderr + failed.stdout
    assert _statuses(tmp_path) == before  # nothing queued was claimed, nothing interrupted
    assert not (tmp_path / "server.json").exists()


@pytest.mark.slow
def test_a_second_server_on_one_data_dir_is_refused(tmp_path: Path) -> None:
    with serving(tmp_path) as (url, server):
        second = tsq(tmp_path, "serve", "--port", "0")
        assert second.returncode == 3
        assert second.stderr.splitlines() == [
            f"error: tsq is already serving {tmp_path} at {url} (pid {server.pid}); stop it "
            f"with `tsq stop` or use another --data-dir"]
        assert httpx.get(f"{url}/healthz").status_code == 200  # the first one goes on


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_signal_stops_the_server_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    with serving(tmp_path) as (_, server):
        assert (tmp_path / "server.json").exists()
        server.send_signal(stop_signal)
        assert server.wait(timeout=30) == 0
    assert not (tmp_path / "server.json").exists()
    assert (tmp_path / "serve.err").read_text().splitlines()[-1].endswith("tsq.server: stopped")
    assert "Traceback" not in (tmp_path / "serve.err").read_text()


@pytest.mark.slow
def test_tsq_stop(tmp_path: Path) -> None:
    with serving(tmp_path) as (url, server):
        stopped = tsq(tmp_path, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout == f"stopped the tsq server at {url} (pid {server.pid})\n"
        assert server.wait(timeout=5) == 0  # `tsq stop` returned once it had let go
    assert not (tmp_path / "server.json").exists()
    again = tsq(tmp_path, "stop")
    assert again.returncode == 3
    assert again.stderr == f"error: no tsq server is running for {tmp_path}\n"


@pytest.mark.slow
def test_tsq_ui_prints_a_link_that_signs_the_browser_in(tmp_path: Path) -> None:
    assert "no tsq server is running" in tsq(tmp_path, "ui").stderr
    with serving(tmp_path) as (url, _):
        shown = tsq(tmp_path, "ui")
        assert shown.returncode == 0, shown.stderr
        link = shown.stdout.strip()
        assert link.startswith(f"{url}/login?token=tsq_")
        with httpx.Client() as browser:
            assert browser.get(f"{url}/").status_code == 303  # to the sign-in page
            signed = browser.get(link, follow_redirects=True)
            assert signed.status_code == 200 and "<title>Loops · tsq</title>" in signed.text
        assert tsq(tmp_path, "token", "admin").stdout.strip() == link.split("token=")[1]


def test_the_server_loads_the_javascript_compiler_ahead_of_the_first_deploy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first deploy paid for importing the runtime and its first compile (80 ms of a
    deploy that takes 7 after); `tsq serve` does both in a thread as it starts. A failure
    there is left to the first deploy to report."""
    from tsq import runtimes, server

    asked: list[str] = []

    class Runtime:
        def prepare(self, source: str, file_name: str) -> None:
            asked.append(file_name)
            runtimes.create_runtime("js").prepare(source, file_name)  # a real compile

    monkeypatch.setattr(runtimes, "get_runtime", lambda name: asked.append(name) or Runtime())
    server._warm_deploys()
    assert asked == ["js", "warm.js"]

    def broken(name: str) -> object:
        raise RuntimeError("no V8 here")

    monkeypatch.setattr(runtimes, "get_runtime", broken)
    server._warm_deploys()  # no exception: the first deploy will say what is wrong


def test_the_server_opens_the_store_ahead_of_the_first_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first write opened the store and loaded pyarrow (and with it pandas), 0.4-0.5 s;
    `tsq serve` does both in a thread as it starts. A store that cannot open is left to the
    first write to report."""
    from connectors.embedded import STORE_FILE
    from tsq import server
    from tsq.config import Settings
    from tsq.service import Service

    service = Service(Settings.load(tmp_path / "data"))
    try:
        store_file = service.settings.data_dir / STORE_FILE
        assert not store_file.exists()
        server._warm_writes(service)
        assert store_file.exists()
        assert "pandas" in sys.modules
    finally:
        service.close()

    def unopenable(_self: Service) -> object:
        raise RuntimeError("disk gone")

    monkeypatch.setattr(Service, "store", property(unopenable))
    server._warm_writes(service)  # no exception: the first write will say what is wrong


def test_the_server_builds_its_app_before_its_threads_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FastAPI reads each route's signature as it builds the app; a start in CI once found a
    route's `name: str` not a plain type while the warming and compiling threads imported
    beside it. The app is built first, then the compiled code's loading and the warm-up
    begin, and the server answers last."""
    import gc
    import threading

    import uvicorn

    from tsq import api, lineparsers, server
    from tsq.config import Settings

    happened: list[str] = []
    warming = threading.Event()  # the warm-up stays alive until the test is done with it
    build = api.create_server_app

    def create_server_app(service: Any) -> Any:
        alive = {thread.name for thread in threading.enumerate()}
        happened.append("app" if "tsq-warm-up" not in alive else "app after the warm-up began")
        return build(service)

    def ready() -> bool:
        happened.append("compiled code")
        return True

    monkeypatch.setattr(api, "create_server_app", create_server_app)
    monkeypatch.setattr(lineparsers.WRITE_PATH, "ready", ready)
    monkeypatch.setattr(server, "_warm_up", lambda service: warming.wait(30))

    def run(self: uvicorn.Server, sockets: list[socket.socket]) -> None:
        happened.append("serve")
        warming.set()  # _run joins the warm-up as it stops

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(gc, "freeze", lambda: None)  # not this test process's objects
    settings = Settings.load(tmp_path / "data")
    sock = server.listen("127.0.0.1", 0)
    try:
        server._run(settings, sock)
    finally:
        warming.set()
        sock.close()
    assert happened[:2] == ["app", "compiled code"] and happened[-1] == "serve", happened
