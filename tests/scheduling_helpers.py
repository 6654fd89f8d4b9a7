"""Test doubles for scheduling: a clock that tests move, a worker pool that follows a script,
and a small HTTP server that records what it receives (webhooks, URL targets)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tsq.config import Settings
from tsq.outcomes import RunResult, RunStatus
from tsq.scheduler import Scheduler
from tsq.service import Service
from tsq.worker_pool import JobListener
from tsq.worker_process import Job


class FakeClock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()


class ScriptedPool:
    """Runs nothing: each job ends after `delay_s` with what `outcome(job)` says."""

    def __init__(self, outcome: Callable[[Job], RunResult] | None = None,
                 delay_s: float = 0.01) -> None:
        self.outcome = outcome or (lambda job: RunResult(RunStatus.SUCCESS, {"ok": True}))
        self.delay_s = delay_s
        self.jobs: list[Job] = []
        self.running = 0
        self.most_running = 0
        self.lock = threading.Lock()

    def submit(self, job: Job, listener: JobListener) -> Future[RunResult]:
        future: Future[RunResult] = Future()
        with self.lock:
            self.jobs.append(job)
            self.running += 1
            self.most_running = max(self.most_running, self.running)

        def finish() -> None:
            time.sleep(self.delay_s)
            with self.lock:
                self.running -= 1
            future.set_result(self.outcome(job))

        threading.Thread(target=finish, daemon=True).start()
        return future

    def run_now(self, job: Job, listener: JobListener) -> RunResult | None:
        return None  # every job goes through submit, so the tests see them all there

    def lending(self) -> AbstractContextManager[None]:
        return nullcontext()

    def cancel(self, run_id: str) -> bool:
        return False

    def close(self) -> None:
        pass

    def scheduled(self) -> list[int]:
        return [job.event["scheduledMs"] for job in self.jobs]


def make_service(data_dir: Path, clock: FakeClock, pool: ScriptedPool,
                 database_url: str | None = None) -> Service:
    """A service on `clock` and `pool`; its database `database_url` (None: SQLite in
    `data_dir`)."""
    return Service(Settings.load(data_dir, database_url), clock=clock, workers=pool)


def deploy(service: Service, tmp_path: Path, text: str,
           handlers: dict[str, str] | None = None) -> None:
    files = handlers or {"h.js": "export default async () => 1"}
    service.deploy(text, "loops.yml", files.get)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def ms(text: str) -> int:
    return round(utc(text).timestamp() * 1000)


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


class Recorder(BaseHTTPRequestHandler):
    """Records each POST (path with query, JSON body); answers with the server's status."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        server: Any = self.server
        server.received.append({"path": self.path, "body": body})
        status = server.statuses.pop(0) if server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"status": status}).encode())

    def log_message(self, *_args: Any) -> None:
        pass


@contextmanager
def http_recorder(statuses: list[int] | None = None) -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.received = []
    server.statuses = list(statuses or [])
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    with serving_http(server):
        yield server


@contextmanager
def serving_http(server: ThreadingHTTPServer) -> Iterator[None]:
    """`server` answering on a thread of its own meanwhile; shut and closed afterwards."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


RATE = "R/2026-01-01T00:00:00Z/PT1M/ET30S"
JOB = "default/roll/tick"  # the scheduler's job of loop_yaml()'s event


def loop_yaml(extra: str = "", rate: str = RATE, name: str = "roll",
              more_events: str = "") -> str:
    """A loop file of one scheduled JS loop; `extra` adds keys to it, `more_events` events."""
    return (f"functions:\n  {name}:\n    handler: h.js\n{extra}"
            f"    events:\n      - tick:\n          rate: {rate}\n          params: {{cell: a}}\n"
            f"{more_events}")


def scheduler_of(service: Service, clock: FakeClock) -> Scheduler:
    """A scheduler as `Service.start` makes it, planned but with APScheduler not firing."""
    scheduler = Scheduler(service.runs, service.loops, service.schedules, service.dispatcher,
                          clock)
    scheduler.plan_all()
    return scheduler
