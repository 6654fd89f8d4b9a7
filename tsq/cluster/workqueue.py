"""A cluster's runs on their way to the worker processes, through JetStream's `TSQ_RUNS` stream.

Whoever offers a run (the leading scheduler, an api process, a worker process settling a run that
has followers or a retry) publishes it; every worker process's feeder pulls from the one durable
consumer, as many runs as it has room for, and hands each to its own dispatcher, which claims it
in the run store (queued → running: exactly one process gets it), runs it and settles it. Only
then is the message acknowledged, so a worker process that dies mid-run has its messages delivered
again after `ack_wait`; while a run waits or runs, its process tells the server so every third of
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
import time
from typing import TYPE_CHECKING, Any

import orjson

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
GATHER_S = 0.025  # a feeder whose process is busy lets runs gather this long between pulls
WAITING_MAX = 1000
RESEND_S = 0.5  # how often runs that could not be published are tried again
PUBLISH_BATCH = 1000
REPUBLISH_S = 30.0  # how often the leader publishes long-queued runs again
STALE_MS = 10_000  # a run queued this long may have lost its message
AGAIN_S = 1.0  # a run the run store failed comes back after this


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
        self._unsent: list[tuple[str, str, int, bytes]] = []  # runs to publish, in order
        self._to_send = threading.Condition(self._lock)
        self._republisher: threading.Event | None = None
        self._threads.append(threading.Thread(target=self._publish_loop, daemon=True,
                                              name="tsq-publish"))
        self._threads[0].start()

    # -- RunQueue ----------------------------------------------------------------------------

    def publish(self, runs: list[Run]) -> None:
        """Hand the runs to the publishing thread, which sends what waits in batches. Their
        records are queued in the run store already, so a caller (an API request, the
        scheduler, a settle) never waits for NATS; while NATS is away they wait here, and a
        run this process could not publish before it died is published again by the leader
        (`republish`)."""
        messages = [(run.id, f"{run.project}/{run.key or run.id}", run.attempt, _carried(run))
                    for run in runs]
        with self._lock:
            self._unsent.extend(messages)
            self._to_send.notify()

    def _publish_loop(self) -> None:
        away = False
        while not self._stop.is_set():
            with self._lock:
                if not self._unsent or away:
                    self._to_send.wait(RESEND_S)
                unsent = self._unsent[:PUBLISH_BATCH]
            if not unsent:
                away = False
                continue
            try:
                self.bus.publish_runs(unsent)
            except Exception as exc:
                if not away:
                    log.warning("could not publish %d runs (%s); they go out once NATS answers",
                                len(unsent), exc or type(exc).__name__)
                away = True
                continue
            with self._lock:
                del self._unsent[:len(unsent)]
            if away:
                log.info("NATS answers again: published the runs that waited for it")
            away = False

    def republishing(self, on: bool) -> None:
        """While this process leads, publish the queued runs again at once and then every
        REPUBLISH_S, in case a first publish was lost with its process: within the duplicate
        window the server drops the messages it has, and after it a second message for a run
        loses the claim (or is acknowledged as a duplicate)."""
        if self._republisher is not None:
            self._republisher.set()
            self._republisher = None
        if on:
            stop = self._republisher = threading.Event()
            threading.Thread(target=self._republish_loop, args=(stop,), daemon=True,
                             name="tsq-republish").start()

    def _republish_loop(self, stop: threading.Event) -> None:
        while not stop.is_set() and not self._stop.is_set():
            try:
                stale = self.runs.queued_before(int(time.time() * 1000) - STALE_MS)
                self.publish(stale)
            except Exception:  # the run store is away: the next pass tries again
                log.exception("could not publish the queued runs again")
            stop.wait(REPUBLISH_S)

    def done(self, run_ids: list[str], *, ended: list[Run] | None = None) -> None:
        with self._lock:
            answered = [d for run_id in run_ids if (d := self._held.pop(run_id, None))]
            self._waiting.difference_update(run_ids)
            self._room.notify()
        self.bus.ack_all(answered)
        if ended:  # each process's waiters wake with the record, without reading it again
            self.bus.tell(self.bus.names.ended_subject,
                          [orjson.Fragment(data) if (data := _carried(run)) else run.id
                           for run in ended])

    def again(self, run_ids: list[str]) -> None:
        with self._lock:
            dropped = [d for run_id in run_ids if (d := self._held.pop(run_id, None))]
            self._waiting.difference_update(run_ids)
            self._room.notify()
        self.bus.nak_all(dropped, AGAIN_S)

    def waiting(self, run_ids: list[str], claimed: set[str]) -> None:
        with self._lock:
            self._waiting.difference_update(claimed)
            self._waiting.update(run_ids)
            self._room.notify()

    def cancel(self, run_id: str) -> None:
        """Ask every worker process to stop `run_id` (the one running it does)."""
        self.bus.tell(self.bus.names.cancel_subject, [run_id])

    # -- feeding a worker process -------------------------------------------------------------

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
        """Wake this process's waiters for runs that ended on other processes."""
        # Every process hears every run's end; most worker processes wait for none of them.
        self.bus.listen(self.bus.names.ended_subject, dispatcher.ended_elsewhere,
                        wanted=dispatcher.hears_ends)

    def close(self) -> None:
        self.republishing(False)
        self._flush()
        self._stop.set()
        with self._lock:
            self._room.notify_all()
            self._to_send.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    def _flush(self, timeout_s: float = 5.0) -> None:
        """Wait a moment for what waits to be published (a process stopping on purpose)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._unsent:
                    return
            time.sleep(0.01)

    def _feed_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                room = self.capacity - len(self._held) + min(len(self._waiting), WAITING_MAX)
                if room <= 0:
                    self._room.wait(PULL_WAIT_S)
                    continue
            asked = min(room, PULL_BATCH)
            try:
                deliveries = self.bus.pull(asked, PULL_WAIT_S)
            except Exception as exc:  # NATS is away: it reconnects by itself
                log.warning("could not pull runs from NATS: %s", exc)
                self._stop.wait(PULL_WAIT_S)
                continue
            try:
                self._take_all(deliveries)
            except Exception:  # the run store failed: the messages come back later
                log.exception("could not take %d runs from the queue", len(deliveries))
            if 0 < len(deliveries) < asked and self._busy():
                # Runs taken one pull at a time are claimed, settled and acknowledged one
                # transaction and one hop at a time; while this process has runs to get on
                # with, letting the next ones gather makes those batches (a busy worker
                # process's claims 1.7 runs a pull -> 3, its PostgreSQL commits a run 1.7 ->
                # 1.3, at 10 ms). 25 ms made the benchmark's cluster 0.66-0.71 -> 0.75 of one
                # process (each worker process's CPU a run 1.19-1.32 -> 0.95-0.98 ms, the
                # database's 1.3-1.4 -> 1.0-1.1); 50 and 100 ms gained nothing more. A pull
                # that found nothing waits for the next run as before, and one that got all it
                # asked for pulls again at once: more are waiting.
                self._stop.wait(GATHER_S)

    def _busy(self) -> bool:
        with self._lock:
            return len(self._held) > len(self._waiting)

    def _take_all(self, deliveries: list[Delivery]) -> None:
        # A first delivery carries its run as it was published, and the claim decides; a run
        # delivered again is read, since it may be running on a process that died.
        found = self.runs.get_many([d.run_id for d in deliveries
                                    if d.delivered > 1 or d.record is None])
        for delivery in deliveries:
            if delivery.delivered == 1 and delivery.record is not None:
                self._take(delivery, Run.from_json(delivery.record))
            else:
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
        """A run whose process died while running it: its next attempt goes back to the queue,
        or, on the message's last delivery, it is recorded interrupted (its loop's retries
        may still run it again)."""
        assert self._dispatcher is not None
        why = (f"attempt {run.attempt} was interrupted: the worker process running it stopped "
               f"answering (delivery {delivery.delivered} of {self.bus.max_deliver})")
        if delivery.delivered >= self.bus.max_deliver:
            self._dispatcher.interrupted(run, why)  # settling it answers the message
            return
        taken = self.runs.take_over(run.id, run.attempt, why)
        if taken is not None:  # else another process took it first, or it ended meanwhile
            log.warning("run %s of %s/%s: %s; attempt %d is queued", run.id, run.project,
                        run.loop, why, taken.attempt, extra=run.identity())
            self.publish([taken])
        self.done([run.id])

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.bus.ack_wait_s / 3):
            with self._lock:
                held = list(self._held.values())
            try:
                self.bus.in_progress_all(held)
            except Exception:  # NATS is away; the messages come back if it stays away
                log.debug("could not extend the runs' messages", exc_info=True)

    def _cancel_here(self, run_ids: list[Any]) -> None:
        assert self._dispatcher is not None
        for run_id in run_ids:
            self._dispatcher.cancel_here(run_id)


CARRIED_MAX = 64 * 1024  # a run larger than this travels as its id (NATS takes 1 MB at most)


def _carried(run: Run) -> bytes:
    """The run's JSON to travel in a message, or b"" when it is too large to."""
    data = orjson.dumps(run.to_json())
    return data if len(data) <= CARRIED_MAX else b""
