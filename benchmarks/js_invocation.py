"""JS invocation: a trivial async handler through the worker path and through HTTP, beside a
fresh `node -e` and `python3 -c` process per run (the process-per-run model) and the bare
engine's floor (a fresh V8 context in a warm isolate, evaluating the same handler); then the
throughput of no-op runs with both cores busy; and `tsq run` without a server, a process per
call as a user types it, beside `node -e`."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from benchmarks.report import Report
from benchmarks.scheduler import _free_port, _Serve
from tsq.config import Settings
from tsq.runtimes.js.engine import isolate
from tsq.service import Service

HANDLER = "export default async (event) => ({ok: true, n: event.params.n})"
PACE_S = 0.01  # a service sees calls spread over time
FLOOR_SCRIPT = ("(async (event) => ({ok: true, n: event.params.n}))({params: {n: 1}})"
                ".then(v => { globalThis.r = JSON.stringify(v) }); 0")
THROUGHPUT_CALLERS = 8


def _timed(call, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for i in range(n):
        time.sleep(PACE_S)
        start = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - start)
    return samples


def run(report: Report, *, quick: bool) -> None:
    n = 30 if quick else 1000
    with tempfile.TemporaryDirectory() as data:
        service = Service(Settings.load(data))
        service.deploy("functions:\n  noop:\n    handler: noop.js\n", "loops.yml",
                       {"noop.js": HANDLER}.get)
        assert service.run("noop", {"n": 1}).result == {"ok": True, "n": 1}
        peers = [("python3 -c per run", [sys.executable, "-c", "print(1)"])]
        if shutil.which("node"):
            node = ["node", "-e", "(async () => 1)().then(console.log)"]
            peers.insert(0, ("node -e per run", node))
        for name, argv in peers:
            report.add("js_invocation", name, _timed(
                lambda i, argv=argv: subprocess.run(argv, check=True, capture_output=True),
                max(5, n // 20)))
        baseline = peers[0][0]
        _cold_cli(report, baseline, max(3, n // 100))
        # As `tsq serve` runs it: its workers up, its threads tuned. After the peers, which
        # would otherwise start as this process's children with its threads' policy.
        service.start()
        report.add("js_invocation", "bare V8: fresh context + eval (floor)",
                   _timed(lambda i: _bare_floor(), n), baseline)
        report.add("js_invocation", "tsq worker path (fresh V8 context per run)",
                   _timed(lambda i: service.run("noop", {"n": i}), n),
                   [baseline, "bare V8: fresh context + eval (floor)"])
        _throughput(report, service, n * 2)
        token = {"Authorization": f"Bearer {service.admin_token}"}
        service.close()
        # `tsq serve` in a process of its own, as deployed: the client must not share its GIL
        port = _free_port()
        with _Serve(Path(data), port):
            # With the token a client sends: its check is part of every request's cost. The
            # request as curl or urllib send it, in one write on a kept connection; httpx sends
            # the headers and the body apart, which costs the server a second wake-up, and
            # spends 0.5 ms of its own per request: measured too, as context.
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                report.add("js_invocation", "tsq POST /v1/loops/noop/run", _timed(
                    _poster(connection, token), n), baseline)
            finally:
                connection.close()
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=token) as client:
                report.add("js_invocation", "tsq POST /v1/loops/noop/run (httpx client)",
                           _timed(lambda i: client.post(
                               "/v1/loops/noop/run", json={"params": {"n": i}}
                           ).raise_for_status(), n), baseline)


def _poster(connection: http.client.HTTPConnection, headers: dict[str, str]
            ) -> Callable[[int], None]:
    """A call posting a run of `noop` on `connection`, kept open between calls; it fails
    unless the run succeeded."""
    sent = {**headers, "Content-Type": "application/json"}

    def post(i: int) -> None:
        connection.request("POST", "/v1/loops/noop/run",
                           orjson.dumps({"params": {"n": i}}), sent)
        answer = connection.getresponse()
        body = orjson.loads(answer.read())
        assert answer.status == 200 and body["result"] == {"ok": True, "n": i}, body

    return post


def _cold_cli(report: Report, baseline: str, n: int) -> None:
    """`tsq run noop` in a new process each time, on a data directory with no server: its
    start, the worker's, the run and the exit. Bytecode is compiled first, as an installed
    package has it (`make install` does the same)."""
    tsq = Path(sys.executable).with_name("tsq")
    package = Path(__file__).parents[1] / "tsq"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    with tempfile.TemporaryDirectory() as data:
        (Path(data) / "loops.yml").write_text("functions:\n  noop:\n    handler: noop.js\n")
        (Path(data) / "noop.js").write_text(HANDLER)
        env = {**os.environ, "TSQ_DATA_DIR": str(Path(data) / "data")}
        subprocess.run([str(tsq), "deploy", str(Path(data) / "loops.yml")], check=True, env=env,
                       capture_output=True)
        cli = [str(tsq), "run", "noop", "--param", "n=1"]
        report.add("js_invocation", "tsq run without a server (new process)", _timed(
            lambda i: subprocess.run(cli, check=True, capture_output=True, env=env), n), baseline)


def _bare_floor() -> None:
    deadline = time.monotonic() + 10
    with isolate().context() as context:
        context.eval(FLOOR_SCRIPT, deadline)
        assert context.eval("r", deadline) == '{"ok":true,"n":1}'


def _throughput(report: Report, service: Service, runs: int) -> None:
    """No-op runs from several callers at once, so every worker slot stays busy: the rate a
    warm service keeps up. A quarter as many runs go first, untimed: the runs before ran one
    at a time, so only one worker process had started (the others start with their first
    job, 0.25 s of CPU each) and its V8 had compiled the run path for one caller (the first
    250 runs from 8 callers cost a worker twice the CPU of the later ones)."""
    _callers(service, runs // 4)
    start = time.perf_counter()
    _callers(service, runs)
    spent = time.perf_counter() - start
    report.note("js_invocation", "tsq no-op runs, both cores busy",
                {"runs": runs, "seconds": round(spent, 2), "runs_per_s": round(runs / spent)})


def _callers(service: Service, runs: int) -> None:
    """`runs` no-op runs by THROUGHPUT_CALLERS threads, each running the next until none
    is left."""
    counter = iter(range(runs))
    lock = threading.Lock()

    def caller() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            service.run("noop", {"n": i})

    callers = [threading.Thread(target=caller) for _ in range(THROUGHPUT_CALLERS)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join()

