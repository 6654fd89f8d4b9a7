"""The work queue's feeder against a bus that only answers pulls: when it pulls again."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

import pytest

from tsq.cluster import workqueue
from tsq.cluster.bus import Bus, BusNames, Delivery
from tsq.cluster.workqueue import WorkQueue
from tsq.dispatcher import Dispatcher
from tsq.outcomes import RunStatus
from tsq.run import Run
from tsq.runstore import NewRun, RunStore

PULLS_S = 5.0  # the longest a test waits for the pulls it expects
CAPACITY = 2 * workqueue.PULL_BATCH  # runs the worker process holds at once


class PullingBus:
    """Hands out `first` on the first pull and nothing after; notes when each pull began."""

    def __init__(self, first: list[Delivery]) -> None:
        self.names = BusNames("tq")
        self.max_deliver = 3
        self.ack_wait_s = 30.0
        self.acked: list[Delivery] = []
        self.pulled_at: list[float] = []
        self.answered_at = 0.0
        self._first = first
        self.two_pulls = threading.Event()

    def pull(self, batch: int, timeout_s: float) -> list[Delivery]:
        self.pulled_at.append(time.monotonic())
        if len(self.pulled_at) == 2:
            self.two_pulls.set()
        if len(self.pulled_at) == 1:
            self.answered_at = time.monotonic()
            return self._first
        time.sleep(0.01)
        return []

    def ack_all(self, deliveries: list[Delivery]) -> None:
        self.acked += deliveries

    def listen(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def in_progress_all(self, _deliveries: list[Delivery]) -> None:
        pass

    def publish_runs(self, _runs: list[Any]) -> None:
        pass


class NoRuns:
    """A run store asked only for runs delivered again, of which there are none."""

    def get_many(self, _run_ids: list[str]) -> dict[str, Run]:
        return {}


class HoldingDispatcher:
    """Takes runs and keeps them (they run here for as long as the test lasts)."""

    def __init__(self) -> None:
        self.taken: list[Run] = []

    def take(self, run: Run) -> None:
        self.taken.append(run)


def delivery(bus: PullingBus, status: RunStatus, run_id: str) -> Delivery:
    run = NewRun(project="p", loop="l", event="manual", version_id="v", trigger="manual",
                 params={}).queued(run_id, 0)
    record = run.evolve(status=status).to_json()
    return Delivery(run_id, run.attempt, 1, record, cast(Any, None), cast(Bus, bus))


def fed(bus: PullingBus) -> tuple[WorkQueue, HoldingDispatcher]:
    queue = WorkQueue(cast(Bus, bus), cast(RunStore, NoRuns()))
    dispatcher = HoldingDispatcher()
    queue.feed(cast(Dispatcher, dispatcher), capacity=CAPACITY)
    return queue, dispatcher


@pytest.mark.parametrize(("status", "runs", "gathers"), [
    (RunStatus.QUEUED, 1, True),  # taken: it runs here, so the next runs gather a moment
    (RunStatus.SUCCESS, 1, False),  # ended already: acknowledged, nothing held, nothing to do
    (RunStatus.QUEUED, workqueue.PULL_BATCH, False),  # all it asked for: more are waiting
])
def test_a_busy_worker_process_lets_runs_gather_before_it_pulls_again_an_idle_one_does_not(
        monkeypatch: pytest.MonkeyPatch, status: RunStatus, runs: int, gathers: bool) -> None:
    gather_s = 0.3 if gathers else 60.0
    monkeypatch.setattr(workqueue, "GATHER_S", gather_s)
    bus = PullingBus([])
    bus._first = [delivery(bus, status, f"r{n}") for n in range(runs)]
    queue, dispatcher = fed(bus)
    try:
        assert bus.two_pulls.wait(PULLS_S)  # within PULLS_S, not 60 s, unless it gathers
        taken = [f"r{n}" for n in range(runs)] if status == RunStatus.QUEUED else []
        assert [run.id for run in dispatcher.taken] == taken
        assert [d.run_id for d in bus.acked] == ([] if taken else ["r0"])
        if gathers:
            assert bus.pulled_at[1] - bus.answered_at >= gather_s
    finally:
        queue.close()
