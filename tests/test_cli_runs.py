"""The commands around runs as a new user meets them, on a data directory and over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from queue import Empty, Queue

import httpx
import pytest
from rich.cells import cell_len

from tests.conftest import deploy, run
from tsq.cli import OUTCOME_MIN
from tsq.client import HttpClient
from tsq.config import Settings
from tsq.db import connect, runs
from tsq.errors import Conflict, NotFound
from tsq.outcomes import RunError, RunResult, RunStatus
from tsq.run import Run
from tsq.runlog import LogLine
from tsq.runstore import NewRun, RunFilter, RunStore, Settlement
from tsq.service import Service

LONG_ERROR = "the upstream Prometheus answered 503 Service Unavailable for the third time"


def tsq(data: Path, *args: str, url: str | None = None, columns: int = 200,
        cwd: Path | None = None, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """`tsq ARGS` on `data`, or on the server at `url` (with `token`, else the data
    directory's admin token)."""
    env = _env(data, columns) | ({"TSQ_TOKEN": token} if token else {})
    return subprocess.run(_command(args, url), capture_output=True, text=True, timeout=120,
                          check=False, cwd=cwd, env=env)


def _command(args: tuple[str, ...], url: str | None) -> list[str]:
    return [sys.executable, "-m", "tsq", *args, *(["--url", url] if url else [])]


def _env(data: Path, columns: int) -> dict[str, str]:
    env = {**os.environ, "TSQ_DATA_DIR": str(data), "TSQ_WORKERS": "1",
           "COLUMNS": str(columns), "PYTHONUNBUFFERED": "1"}
    env.pop("TSQ_URL", None)
    return env


def store_of(data: Path) -> RunStore:
    return RunStore(connect(Settings.load(data).database_url))


def insert_run(store: RunStore, run_id: str, loop: str, status: str = "success") -> None:
    """A finished run with an id chosen by the test (ids that share prefixes on purpose)."""
    now = int(time.time() * 1000)
    run = NewRun(project="default", loop=loop, event="manual", version_id="v1",
                 trigger="manual", params={}).queued(run_id, now)
    run = replace(run, status=RunStatus(status), started_ms=now, finished_ms=now, result="ok")
    with store.engine.begin() as db:
        db.execute(runs.insert().values(**run.row()))


def finish(store: RunStore, record: Run, result: RunResult) -> None:
    store.claim_many([record.id])
    store.settle_many([Settlement(store.get(record.id), result)])


# -- tsq runs at the terminal's width --------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 160])
def test_runs_fit_the_terminal_with_ids_loops_and_statuses_whole(tmp_path: Path,
                                                                  columns: int) -> None:
    store = store_of(tmp_path)
    for i, loop in enumerate(["cpu-rollup-hourly-report", "disk-usage-retention", "hello"] * 2):
        record = store.create(NewRun(project="default", loop=loop, event="every-10-seconds",
                                     version_id="v1", trigger="schedule", params={},
                                     scheduled_ms=1767225600000 + i, window=(0, 10_000)))
        failed = RunResult(RunStatus.FAILED, None, RunError("Error", LONG_ERROR))
        finish(store, record, failed if i % 2 else RunResult(RunStatus.SUCCESS, {"rows": i}, None))

    shown = tsq(tmp_path, "runs", columns=columns)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= columns
    listed = store.find(RunFilter())
    short = {r["id"]: r["short_id"] for r in
             json.loads(tsq(tmp_path, "runs", "--json").stdout)["runs"]}
    assert set(short) == {r.id for r in listed}
    for record in listed:
        prefix = short[record.id]
        [row] = [line for line in lines if f" {prefix} " in line]
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[:2] == [prefix, record.loop]
        assert record.status in cells
        _assert_shortest_unique(prefix, record.id, [r.id for r in listed])
    header = lines[1]
    if columns == 160:
        assert "scheduled / queued" in header and "event" in header
        # The error gets the room left, which depends on how long the id prefixes are (runs
        # created in one millisecond share 12 digits), but never less than its minimum.
        assert "every-10-seconds" in shown.stdout
        assert LONG_ERROR[:OUTCOME_MIN - 1] in shown.stdout
    else:
        assert "window" not in header and "attempt" not in header


def _assert_shortest_unique(prefix: str, run_id: str, all_ids: list[str]) -> None:
    assert run_id.startswith(prefix) and len(prefix) >= 8
    assert [i for i in all_ids if i.startswith(prefix)] == [run_id]
    if len(prefix) > 8:  # one character less would not be unique
        assert len([i for i in all_ids if i.startswith(prefix[:-1])]) > 1


# -- run id prefixes -------------------------------------------------------------------------------

SHARED_A, SHARED_B, ALONE = ("7e57a000aaaa00000000c0de", "7e57a000aaab00000000c0de",
                             "7e57f00d000000000000c0de")
AMBIGUOUS = ("run id prefix 7e57 is ambiguous: 7e57a000aaaa…, 7e57a000aaab…, 7e57f00d…; "
             "give more characters")


def test_the_run_store_resolves_prefixes_and_finds_the_shortest(tmp_path: Path) -> None:
    store = store_of(tmp_path)
    for run_id in (SHARED_A, SHARED_B, ALONE, "ffff0000000000000000c0de"):
        insert_run(store, run_id, "prefixes")
    assert store.short_ids([SHARED_A, SHARED_B, ALONE]) == {
        SHARED_A: "7e57a000aaaa", SHARED_B: "7e57a000aaab", ALONE: "7e57f00d"}
    assert store.resolve("7e57f") == ALONE
    assert store.resolve("7e57a000aaab") == SHARED_B
    assert store.resolve(SHARED_A) == SHARED_A
    with pytest.raises(Conflict) as ambiguous:
        store.resolve("7e57")
    assert ambiguous.value.message == AMBIGUOUS
    assert ambiguous.value.details["candidates"] == [SHARED_A, SHARED_B, ALONE]
    for unknown in ("7e570", "7e57%", "7e57_", "7E57F00D0", ""):
        with pytest.raises(NotFound, match=f"no run with id or id prefix '{unknown}'"):
            store.resolve(unknown)


@pytest.fixture(scope="module")
def prefixed(service: Service) -> str:
    """Runs with ids that share prefixes in the module's service; one has a log line and a
    file. The data directory."""
    for run_id in (SHARED_A, SHARED_B, ALONE):
        insert_run(service.runs, run_id, "prefixes")
    service.runs.append_logs(ALONE, [LogLine(1767225600000, "info", "hello from the prefix")])
    service.artifacts.put(ALONE, "cpu.csv", None, b"time,value\n")
    return str(service.settings.data_dir)


def test_every_run_endpoint_takes_a_unique_prefix(api: httpx.Client, prefixed: str) -> None:
    assert api.get("/v1/runs/7e57f").json()["id"] == ALONE
    logs = api.get("/v1/runs/7e57f/logs").json()
    assert logs["run"] == ALONE and logs["logs"][0]["message"] == "hello from the prefix"
    assert api.get("/v1/runs/7e57f/artifacts").json()["run"] == ALONE
    assert api.get("/v1/runs/7e57f/artifacts/cpu.csv").content == b"time,value\n"
    for answer in (api.get("/v1/runs/7e57"), api.get("/v1/runs/7e57/logs"),
                   api.get("/v1/runs/7e57/artifacts/cpu.csv"), api.post("/v1/runs/7e57/resume")):
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["type"] == "Conflict"
        assert answer.json()["error"]["message"] == AMBIGUOUS
    unknown = api.get("/v1/runs/7e570/artifacts")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "no run with id or id prefix '7e570'"
    listed = api.get("/v1/runs", params={"loop": "prefixes"}).json()["runs"]
    assert {r["id"]: r["short_id"] for r in listed} == {
        SHARED_A: "7e57a000aaaa", SHARED_B: "7e57a000aaab", ALONE: "7e57f00d"}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["local", "http"])
def test_commands_take_a_unique_prefix(api: httpx.Client, prefixed: str, tmp_path: Path,
                                       mode: str) -> None:
    data, url = Path(prefixed), str(api.base_url) if mode == "http" else None
    logs = tsq(data, "logs", "7e57f", url=url)
    assert logs.returncode == 0 and "hello from the prefix" in logs.stdout, logs.stderr
    shown = tsq(data, "runs", "show", "7e57f00", url=url)
    assert shown.returncode == 0 and f"run {ALONE}" in shown.stdout and "cpu.csv" in shown.stdout
    got = tsq(data, "artifacts", "get", "7e57f", "cpu.csv", url=url, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "cpu.csv").read_bytes() == b"time,value\n"
    ambiguous = tsq(data, "logs", "7e57", url=url)
    assert ambiguous.returncode == 3 and AMBIGUOUS in ambiguous.stderr
    unknown = tsq(data, "artifacts", "list", "7e570", url=url)
    assert unknown.returncode == 3
    assert "no run with id or id prefix '7e570'" in unknown.stderr
    assert "Traceback" not in ambiguous.stderr + unknown.stderr


# -- artifacts get -o DIR/ -------------------------------------------------------------------------

@pytest.mark.slow
def test_artifacts_get_into_a_directory_that_does_not_exist_yet(prefixed: str,
                                                                tmp_path: Path) -> None:
    data = Path(prefixed)
    (tmp_path / "taken").write_text("a file")
    for output, written in (("out/", "out/cpu.csv"), ("a/b/", "a/b/cpu.csv"),
                            ("renamed.csv", "renamed.csv")):
        got = tsq(data, "artifacts", "get", "7e57f", "cpu.csv", "-o", output, cwd=tmp_path)
        assert got.returncode == 0, got.stderr
        assert f"wrote {written} " in got.stdout
        assert (tmp_path / written).read_bytes() == b"time,value\n"
    assert not (tmp_path / "out").is_file() and (tmp_path / "out").is_dir()
    again = tsq(data, "artifacts", "get", "7e57f", "cpu.csv", "-o", "out", cwd=tmp_path)
    assert again.returncode == 3 and "out/cpu.csv exists; add --force" in again.stderr
    refused = tsq(data, "artifacts", "get", "7e57f", "cpu.csv", "-o", "taken/", cwd=tmp_path)
    assert refused.returncode == 3
    assert "-o taken/ names a directory, but taken is a file" in refused.stderr
    assert "Traceback" not in refused.stderr and (tmp_path / "taken").read_text() == "a file"


# -- tsq write says how many points ----------------------------------------------------------------

def test_write_answers_how_many_points_in_both_clients(api: httpx.Client,
                                                      service: Service) -> None:
    body = "counted,host=a value=1 1\ncounted,host=b value=2 1\ncounted,host=c value=3 1\n"
    answer = api.post("/write", content=body.encode())
    assert (answer.status_code, answer.content) == (204, b"")  # as InfluxDB answers
    assert answer.headers["x-tsq-written"] == "3"
    assert api.post("/api/v2/write", content=body.encode()).headers["x-tsq-written"] == "3"
    over_http = HttpClient(str(api.base_url), service.admin_token)
    try:
        assert over_http.write(body, "ns") == {"written": 3} == service.write_lines(body)
    finally:
        over_http.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["local", "http"])
def test_cli_write_prints_the_count(api: httpx.Client, service: Service, tmp_path: Path,
                                    mode: str) -> None:
    # Locally the command opens the store itself: a data directory no server holds.
    data, url = (service.settings.data_dir, str(api.base_url)) if mode == "http" else (
        tmp_path / "data", None)
    points = tmp_path / "metrics.lp"
    points.write_text("".join(f"clicount,mode={mode} value={i} {i}\n" for i in range(3)))
    wrote = tsq(data, "write", str(points), url=url)
    assert wrote.returncode == 0, wrote.stderr
    assert wrote.stdout.strip() == f"wrote 3 points from {points}"
    points.write_text(f"clicount,mode={mode} value=9 9\nnot line protocol\n")
    partial = tsq(data, "write", str(points), url=url)
    assert partial.returncode == 1 and "line 2:" in partial.stderr
    assert partial.stdout.strip() == f"wrote 1 point from {points}"


# -- tsq runs resume waits for the resumed steps ---------------------------------------------------

BROKEN = "export default async () => { throw new Error('still broken'); }"
FLAGGED = """export default async () => {
  if (!(await db.select("resume_flag")).length) throw new Error("no flag yet");
  return "flag seen";
}"""


@pytest.mark.slow
def test_resume_over_http_waits_and_fails_when_a_step_fails_again(api: httpx.Client,
                                                                  prefixed: str) -> None:
    url, data = str(api.base_url), Path(prefixed)
    assert deploy(api, "resume-broken", BROKEN).status_code == 201
    failed = run(api, "resume-broken").json()["error"]["details"]["run"]
    again = tsq(data, "runs", "resume", failed["id"][:16], url=url)
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"resumed {failed['id']}" in again.stdout
    assert f"run {failed['id']} failed" in again.stdout and "still broken" in again.stderr
    assert api.get(f"/v1/runs/{failed['id']}").json()["attempt"] == 2

    assert deploy(api, "resume-flagged", FLAGGED).status_code == 201
    flagged = run(api, "resume-flagged").json()["error"]["details"]["run"]
    assert api.post("/write", content=b"resume_flag value=1 1").status_code == 204
    fixed = tsq(data, "runs", "resume", flagged["id"], url=url)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"run {flagged['id']} success" in fixed.stdout and '"flag seen"' in fixed.stdout


@pytest.mark.slow
def test_resume_locally_fails_when_a_step_fails_again(tmp_path: Path) -> None:
    (tmp_path / "loops.yml").write_text("functions:\n  broken:\n    handler: broken.js\n")
    (tmp_path / "broken.js").write_text(BROKEN)
    data = tmp_path / "data"
    assert tsq(data, "deploy", str(tmp_path / "loops.yml")).returncode == 0
    first = tsq(data, "run", "broken", "--json")
    assert first.returncode == 1
    run_id = json.loads(first.stdout)["id"]
    again = tsq(data, "runs", "resume", run_id[:16])
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"run {run_id} failed" in again.stdout and "still broken" in again.stderr


# -- --follow --------------------------------------------------------------------------------------

# A test run in the background (CI, `make test &`) inherits SIGINT ignored, and Python then never
# raises KeyboardInterrupt: the follower gets Ctrl-C's default, as a terminal's job has.
AT_A_TERMINAL = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                 "runpy.run_module('tsq', run_name='__main__', alter_sys=True)")


def _at_a_terminal(command: list[str]) -> list[str]:
    executable, flag, module, *args = command
    assert (flag, module) == ("-m", "tsq")
    return [executable, "-c", AT_A_TERMINAL, *args]


class Follower:
    """A `tsq … --follow` process whose output lines are read as they come."""

    def __init__(self, data: Path, *args: str, url: str | None) -> None:
        self.process = subprocess.Popen(_at_a_terminal(_command(args, url)),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=_env(data, 200))
        self.lines: Queue[str] = Queue()
        self.seen: list[str] = []
        self.ended: tuple[int, str] | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, wanted: Callable[[str], bool], timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except Empty:
                continue
            self.seen.append(line)
            if wanted(line):
                return line
        raise AssertionError(f"no such line in {self.seen}")

    def end(self, interrupt: bool) -> tuple[int, str]:
        """Its exit code and standard error, after Ctrl-C if `interrupt` and it still runs
        (killed if it has not ended 30 s later); the same again once it has ended."""
        if self.ended is None:
            if interrupt and self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.reader.join(timeout=10)  # it has read to the end of the output
            assert self.process.stdout is not None and self.process.stderr is not None
            self.ended = (self.process.returncode, self.process.stderr.read())
            self.process.stdout.close()
            self.process.stderr.close()
        return self.ended


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["local", "http"])
def test_runs_follow_prints_runs_that_end_after_it_started(api: httpx.Client, service: Service,
                                                           mode: str) -> None:
    loop = f"follow-runs-{mode}"
    assert deploy(api, loop, "export default async () => 'followed'").status_code == 201
    url = str(api.base_url) if mode == "http" else None
    follower = Follower(service.settings.data_dir, "runs", "--follow", "--loop", loop, url=url)
    try:
        follower.wait_for(lambda line: "result / error" in line)  # the (empty) table is out
        record = run(api, loop).json()
        line = follower.wait_for(lambda line: record["id"][:8] in line and "success" in line)
    finally:
        code, stderr = follower.end(interrupt=True)
    assert f" {loop} " in line and '"followed"' in line
    assert code == 0 and "Traceback" not in stderr


LOGGING = """export default async () => {
  console.log("waiting for the flag");
  while (!(await db.select("%s")).length) {
    console.log("still waiting");
    await new Promise(r => setTimeout(r, 200));
  }
  console.log("flag seen");
  return "done";
}"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["local", "http"])
def test_logs_follow_prints_new_lines_and_stops_when_the_run_ends(
        api: httpx.Client, service: Service, mode: str) -> None:
    loop, flag = f"follow-logs-{mode}", f"follow_flag_{mode}"
    assert deploy(api, loop, LOGGING % flag).status_code == 201
    submitted = service.submit(loop)
    url = str(api.base_url) if mode == "http" else None
    follower = Follower(service.settings.data_dir, "logs", submitted.record.id[:16],
                        "--follow", url=url)
    try:
        follower.wait_for(lambda line: "waiting for the flag" in line)
        service.write_lines(f"{flag} value=1 1")
        follower.wait_for(lambda line: "flag seen" in line)
        code, stderr = follower.end(interrupt=False)  # it stops by itself
    finally:
        follower.end(interrupt=True)  # only if it did not stop
    assert submitted.done.result(timeout=30).status == "success"
    assert code == 0 and "Traceback" not in stderr
    assert sum("waiting for the flag" in line for line in follower.seen) == 1
