"""A backfill outlives the service that started it: the job is stored, `GET /v1/backfill/{id}`
answers from a new service on the same data directory, and the runs the stop left unfinished
(one running, the rest queued, or never created) resume there, each scheduled time once."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import bearer, serving
from tsq.backfillstore import BackfillJob
from tsq.config import Settings
from tsq.runstore import RunFilter
from tsq.selector import parse_selector
from tsq.service import Service

pytestmark = pytest.mark.slow

LOOPS = """
functions:
  slow-hours:
    handler: slow.js
    max_concurrency: 1
    events: [{hourly: {rate: R6/2026-01-01T00:00:00Z/PT1H/ET1H}}]
"""
# Six times, all long past: the scheduler never fires while a test runs (an hour turning during
# one made a scheduled run beside the backfill's), and the backfilled hours are all on it.
# Each run leaves a point, so the test counts how often a scheduled time really ran; the
# first one waits for a release point, so the service stops while it runs.
SLOW = """export default async function (event) {
  await db.write(`bf_runs,at=${event.window.endMs} value=1 ${Date.now() * 1e6 + Math.floor(Math.random() * 1e6)}`);
  while (event.window.endMs === Date.parse('2026-01-01T01:00:00Z')
         && !(await db.select('bf_release')).length) {
    await new Promise(r => setTimeout(r, 20));
  }
  return event.window.endMs;
}
"""
FROM, TO = datetime(2026, 1, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 4, tzinfo=UTC)


def started(data: Path, database_url: str | None) -> Service:
    service = Service(Settings.load(data, database_url))
    service.start()
    return service


def executions(service: Service) -> dict[int, int]:
    """Window end (epoch ms) → how many times a run of it executed."""
    return {int(s.labels["at"]): len(s.timestamps)
            for s in service.store.select(parse_selector("bf_runs"))}


def until(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_backfill_answers_and_resumes_after_a_restart(tmp_path: Path,
                                                       database_url: str | None) -> None:
    first = started(tmp_path, database_url)
    try:
        first.deploy(LOOPS, "loops.yml", {"slow.js": SLOW}.get)
        job = first.backfill("slow-hours", FROM, TO)
        until(lambda: executions(first) == {int(FROM.timestamp() * 1000): 1})
        assert (job["total"], job["pending"]) == (3, 3)
    finally:
        first.close()  # the 01:00 run is running, 02:00 and 03:00 are queued

    second = started(tmp_path, database_url)
    try:
        with serving(second) as url:
            answer = httpx.get(f"{url}/v1/backfill/{job['id']}", timeout=30,
                               headers=bearer(second))
        assert answer.status_code == 200, answer.text
        assert answer.json()["total"] == 3
        second.write_lines("bf_release value=1 1000000000")
        until(lambda: second.backfill_status(job["id"])["status"] == "done")
        status = second.backfill_status(job["id"])
        assert (status["done"], status["success"], status["pending"]) == (3, 3, 0)
        runs = sorted(second.runs.find(RunFilter(loop="slow-hours")),
                      key=lambda run: run.scheduled_ms or 0)
        assert [(r.status, r.attempt) for r in runs] == [
            ("success", 2), ("success", 1), ("success", 1)]
        assert any(line["message"].startswith(f"resumed at restart by backfill {job['id']}")
                   for line in second.runs.logs(runs[0].id))
        # The interrupted time ran again; the others once each.
        assert sorted(executions(second).values()) == [1, 1, 2]
    finally:
        second.close()


def test_a_backfill_stopped_before_it_created_its_runs_creates_them_at_restart(
        tmp_path: Path, database_url: str | None) -> None:
    first = started(tmp_path, database_url)
    try:
        first.deploy(LOOPS.replace("slow.js", "fast.js"), "loops.yml",
                     {"fast.js": "export default async () => 'ok';"}.get)
        version = first.loops.get("default", "slow-hours").latest.id
        # As the service stores a job before creating its runs, and stopped in between.
        first.backfills.jobs.add(BackfillJob(
            "0123456789abcdef", "default", "slow-hours", ("hourly",), version,
            int(FROM.timestamp() * 1000), int(TO.timestamp() * 1000), total=3, skipped=0,
            created_ms=int(time.time() * 1000)))
        assert first.backfill_status("0123456789abcdef")["pending"] == 0
    finally:
        first.close()
    second = started(tmp_path, database_url)
    try:
        until(lambda: second.backfill_status("0123456789abcdef")["status"] == "done")
        assert second.backfill_status("0123456789abcdef")["success"] == 3
    finally:
        second.close()
