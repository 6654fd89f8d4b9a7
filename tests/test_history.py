"""Bounded run history: runs, their log lines and their artifacts are kept as the loop file's
`history:` says and swept in the background, never a run its pipeline still needs; on the real
service with real workers and a clock the test moves."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, bearer, serving
from tests.scheduling_helpers import FakeClock
from tests.test_cli_runs import tsq
from tsq.config import Settings
from tsq.errors import InvalidLoopFile, NotFound
from tsq.history import HistorySweeper
from tsq.loopfile import load_loop_file
from tsq.model import History
from tsq.outcomes import RunResult, RunStatus
from tsq.runstore import NewRun, Settlement
from tsq.service import Service
from tsq.shorthands import duration_ms

DAY_S = 86_400
KIB = 1024
LOOPS = """
history: {keep: 2d, keep_failed: 5d}
functions:
  h-ok:
    handler: h-ok.js
  h-bad:
    handler: h-bad.js
  h-step:
    handler: h-step.js
    history: {keep: 1d}
  h-main:
    handler: h-main.js
  h-files:
    handler: h-files.js
    history: {max_artifacts_mb: 1}
  h-daily:
    handler: h-ok.js
    # It starts after the test's clock and the real one: only backfills run it.
    events: [{daily: {rate: "R/2030-01-01T00:00:00Z/P1D/ET1H"}}]
"""
HANDLERS = {
    "h-ok.js": "export default () => { console.log('fine'); return 'ok'; }",
    "h-bad.js": "export default () => { throw new Error('broken'); }",
    "h-step.js": "export default () => 'step'",
    # The step succeeds, then the caller fails: a resume would replay the step's result.
    "h-main.js": "export default async () => { await Loop.run('h-step'); "
                 "throw new Error('after the step'); }",
    "h-files.js": "export default () => artifacts.save('blob.txt', 'x'.repeat(400 * 1024))",
}


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 6, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, clock: FakeClock,
        module_database_url: str | None) -> Iterator[Service]:
    service = Service(Settings.load(tmp_path_factory.mktemp("history"), module_database_url),
                      clock=clock)
    service.history.interval_s = 0.2  # the background sweeper, often
    service.start()
    service.deploy(LOOPS, "loops.yml", HANDLERS.get)
    yield service
    service.close()
    assert not service.history._thread or not service.history._thread.is_alive()


def kept_of(svc: Service, loop: str) -> dict[str, Any]:
    [row] = [r for r in svc.kept()["loops"] if r["loop"] == loop]
    return row


def exists(svc: Service, run_id: str) -> bool:
    try:
        svc.runs.get(run_id)
    except NotFound:
        return False
    return True


def test_runs_go_after_keep_and_failed_ones_after_keep_failed(svc: Service,
                                                              clock: FakeClock) -> None:
    ok, bad = svc.run("h-ok"), svc.run("h-bad")
    assert (ok.status, bad.status) == ("success", "failed")
    row = kept_of(svc, "h-ok")
    assert row["runs"] == 1 and row["logs"] == 1 and row["logBytes"] == len("fine")
    assert row["policy"] == {"keep_ms": 2 * DAY_S * 1000, "keep_failed_ms": 5 * DAY_S * 1000,
                             "max_artifacts_mb": 512}

    clock.now += 3 * DAY_S
    swept = svc.history.sweep()
    assert not exists(svc, ok.id) and exists(svc, bad.id)
    assert swept.runs >= 1 and swept.logs >= 1
    assert svc.run_logs(bad.id)["logs"]  # a kept run keeps its log

    clock.now += 3 * DAY_S
    svc.history.sweep()
    assert not exists(svc, bad.id)
    assert [r["loop"] for r in svc.kept()["loops"] if r["loop"] in ("h-ok", "h-bad")] == []


def test_a_pipeline_is_kept_whole_while_a_run_of_it_is_kept(svc: Service,
                                                            clock: FakeClock) -> None:
    main = svc.run("h-main")
    assert main.status == "failed" and "after the step" in main.error.message  # type: ignore[union-attr]
    [step] = [r for r in svc.runs.pipeline(main.pipeline_id) if r.loop == "h-step"]
    assert step.status == "success"

    # The step is past its loop's keep (1 day), but the failed caller, which a resume would
    # run again (replaying the step), is kept 5 days: so is the step.
    clock.now += 2 * DAY_S
    svc.history.sweep()
    assert exists(svc, step.id) and exists(svc, main.id)
    clock.now += 4 * DAY_S
    svc.history.sweep()
    assert not exists(svc, step.id) and not exists(svc, main.id)


def test_the_oldest_artifacts_go_past_max_artifacts_mb(svc: Service, clock: FakeClock) -> None:
    made = []
    for _ in range(4):
        made.append(svc.run("h-files"))
        clock.now += 60
    assert all(run.status == "success" for run in made)
    # The fixture's background sweeper (every 0.2 s) may go first, after any run and between
    # the count and the sweep below: this sweep deletes what it left over the cap.
    before = kept_of(svc, "h-files")["artifactBytes"]
    assert before in (2 * 400 * KIB, 3 * 400 * KIB, 4 * 400 * KIB)
    swept = svc.history.sweep()
    assert swept.artifacts <= before // (400 * KIB) - 2
    assert swept.artifact_bytes == swept.artifacts * 400 * KIB
    row = kept_of(svc, "h-files")
    assert (row["runs"], row["artifacts"], row["artifactBytes"]) == (4, 2, 800 * KIB)
    assert [len(svc.run_artifacts(run.id)["artifacts"]) for run in made] == [0, 0, 1, 1]


def test_the_sweeper_runs_by_itself_and_reports_over_http_and_the_cli(
        svc: Service, clock: FakeClock, tmp_path: Any) -> None:
    with serving(svc) as url:
        answer = httpx.get(f"{url}/v1/history", headers=bearer(svc)).json()
        shown = tsq(tmp_path, "runs", "kept", url=url, token=svc.admin_token)
    assert answer["total"]["runs"] == sum(r["runs"] for r in answer["loops"])
    assert answer["total"]["artifactBytes"] == 800 * KIB
    assert shown.returncode == 0, shown.stderr
    [files] = [line for line in shown.stdout.splitlines() if "h-files" in line]
    assert "2 (800.0 KiB)" in files and "2d" in files and "1 MiB" in files
    assert "2 artifacts (800.0 KiB) kept" in shown.stdout

    ok = svc.run("h-ok")
    before = svc.kept()["total"]["runs"]
    clock.now += 3 * DAY_S
    deadline = time.monotonic() + 10
    # no sweep() here: the background thread does it, a loop at a time (h-files' runs may go
    # after h-ok's)
    while exists(svc, ok.id) or svc.kept()["total"]["artifactBytes"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # What the sweep deleted shows in what is kept (`lastSweep` may already be a later sweep's,
    # which found nothing left to delete).
    assert svc.kept()["total"]["runs"] < before
    assert svc.kept()["lastSweep"]["at"] is not None
    assert svc.kept()["total"]["artifactBytes"] == 0  # h-files' runs went with their files


def test_a_finished_backfill_is_recorded_before_its_runs_go(svc: Service,
                                                            clock: FakeClock) -> None:
    job = svc.backfill("h-daily", datetime(2030, 1, 2, tzinfo=UTC),
                       datetime(2030, 1, 5, tzinfo=UTC))
    deadline = time.monotonic() + 30
    while svc.backfill_status(job["id"])["status"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    clock.now += 3 * DAY_S
    svc.history.sweep()
    assert [r for r in svc.kept()["loops"] if r["loop"] == "h-daily"] == []
    assert svc.backfill_status(job["id"])["status"] == "done"
    # A restart does not take the swept runs for missing ones.
    assert svc.backfills.resume([]) == set()
    assert [r for r in svc.kept()["loops"] if r["loop"] == "h-daily"] == []


def test_the_newest_scheduled_run_of_an_event_stays(svc: Service, clock: FakeClock) -> None:
    # The scheduler's catch-up resumes from it; the older ones go.
    day = int(datetime(2030, 2, 1, tzinfo=UTC).timestamp() * 1000)
    version = svc.loops.get("default", "h-daily").latest.id
    made = svc.runs.create_new([NewRun(
        project="default", loop="h-daily", event="daily", version_id=version,
        trigger="schedule", params={}, key=f"h-daily:daily:{day + i * 86_400_000}",
        scheduled_ms=day + i * 86_400_000) for i in range(3)])
    svc.runs.claim_many([run.id for run in made])
    svc.runs.settle_many([Settlement(svc.runs.get(run.id), RunResult(RunStatus.SUCCESS))
                          for run in made])
    clock.now += 3 * DAY_S
    svc.history.sweep()
    assert [exists(svc, run.id) for run in made] == [False, False, True]


def test_the_sweeper_thread_stops_on_close(svc: Service, clock: FakeClock) -> None:
    sweeper = HistorySweeper(svc.runs.engine, svc.loops, clock, interval_s=0.05)
    sweeper.start()
    time.sleep(0.3)
    sweeper.close()
    assert sweeper.last.at_ms == int(clock.now * 1000)
    assert sweeper._thread is not None and not sweeper._thread.is_alive()


def test_history_mistakes_are_deploy_errors_with_their_place(svc: Service) -> None:
    bad = ("history: {keep: 30days, max_artifacts_mb: 0}\n"
           "functions:\n  h-x:\n    handler: h-ok.js\n    history: {keep_failed: 1y, kept: 1d}\n")
    with pytest.raises(InvalidLoopFile) as caught:
        svc.deploy(bad, "bad.yml", HANDLERS.get)
    text = str(caught.value)
    assert text.splitlines()[1:] == [
        '  bad.yml:1:17: history.keep: "30days" is not valid; expected a duration like "1m", '
        '"1h", "7d" or "2w"',
        "  bad.yml:1:43: history.max_artifacts_mb: 0 is out of range; expected 1 to 102400 MiB",
        '  bad.yml:5:32: functions.h-x.history.kept: unknown key "kept"; did you mean "keep"?',
        '  bad.yml:5:28: functions.h-x.history.keep_failed: "1y" is not valid; expected a '
        'duration like "1m", "1h", "7d" or "2w"']


def test_the_documented_history_deploys_as_it_says() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    section = page[page.index("## Run history"):page.index("## Logs")]
    example = section[section.index("```yaml\n") + 8:section.index("```\n", section.index(
        "```yaml"))]
    [loop] = load_loop_file(example, "loops.yml", lambda name: "export default () => 1",
                            lambda *args: None)
    assert loop.spec.history_policy() == History(keep_ms=30 * DAY_S * 1000,
                                                 keep_failed_ms=90 * DAY_S * 1000,
                                                 max_artifacts_mb=2048)
    defaults = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", section, re.MULTILINE))
    assert defaults == {"keep": "30d", "keep_failed": "90d", "max_artifacts_mb": "512"}
    assert History() == History(keep_ms=duration_ms(defaults["keep"]),
                                keep_failed_ms=duration_ms(defaults["keep_failed"]),
                                max_artifacts_mb=int(defaults["max_artifacts_mb"]))
