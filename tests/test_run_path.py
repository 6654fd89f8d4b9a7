"""A run somebody waits for, end to end: run on the waiting thread when a worker is idle,
queued behind the others when none is, and never left waiting when its end cannot be recorded."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tsq import groupcommit, hotsql
from tsq.config import Settings
from tsq.errors import BadRequest
from tsq.outcomes import RunStatus
from tsq.run import RunFilter
from tsq.service import Service, _covers_a_window

SLOW = "export default () => new Promise(r => setTimeout(() => r('slow'), 400))"


@pytest.fixture()
def service(tmp_path: Path, database_url: str | None) -> Iterator[Service]:
    made = Service(dataclasses.replace(Settings.load(tmp_path, database_url), workers=1))
    files = {"fast.js": "export default async (e) => e.params.n * 2", "slow.js": SLOW}
    made.deploy("functions:\n  fast:\n    handler: fast.js\n  slow:\n    handler: slow.js\n",
                "loops.yml", files.get)
    yield made
    made.close()


def test_a_waited_for_run_on_an_idle_worker_is_done_when_submit_returns(
        service: Service) -> None:
    # The first run starts the worker on its slot's thread (a worker dies with the thread
    # that started it); the next ones borrow it.
    assert service.run("fast", {"n": 1}).result == 2
    submitted = service.submit("fast", {"n": 21}, inline=True)
    assert submitted.done.done()  # it ran on this thread
    final = submitted.done.result()
    assert (final.status, final.result) == (RunStatus.SUCCESS, 42)
    assert service.runs.get(final.id).status == RunStatus.SUCCESS


def test_with_the_worker_busy_a_waited_for_run_queues_and_still_ends(service: Service) -> None:
    """`slow` runs on a thread that ends before the queued run does: the worker it borrowed
    must outlive that thread."""
    assert service.run("fast", {"n": 1}).result == 2
    busy = threading.Thread(target=service.run, args=("slow",))
    busy.start()
    try:
        threading.Event().wait(0.15)  # the only worker runs `slow`
        submitted = service.submit("fast", {"n": 2}, inline=True)
        assert not submitted.done.done()  # queued behind it, not run here
        assert submitted.done.result(timeout=30).result == 4
    finally:
        busy.join(timeout=30)


def test_a_run_whose_end_cannot_be_recorded_is_answered_failed_not_left_waiting(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(service.runs, "settle_many", broken)
    final = service.run("fast", {"n": 1})
    assert final.status == RunStatus.FAILED
    assert final.error is not None and "disk full" in final.error.message


def test_a_run_on_the_waiting_thread_can_be_cancelled(service: Service) -> None:
    service.deploy("functions:\n  spin:\n    handler: spin.js\n", "spin.yml", {
        "spin.js": "export default async () => { await null; while (true) {} }"}.get)
    assert service.run("fast", {"n": 1}).result == 2  # its slot's thread starts the worker
    ended: list[RunStatus] = []
    waiting = threading.Thread(target=lambda: ended.append(service.run("spin").status))
    waiting.start()
    try:
        threading.Event().wait(0.5)
        [running] = [r for r in service.runs.unfinished() if r.loop == "spin"]
        assert service.cancel(running.id)["status"] == "cancelled"
    finally:
        waiting.join(timeout=30)
    assert ended == [RunStatus.CANCELLED]
    assert service.run("fast", {"n": 3}).result == 6  # a new worker took its place


def test_a_short_waited_for_run_is_recorded_in_one_write(service: Service,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # a machine slow enough to take groupcommit.SOON_S over a short run commits its creation
    # alone: that is the bound, not what this test is about
    monkeypatch.setattr(groupcommit, "SOON_S", 30.0)
    assert service.run("fast", {"n": 1}).result == 2
    before = service.runs.writes.batches
    final = service.run("fast", {"n": 2})
    assert service.runs.writes.batches == before + 1  # created and ended in one transaction
    stored = service.runs.get(final.id)
    assert (stored.status, stored.result) == (RunStatus.SUCCESS, 4)
    assert stored.started_ms is not None and stored.finished_ms is not None


def test_a_run_with_an_integer_its_record_cannot_hold_is_refused_naming_it(
        service: Service) -> None:
    """JSON has no bound on integers; the run store's holds 64 bits. A param past them is a 400
    naming where it is, and no run is recorded (it was a 500 from the run store's write)."""
    before = len(service.runs.find(RunFilter(loop="fast")))
    with pytest.raises(BadRequest, match=r"params\.n\[1\]\.x = 1180591620717411303424 is out "
                                         r"of range: an integer must be from -2\^63 to 2\^64 - 1"):
        service.run("fast", {"n": [1, {"x": 2**70}]})
    with pytest.raises(BadRequest, match=r"params\.n = an integer of 4001 bits is out of range"):
        service.run("fast", {"n": 2**4000})
    assert len(service.runs.find(RunFilter(loop="fast"))) == before
    assert service.run("fast", {"n": 2**62}).status == RunStatus.SUCCESS  # within: runs


def test_a_long_waited_for_run_is_on_record_while_it_runs(service: Service) -> None:
    assert service.run("fast", {"n": 1}).result == 2
    waiting = threading.Thread(target=service.run, args=("slow",))
    waiting.start()
    try:
        threading.Event().wait(0.3)  # past groupcommit.SOON_S, before the run's end
        assert [r.status for r in service.runs.unfinished() if r.loop == "slow"] == [
            RunStatus.RUNNING]
    finally:
        waiting.join(timeout=30)
    [slow] = service.runs.find(RunFilter(loop="slow"))
    assert slow.status == RunStatus.SUCCESS and slow.result == "slow"


def test_a_waited_for_run_that_cannot_be_recorded_says_so(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    assert service.run("fast", {"n": 1}).result == 2

    def broken(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(hotsql, "insert_runs", broken)
    with pytest.raises(OSError, match="disk full"):
        service.run("fast", {"n": 2})


def test_the_ends_of_runs_elsewhere_matter_only_while_someone_waits(service: Service) -> None:
    dispatcher = service.dispatcher
    assert not dispatcher.hears_ends()  # a cluster's worker process then skips every notice
    waiting = dispatcher.wait("r1")
    assert dispatcher.hears_ends()
    dispatcher.ended_elsewhere([{**service.run("fast", {"n": 1}).to_json(), "id": "r1"}])
    assert waiting.result(timeout=5).id == "r1" and not dispatcher.hears_ends()


def test_a_listener_to_the_ends_elsewhere_hears_only_those_it_wants(service: Service) -> None:
    dispatcher = service.dispatcher
    heard: list[str] = []
    dispatcher.on_finished_elsewhere(lambda run: heard.append(run.id),
                                     lambda item: item["id"] != "skipped")
    waiting = dispatcher.wait("skipped")
    ended = service.run("fast", {"n": 1}).to_json()
    dispatcher.ended_elsewhere([{**ended, "id": "skipped"}, {**ended, "id": "wanted"}])
    assert heard == ["wanted"]
    assert waiting.result(timeout=5).id == "skipped"  # its waiter still wakes


@pytest.mark.parametrize("status", [RunStatus.SUCCESS, RunStatus.FAILED])
@pytest.mark.parametrize("key", ["cpu:s:60000", "", None])
@pytest.mark.parametrize("window_end_ms", [120_000, None])
def test_the_api_process_takes_from_the_ends_elsewhere_exactly_the_runs_it_records(
        service: Service, monkeypatch: pytest.MonkeyPatch, status: RunStatus, key: str | None,
        window_end_ms: int | None) -> None:
    # a cluster's api process asks `_covers_a_window` of each run's JSON before `_covered`
    # sees it: the two must agree, or windows covered elsewhere are never recorded
    recorded: list[int] = []
    monkeypatch.setattr(service.late, "covered", lambda _p, _l, end: recorded.append(end))
    run = dataclasses.replace(service.run("fast", {"n": 1}), status=status, key=key,
                              window_start_ms=60_000 if window_end_ms else None,
                              window_end_ms=window_end_ms)
    service._covered(run)
    assert _covers_a_window(run.to_json()) == bool(recorded)
