"""`tsq demo`: the example pipeline (examples/pipeline) on nine days of sample points.

It writes one cpu point a minute for three hosts over the nine days before the current hour,
deploys the pipeline, backfills the hourly rollups and the daily reports (their `after:` steps
follow: the 1-hour rollup and the retention), and tells where to look.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tsq.errors import NotFound
from tsq.outcomes import UNFINISHED
from tsq.run import RunFilter

__all__ = ["EXAMPLE", "run_demo", "sample_lines"]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pipeline" / "loops.yml"
DAYS = 9
HOSTS = {"web01": "gra", "web02": "gra", "db01": "rbx"}
FOLLOW_UP_S = 300.0  # how long the demo waits for the steps that follow the backfills


class DemoClient(Protocol):
    def deploy(self, loop_file: Path) -> dict[str, Any]: ...
    def write(self, body: str, precision: str) -> dict[str, Any]: ...
    def backfill(self, name: str, start: str, end: str, project: str | None,
                 event: str | None) -> dict[str, Any]: ...
    def backfill_status(self, job_id: str) -> dict[str, Any]: ...
    def runs(self, where: RunFilter) -> dict[str, Any]: ...


def sample_lines(end: datetime, days: int = DAYS) -> str:
    """One point a minute per host for `days` before `end`: a daily wave plus noise."""
    minutes = np.arange(days * 1440)
    start_s = int(end.timestamp()) - days * 86400
    stamps = start_s + minutes * 60
    rng = np.random.default_rng(1)
    lines: list[str] = []
    for offset, (host, dc) in enumerate(HOSTS.items()):
        wave = 45 + 25 * np.sin((minutes + 120 * offset) / 1440 * 2 * np.pi)
        values = np.clip(wave + rng.normal(0, 6, minutes.size), 0, 100)
        lines += [f"cpu,dc={dc},host={host} value={v:.2f} {t}"
                  for v, t in zip(values, stamps, strict=True)]
    return "\n".join(lines)


def run_demo(client: DemoClient, say: Any, now: datetime | None = None) -> dict[str, Any]:
    """Seed, deploy, backfill; `say(text)` reports progress. The newest report's run record."""
    if not EXAMPLE.exists():
        raise NotFound(f"the example pipeline is not at {EXAMPLE}; `tsq demo` runs from a "
                       f"checkout of the tsq repository")
    hour = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    first = hour - timedelta(days=DAYS)
    written = client.write(sample_lines(hour), "s")["written"]
    say(f"wrote {written} raw cpu points ({len(HOSTS)} hosts, one a minute, {DAYS} days)")
    deployed = client.deploy(EXAMPLE)["loops"]
    say(f"deployed {', '.join(loop['name'] for loop in deployed)} from {EXAMPLE}")
    hours = _backfill(client, "cpu-1m", first + timedelta(hours=1), hour + timedelta(hours=1))
    say(f"rolled up {hours} hours (cpu-1m, then cpu-1h after each)")
    _settle(client, "cpu-1h", hours)
    day = hour.replace(hour=0)
    days = _backfill(client, "cpu-report", first + timedelta(days=1), day + timedelta(hours=1))
    say(f"made {days} daily reports (cpu-report, then cpu-retention after each)")
    retentions = _settle(client, "cpu-retention", days)
    reports = _settle(client, "cpu-report", days)
    deleted = sum(int((r.get("result") or {}).get("deleted", 0)) for r in retentions)
    say(f"retention deleted {deleted} raw points older than 7 days that both rollups covered")
    return max(reports, key=lambda r: r["scheduled_ms"] or 0)


def _backfill(client: DemoClient, loop: str, start: datetime, end: datetime) -> int:
    job = client.backfill(loop, start.isoformat(), end.isoformat(), "demo", None)
    while job["status"] != "done":
        time.sleep(0.2)
        job = client.backfill_status(job["id"])
    return int(job["total"])


def _settle(client: DemoClient, loop: str, count: int) -> list[dict[str, Any]]:
    """The newest runs of `loop`, once `count` of them have ended (or the wait is over)."""
    deadline = time.monotonic() + FOLLOW_UP_S
    while True:
        found = client.runs(RunFilter(loop=loop, limit=max(count, 1)))["runs"]
        ended = [r for r in found if r["status"] not in UNFINISHED]
        if len(ended) >= count or time.monotonic() > deadline:
            return ended
        time.sleep(0.2)
