"""The ledger (`GET /v1/loops/{name}/ledger`): every scheduled time of a loop in a range, with the
status of its run or why it has none."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import deploy
from tsq.config import Settings
from tsq.ledger import DEFAULT_FUTURE, DEFAULT_PAST, MAX_CELLS, LedgerRange
from tsq.outcomes import RunStatus
from tsq.runstore import NewRun, run_key
from tsq.service import Service

HOURLY = "    events:\n      - hourly:\n          rate: R/2026-01-01T00:00:00Z/PT1H/ET5M\n"
# The window of scheduled time t starts an hour before it: odd hours fail.
ODD_FAILS = ("export default async (e) => { const h = new Date(e.window.start).getUTCHours(); "
             "if (h % 2) throw new Error(`odd hour ${h}`); return h; }")


def statuses(answer: dict[str, Any]) -> list[tuple[str, str]]:
    [event] = answer["events"]
    return [(cell["time"][11:16], cell["status"]) for cell in event["cells"]]


def wait_backfill(api: httpx.Client, job: str) -> None:
    deadline = time.monotonic() + 60
    while api.get(f"/v1/backfill/{job}").json()["status"] != "done":
        assert time.monotonic() < deadline, "the backfill did not finish within 60 s"
        time.sleep(0.2)


def test_backfilled_times_show_their_runs_and_the_rest_why_they_have_none(
        api: httpx.Client) -> None:
    assert deploy(api, "ledger-hourly", ODD_FAILS, HOURLY).status_code == 201
    job = api.post("/v1/backfill", json={"loop": "ledger-hourly", "from": "2026-11-24T01:00:00Z",
                                         "to": "2026-11-24T05:00:00Z"}).json()
    wait_backfill(api, job["id"])
    answer = api.get("/v1/loops/ledger-hourly/ledger", params={
        "from": "2026-11-23T23:00:00Z", "to": "2026-11-24T07:00:00Z"}).json()
    # Before the loop's schedule took effect (at its deploy, now) the scheduler ran nothing:
    # the times outside the backfill are "before", not "missing".
    assert statuses(answer) == [
        ("23:00", "before"), ("00:00", "before"), ("01:00", "success"), ("02:00", "failed"),
        ("03:00", "success"), ("04:00", "failed"), ("05:00", "before"), ("06:00", "before")]
    [event] = answer["events"]
    assert event["counts"] == {"before": 4, "success": 2, "failed": 2}
    assert (event["name"], event["rate"]) == ("hourly", "R/2026-01-01T00:00:00Z/PT1H/ET5M")
    for cell in event["cells"]:
        if cell["run"] is not None:  # each cell is its scheduled time's run, by key
            run = api.get(f"/v1/runs/{cell['run']}").json()
            assert (run["scheduled_ms"], run["trigger"], run["status"]) == (
                cell["ms"], "backfill", cell["status"])
    failed = api.get(f"/v1/runs/{event['cells'][3]['run']}").json()
    assert failed["error"]["message"] == "odd hour 1"


def test_without_a_range_a_new_loop_shows_its_next_times(api: httpx.Client) -> None:
    assert deploy(api, "ledger-default", "export default async () => 1", HOURLY).status_code == 201
    [event] = api.get("/v1/loops/ledger-default/ledger").json()["events"]
    assert [c["status"] for c in event["cells"]] == ["upcoming"] * DEFAULT_FUTURE
    assert datetime.fromisoformat(event["cells"][0]["time"]) > datetime.now(UTC)


def test_a_range_it_cannot_answer_is_a_400_naming_it(api: httpx.Client) -> None:
    assert deploy(api, "ledger-bad", "export default async () => 1", HOURLY).status_code == 201
    wide = api.get("/v1/loops/ledger-bad/ledger", params={"from": "2026-01-01T00:00:00Z",
                                                         "to": "2026-12-01T00:00:00Z"})
    assert wide.status_code == 400
    assert f"more than {MAX_CELLS} scheduled times of event 'hourly'" in wide.json()["error"][
        "message"]
    backwards = api.get("/v1/loops/ledger-bad/ledger", params={"from": "2026-02-01T00:00:00Z",
                                                              "to": "2026-01-01T00:00:00Z"})
    assert backwards.status_code == 400 and "must be before" in backwards.text
    unknown = api.get("/v1/loops/ledger-bad/ledger", params={"event": "daily"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == (
        "loop 'ledger-bad' has no scheduled event 'daily'; its scheduled events: hourly")
    no_offset = api.get("/v1/loops/ledger-bad/ledger", params={"from": "2026-01-01T00:00:00"})
    assert no_offset.status_code == 400 and "from" in no_offset.json()["error"]["message"]
    assert api.get("/v1/loops/no-such-loop/ledger").status_code == 404


class FakeClock:
    def __init__(self, at: str) -> None:
        self.now = datetime.fromisoformat(at).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stopped(tmp_path: Path) -> Iterator[tuple[Service, FakeClock]]:
    """A service whose scheduler never starts, under a clock the test moves."""
    clock = FakeClock("2026-11-24T10:00:00+00:00")
    service = Service(Settings.load(tmp_path), clock=clock)
    yield service, clock
    service.close()


def test_times_past_their_epsilon_without_a_run_are_missing(
        stopped: tuple[Service, FakeClock]) -> None:
    service, clock = stopped
    service.deploy("functions:\n  gaps:\n    handler: gaps.js\n" + HOURLY, "loops.yml",
                   {"gaps.js": "export default async () => 1"}.get)
    loop = service.loops.find("gaps")[0]
    for hour, status in ((11, RunStatus.EXPIRED), (12, RunStatus.QUEUED),
                         (13, RunStatus.RUNNING), (14, RunStatus.TIMEOUT)):
        ms = int(datetime(2026, 11, 24, hour, tzinfo=UTC).timestamp() * 1000)
        service.runs.create(NewRun(project=loop.project, loop="gaps", event="hourly",
                                   version_id=loop.latest.id, trigger="schedule", params={},
                                   key=run_key("gaps", "hourly", ms), scheduled_ms=ms,
                                   status=status))
    clock.now = datetime(2026, 11, 24, 16, 3, tzinfo=UTC).timestamp()  # 16:00 is 3 min late
    answer = service.ledger("gaps", LedgerRange(datetime(2026, 11, 24, 9, tzinfo=UTC),
                                                datetime(2026, 11, 24, 19, tzinfo=UTC)))
    assert statuses(answer) == [
        ("09:00", "before"), ("10:00", "missing"),  # the deploy was at 10:00 exactly
        ("11:00", "expired"), ("12:00", "queued"), ("13:00", "running"), ("14:00", "timeout"),
        ("15:00", "missing"), ("16:00", "due"), ("17:00", "upcoming"), ("18:00", "upcoming")]
    clock.now += 300  # now 16:08, past the epsilon of 5 minutes
    later = service.ledger("gaps", LedgerRange(datetime(2026, 11, 24, 16, tzinfo=UTC),
                                               datetime(2026, 11, 24, 17, tzinfo=UTC)))
    assert statuses(later) == [("16:00", "missing")]
    # Without a range: the latest times since the schedule took effect, and the next ones.
    assert [s for _, s in statuses(service.ledger("gaps", LedgerRange()))] == [
        "missing", "expired", "queued", "running", "timeout", "missing", "missing",
        *["upcoming"] * DEFAULT_FUTURE]
    clock.now += 100 * 3600
    [event] = service.ledger("gaps", LedgerRange())["events"]
    assert len(event["cells"]) == DEFAULT_PAST + DEFAULT_FUTURE
