"""`tsq run --at/--window` on a local data directory, as a new user would type it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import tsq

# Three scheduled times (00:00, 00:01, 00:02), all in the past: the latest complete period is
# always [00:01, 00:02), whenever the test runs.
LOOPS = """functions:
  roll:
    handler: roll.js
    events:
      - tick:
          rate: R2/2026-01-01T00:00:00Z/PT1M/ET1M
"""
ROLL = """export default async function (event) {
  const cpu = await db.select("clirun_cpu", {start: event.window.start, end: event.window.end});
  return cpu.flatMap(s => Array.from(s.values));
}
"""


@pytest.mark.slow
def test_run_by_hand_with_the_window_of_a_scheduled_time(tmp_path: Path) -> None:
    (tmp_path / "loops.yml").write_text(LOOPS)
    (tmp_path / "roll.js").write_text(ROLL)
    (tmp_path / "points.lp").write_text("".join(f"clirun_cpu value={i} {1767225600 + 30 * i}\n"
                                                for i in range(6)))
    assert tsq(tmp_path, "write", str(tmp_path / "points.lp"), "--precision", "s").returncode == 0
    assert tsq(tmp_path, "deploy", str(tmp_path / "loops.yml")).returncode == 0

    latest = tsq(tmp_path, "run", "roll")
    assert latest.returncode == 0, latest.stderr
    assert ("window [2026-01-01T00:01:00Z, 2026-01-01T00:02:00Z) of scheduled time "
            "2026-01-01T00:02:00Z (latest complete period; --at or --window to choose)"
            ) in latest.stdout
    assert latest.stdout.endswith("\n[\n  2,\n  3\n]\n")

    at = tsq(tmp_path, "run", "roll", "--at", "2026-01-01T00:01:00Z")
    assert at.returncode == 0, at.stderr
    assert at.stdout.startswith("window [2026-01-01T00:00:00Z, 2026-01-01T00:01:00Z) of "
                                "scheduled time 2026-01-01T00:01:00Z\n")
    assert at.stdout.endswith("\n[\n  0,\n  1\n]\n")
    given = tsq(tmp_path, "run", "roll", "--window", "2026-01-01T00:00:30Z/2026-01-01T00:02:00Z",
                "--json")
    assert json.loads(given.stdout)["result"] == [1.0, 2.0, 3.0]

    for args, message in (
            (("--at", "2026-01-01T00:01:30Z"),
             "--at (`at`) 2026-01-01T00:01:30+00:00 is not a scheduled time of "
             "R2/2026-01-01T00:00:00Z/PT1M/ET1M; the nearest ones are 2026-01-01T00:01:00+00:00 "
             "and 2026-01-01T00:02:00+00:00"),
            (("--at", "2026-01-01T00:05:00Z"), "the nearest one is 2026-01-01T00:02:00+00:00"),
            (("--at", "noon"), "--at 'noon' is not an ISO-8601 time"),
            (("--window", "2026-01-01T00:00:00Z"), "--window '2026-01-01T00:00:00Z' is not "
                                                   "START/END"),
            (("--window", "2026-01-01T00:00:00Z/later"), "--window end 'later' is not an "
                                                         "ISO-8601 time")):
        bad = tsq(tmp_path, "run", "roll", *args)
        assert bad.returncode == 3, (args, bad.stdout, bad.stderr)
        assert message in " ".join(bad.stderr.split()), (args, bad.stderr)
        assert "Traceback" not in bad.stderr
