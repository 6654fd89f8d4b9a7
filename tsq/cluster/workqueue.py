"""A cluster's runs on their way to the worker nodes, through JetStream's `TSQ_RUNS` stream.

Whoever offers a run (the leading scheduler, an API node, a worker node settling a run that
has followers or a retry) publishes it; every worker node's feeder pulls from the one durable
consumer, as many runs as it has room for, and hands each to its own dispatcher, which claims it
in the run store (queued → running: exactly one node gets it), runs it and settles it. Only
then is the message acknowledged, so a worker node that dies mid-run has its messages delivered
again after `ack_wait`; while a run waits or runs, its node tells the server so every third of
`ack_wait`.

A delivered message names a run and an attempt, and the run store decides what it means:

- queued at that attempt (a new message, or its last process died before claiming it):
  the feeder hands it to the dispatcher.
- running at that attempt, here: a late second delivery; the newer one is kept to answer.
- running at that attempt, elsewhere: its process died mid-run. The attempt is recorded
  interrupted and the next one queued as a new message (`RunStore.take_over`); on the
  message's last delivery the run is recorded interrupted instead, as a restart does.
- ended, or at another attempt: a duplicate or a superseded attempt; it is acknowledged.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from tsq.cluster.bus import Bus, Delivery
from tsq.outcomes import RunStatus
from tsq.run import Run
from tsq.runstore import RunStore

if TYPE_CHECKING:
    from tsq.dispatcher import Dispatcher

__all__ = ["WorkQueue"]

log = logging.getLogger(__name__)

PULL_BATCH = 64  # runs asked for at once, at most
PULL_WAIT_S = 1.0  # a feeder with nothing to do asks again this often (and sees a close)
WAITING_MAX = 1000
RESEND_S = 0.5  # how often runs that could not be published are tried again
RESEND_BATCH = 1000


class WorkQueue:
    def __init__(self, bus: Bus, runs: RunStore) -> None:
        self.bus = bus
        self.runs = runs
        self._held: dict[str, Delivery] = {}  # run id → its message, until the run leaves
        # Held runs whose loop's lane is full on other processes: they take no room, up to
        # WAITING_MAX, so one loop's catch-up does not keep other loops' runs from here.
        self._waiting: set[str] = set()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._dispatcher: Dispatcher | None = None
        self.capacity = 0
        self._unsent: list[tuple[str, str, int]] = []  # runs to publish once NATS answers
        self._threads.append(threading.Thread(target=self._publish_unsent, daemon=True,
                                              name="tsq-publish"))
        self._threads[0].start()

    # -- RunQueue ----------------------------------------------------------------------------

    def publish(self, runs: list[Run]) -> None:
        """Publish the runs; while NATS is away they wait here and go out once it is back
        (their records are queued in the run store meanwhile, so nothing is lost)."""
        messages = [(run.id, f"{run.project}/{run.key or run.id}", run.attempt) for run in runs]
        with self._lock:
            if self._unsent:  # keep the order: what waits goes first
                self._unsent.extend(messages)
                return
        try:
            self.bus.publish_runs(messages)
        except Exception as exc:
            log.warning("could not publish %d runs (%s); they go out once NATS answers",
                        len(messages), exc or type(exc).__name__)
            with self._lock:
                self._unsent.extend(messages)

    def _publish_unsent(self) -> None:
        while not self._stop.wait(RESEND_S):
            with self._lock:
                unsent = self._unsent[:RESEND_BATCH]
            if not unsent:
                continue
            try:
                self.bus.publish_runs(unsent)
            except Exception:  # still away
                continue
            with self._lock:
                del self._unsent[:len(unsent)]
            log.info("published %d runs that waited for NATS", len(unsent))

    def done(self, run_ids: list[str], *, ended: bool) -> None:
        with self._lock:
            answered = [d for run_id in run_ids if (d := self._held.pop(run_id, None))]
            self._waiting.difference_update(run_ids)
            self._room.notify()
        self.bus.ack_all(answered)
        if ended:
            self.bus.tell(self.bus.names.ended_subject, run_ids)

    def waiting(self, run_ids: list[str], claimed: set[str]) -> None:
        with self._lock:
            self._waiting.difference_update(claimed)
            self._waiting.update(run_ids)
            self._room.notify()

    def cancel(self, run_id: str) -> None:
        """Ask every worker node to stop `run_id` (the one running it does)."""
        self.bus.tell(self.bus.names.cancel_subject, [run_id])

    # -- feeding a worker node -------------------------------------------------------------

    def feed(self, dispatcher: Dispatcher, capacity: int) -> None:
        """Pull runs for `dispatcher` from now on, holding at most `capacity` at once."""
        self._dispatcher = dispatcher
        self.capacity = capacity
        self.bus.listen(self.bus.names.cancel_subject, self._cancel_here)
        for target, name in ((self._feed_loop, "tsq-feed"), (self._heartbeat, "tsq-progress")):
            thread = threading.Thread(target=target, daemon=True, name=name)
            thread.start()
            self._threads.append(thread)

    def listen_for_ends(self, dispatcher: Dispatcher) -> None:
        """Wake this node's waiters for runs that ended on other nodes."""
        self.bus.listen(self.bus.names.ended_subject, dispatcher.ended_elsewhere)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._room.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    def _feed_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                room = self.capacity - len(self._held) + min(len(self._waiting), WAITING_MAX)
                if room <= 0:
                    self._room.wait(PULL_WAIT_S)
                    continue
            try:
                deliveries = self.bus.pull(min(room, PULL_BATCH), PULL_WAIT_S)
            except Exception as exc:  # NATS is away: it reconnects by itself
                log.warning("could not pull runs from NATS: %s", exc)
                self._stop.wait(PULL_WAIT_S)
                continue
            try:
                self._take_all(deliveries)
            except Exception:  # the run store failed: the messages come back later
                log.exception("could not take %d runs from the queue", len(deliveries))

    def _take_all(self, deliveries: list[Delivery]) -> None:
        found = self.runs.get_many([delivery.run_id for delivery in deliveries])
        for delivery in deliveries:
            self._take(delivery, found.get(delivery.run_id))

    def _take(self, delivery: Delivery, run: Run | None) -> None:
        assert self._dispatcher is not None
        if run is None:  # deleted by the history sweep since
            delivery.ack()
            return
        if run.status.finished or run.attempt != delivery.attempt:
            delivery.ack()
            return
        with self._lock:
            mine = run.id in self._held
            self._held[run.id] = delivery  # the newest delivery is the one to answer
        if mine:
            return
        if run.status == RunStatus.RUNNING:
            self._take_over(run, delivery)
        else:
            self._dispatcher.take(run)

    def _take_over(self, run: Run, delivery: Delivery) -> None:
        """A run whose node died while running it: its next attempt goes back to the queue,
        or, on the message's last delivery, it is recorded interrupted (its loop's retries
        may still run it again)."""
        assert self._dispatcher is not None
        why = (f"attempt {run.attempt} was interrupted: the worker node running it stopped "
               f"answering (delivery {delivery.delivered} of {self.bus.max_deliver})")
        if delivery.delivered >= self.bus.max_deliver:
            self._dispatcher.interrupted(run, why)  # settling it answers the message
            return
        taken = self.runs.take_over(run.id, run.attempt, why)
        if taken is not None:  # else another node took it first, or it ended meanwhile
            log.warning("run %s of %s/%s: %s; attempt %d is queued", run.id, run.project,
                        run.loop, why, taken.attempt, extra=run.identity())
            self.publish([taken])
        self.done([run.id], ended=False)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.bus.ack_wait_s / 3):
            with self._lock:
                held = list(self._held.values())
            try:
                self.bus.in_progress_all(held)
            except Exception:  # NATS is away; the messages come back if it stays away
                log.debug("could not extend the runs' messages", exc_info=True)

    def _cancel_here(self, run_ids: list[str]) -> None:
        assert self._dispatcher is not None
        for run_id in run_ids:
            self._dispatcher.cancel_here(run_id)
