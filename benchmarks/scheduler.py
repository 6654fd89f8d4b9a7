"""Scheduler: N loops on PT10S with a no-op JS handler, served by `tsq serve` for a while, then
killed with SIGKILL and started again; beside plain APScheduler with interval triggers and the
same number of no-op jobs (the floor: no records, no runs).

Measured from the run store afterwards: scheduled time → run record persisted, scheduled time →
handler started (the handler returns `Date.now() - event.scheduledMs`), duplicate keys, lost
times (a gap in an event's scheduled times), seconds from restart to the next recorded fire, and
the scheduler process's CPU (its workers excluded).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from benchmarks.report import Report, cpu_s
from tsq.config import Settings
from tsq.service import Service

PERIOD_S = 10
HANDLER = "export default async (event) => Date.now() - event.scheduledMs"
LOOPS_PER_FILE = 1000
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def run(report: Report, *, quick: bool) -> None:
    loops = 100 if quick else 10_000
    seconds = 6 if quick else 60
    _apscheduler(report, loops, seconds)
    with tempfile.TemporaryDirectory() as data:
        _deploy(Path(data), loops)
        _tsq(report, Path(data), loops, seconds)


def _rate(i: int, loops: int) -> str:
    """Loop i fires at its own offset within the period: an even 1 000 fires/s for 10 000."""
    offset = ANCHOR + timedelta(milliseconds=i * PERIOD_S * 1000 // loops)
    start = offset.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"R/{start}/PT{PERIOD_S}S/ET5S"


def _deploy(data: Path, loops: int) -> None:
    service = Service(Settings.load(data))
    try:
        for first in range(0, loops, LOOPS_PER_FILE):
            lines = ["functions:"]
            for i in range(first, min(loops, first + LOOPS_PER_FILE)):
                lines += [f"  noop-{i}:", "    handler: noop.js", "    events:",
                          f"      - tick: {{rate: {_rate(i, loops)}}}"]
            service.deploy("\n".join(lines) + "\n", "loops.yml", {"noop.js": HANDLER}.get)
    finally:
        service.close()


def _apscheduler(report: Report, jobs: int, seconds: int) -> None:
    lateness: list[float] = []

    def submitted(event: JobSubmissionEvent) -> None:
        now = time.time()
        lateness.extend(now - t.timestamp() for t in event.scheduled_run_times)

    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_listener(submitted, EVENT_JOB_SUBMITTED)
    start = datetime.now(UTC) + timedelta(seconds=1)
    for i in range(jobs):
        scheduler.add_job(_noop, IntervalTrigger(
            seconds=PERIOD_S, start_date=start + timedelta(milliseconds=i * PERIOD_S * 1000 //
                                                           jobs)), misfire_grace_time=None)
    cpu = time.process_time()
    scheduler.start()
    time.sleep(seconds + 1)
    cpu = (time.process_time() - cpu) / (seconds + 1)
    scheduler.shutdown(wait=True)
    report.add("scheduler", "APScheduler interval, submit", lateness)
    report.note("scheduler", "APScheduler interval", {
        "fires": len(lateness), "fires_per_s": len(lateness) / seconds,
        "cpu_share_of_a_core": round(cpu, 3)})


def _noop() -> None:
    pass


def _tsq(report: Report, data: Path, loops: int, seconds: int) -> None:
    port = _free_port()
    with _Serve(data, port) as first:
        started = time.time()
        process = psutil.Process(first.pid)
        cpu = cpu_s([process])
        time.sleep(seconds)
        cpu = (cpu_s([process]) - cpu) / seconds
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed = time.time()
    with _Serve(data, port):
        restarted = time.time()
        resumed = _wait_for_fire(data, after_ms=int(restarted * 1000))
        time.sleep(PERIOD_S)
    stopped = time.time()
    db = sqlite3.connect(data / "tsq.db")
    rows = db.execute("SELECT loop, scheduled_ms, queued_ms, status, result, "
                      "json_extract(error, '$.type') FROM runs "
                      "WHERE trigger = 'schedule'").fetchall()
    duplicates = db.execute("SELECT count(*) FROM (SELECT 1 FROM runs GROUP BY project, loop, "
                            "event, scheduled_ms HAVING count(*) > 1)").fetchone()[0]
    db.close()
    live = [r for r in rows if started * 1000 <= r[1] < killed * 1000]
    persisted = [(r[2] - r[1]) / 1000 for r in live]
    handler = [float(r[4]) / 1000 for r in live if r[3] == "success" and r[4] is not None]
    by_loop: dict[str, list[int]] = defaultdict(list)
    for loop, scheduled, *_ in rows:
        by_loop[loop].append(scheduled)
    lost = sum(
        (max(times) - min(times)) // (PERIOD_S * 1000) + 1 - len(set(times))
        for times in by_loop.values())
    statuses: dict[str, int] = defaultdict(int)
    for r in live:
        statuses[r[3] if r[5] is None else f"{r[3]} ({r[5]})"] += 1
    report.add("scheduler", "tsq scheduled -> record persisted", persisted,
               "APScheduler interval, submit")
    if handler:
        report.add("scheduler", "tsq scheduled -> handler started", handler,
                   "APScheduler interval, submit")
    report.note("scheduler", "tsq", {
        "loops": loops, "seconds": seconds, "fires_recorded": len(live),
        "fires_per_s": len(live) / seconds, "statuses": dict(statuses),
        "duplicate_keys": duplicates, "lost_times": lost,
        "loops_that_fired": len(by_loop),
        "resume_s": None if resumed is None else round(resumed - restarted, 2),
        "scheduler_cpu_share_of_a_core": round(cpu, 3),
        "after_restart_span_s": round(stopped - killed, 1)})


def _wait_for_fire(data: Path, after_ms: int, timeout_s: float = 60) -> float | None:
    """When the first run scheduled after `after_ms` was recorded (epoch s), polling the store."""
    deadline = time.time() + timeout_s
    db = sqlite3.connect(data / "tsq.db", timeout=30)
    try:
        while time.time() < deadline:
            row = db.execute("SELECT min(queued_ms) FROM runs WHERE trigger = 'schedule' AND "
                             "scheduled_ms >= ?", (after_ms,)).fetchone()
            if row[0] is not None:
                return float(row[0]) / 1000
            time.sleep(0.05)
    finally:
        db.close()
    return None


class _Serve:
    def __init__(self, data: Path, port: int) -> None:
        env = {**os.environ, "TSQ_DATA_DIR": str(data), "TSQ_WORKERS": "2"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tsq", "serve", "--port", str(port)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}/healthz"

    def __enter__(self) -> subprocess.Popen[bytes]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url, timeout=1).status_code == 200:
                    return self.process
            except httpx.HTTPError:
                time.sleep(0.1)
        self.process.kill()
        raise RuntimeError("tsq serve did not start")

    def __exit__(self, *_exc: object) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
