"""A server's line-protocol writes: one thread parses them and another stores them, one group at
a time, the writes that arrived while a group was parsed taken together as the next.

Parsing and storing hold the GIL for most of a write, so writes on several threads at once took
turns on one core, handing the GIL to each other every half millisecond: four at once (and a
helper process parsing those that waited) spent 1.4-1.7 times the CPU a point of one at a time.
Taken together, the waiting writes are parsed one by one and stored as one write of the store
(`Service.parse_lines_together`, then `store_lines_together`): what every store write pays
whatever its size (its log record and sync, its chunk of the head) was about half of a
5,000-point write, 1.4-1.7 ms alone, 0.7-0.8 ms each in fours. Four clients wrote 0.69-1.03 M
points a second on four threads, 0.82-1.20 M one write at a time, 1.05-1.35 M taking what waited
together (probes of three rounds each).

Parsing a group and storing the one before it overlap: the compiled scan lets go of the GIL
(two thirds of a parse's time) and the store waits for its log's sync, so the two threads keep
more of the second core busy. Four clients (six alternating rounds): the newest points
1.23-1.33 M points a second with one thread for both, 1.25-1.37 M with two; a past day's
1.17-1.24 M and 1.24-1.45 M (1.0 -> 1.1-1.2 cores). One client, which waits for each answer,
the same either way. With four clients the write thread is the busier (it stored 97 % of a
run's time, the parsing thread parsed 81 %), so the parsing thread also does what of a store
write needs no lock (`Service.parse_lines_together`: the series' lookups, docs/store.md).

A write alone, with none other in the threads' hands or on its way, is parsed on the caller's
thread instead, a server's event loop (`stored_here`, which `Service.stored_at_once` asks for
when no other write is admitted and the store is open), and stored there too when the store
would take it at once, asked just before: numbers only, no other writer holding the store, no
move of the head due, the buffer of the past not filling (`writes_quickly`); else the write
thread stores it, and the loop goes on meanwhile. The three hand-offs between threads (to the
parsing thread, to the write thread, the answer back to the event loop), each a wake-up and a
pass of the GIL, cost about a millisecond of a 5,000-line write's five in latency, and 0.5-0.6
ms of CPU. One client, 5,000-line writes, three alternating rounds: a past day 812-902 k ->
966-1,123 k points a second, the newest points 859-942 k -> 970-1,188 k; four clients, whose
writes nearly always find another on its way, the same within the rounds' noise. Such a write
holds the event loop for its time, its log's sync included: 3.5-4 ms for 5,000 lines (a body
over HERE_MAX_CHARS goes to the threads); a write that makes series also commits them to
DuckDB."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from tsq.draining import drain

__all__ = ["LineWrite", "LineWrites"]

TOGETHER_MAX = 8  # writes stored as one, at most: a group's answers wait for all of it
# The largest body stored on the caller's thread, which it holds that long (a server's event
# loop): 5,000 lines of the ingest benchmark (300 k characters) take about 3.5 ms
HERE_MAX_CHARS = 1 << 19


@dataclass(frozen=True)
class LineWrite:
    """One request's lines, and the future its answer goes to."""

    body: str
    precision: str
    project: str | None
    answer: Future[dict[str, Any]] = field(default_factory=Future, compare=False)


# what `store` gives for each write: its answer, or the error it raises
Outcome = dict[str, Any] | BaseException
# a group for the write thread: its writes, what `prepare` made of them, or why it could not
_Item = tuple[list[LineWrite], Any, BaseException | None]


def _as_is(writes: list[LineWrite]) -> Any:
    return writes


class LineWrites:
    """Writes parsed on one thread (`prepare`: a group of waiting writes into what `store`
    takes) and stored on another (`store`: each write's outcome), so that a group is parsed
    while the one before it is stored and its log synced. Without `prepare`, `store` is given
    the writes themselves."""

    def __init__(self, store: Callable[[Any], list[Outcome]],
                 prepare: Callable[[list[LineWrite]], Any] = _as_is) -> None:
        self._store = store
        self._prepare = prepare
        self._waiting: queue.SimpleQueue[LineWrite | None] = queue.SimpleQueue()
        # One group parsed ahead: the parsing thread hands it over and waits until the write
        # thread takes it, so that what comes meanwhile gathers into one group after it. A
        # write parsed here (`stored_here`) is handed over too: never waiting for a place.
        self._prepared: queue.Queue[_Item | None] = queue.Queue()
        self._threads = [threading.Thread(target=self._parse, name="tsq-parse", daemon=True),
                         threading.Thread(target=self._write, name="tsq-write", daemon=True)]
        self._closing = threading.Lock()  # no write put behind the None that stops the threads
        self._closed = False
        self._counting = threading.Condition()
        # writes submitted or taken here and not yet answered (a cancelled one: not even begun)
        self._in_hand = 0
        for thread in self._threads:
            thread.start()

    def submit(self, body: str, precision: str, project: str | None
               ) -> Future[dict[str, Any]]:
        """The answer of the write, once stored: `{"written": points}`, or its error."""
        write = LineWrite(body, precision, project)
        with self._closing:
            if self._closed:
                raise RuntimeError("the service is closing: it takes no more writes")
            self._count(1)
            write.answer.add_done_callback(lambda _: self._count(-1))  # answered or cancelled
            self._waiting.put(write)
        return write.answer

    def stored_here(self, body: str, precision: str, project: str | None,
                    quick: Callable[[Any], bool]) -> Future[dict[str, Any]] | None:
        """The write parsed on the caller's thread, and stored there too if `quick` says so of
        what `prepare` made of it, else by the write thread: its answer (done when stored here;
        stored here as well if the threads close meanwhile). None, and `submit` takes it, when
        another write is in hand, the body is over HERE_MAX_CHARS or the threads are closed."""
        if len(body) > HERE_MAX_CHARS:
            return None
        with self._counting:
            if self._in_hand or self._closed:
                return None
            self._in_hand += 1
        write = LineWrite(body, precision, project)
        write.answer.set_running_or_notify_cancel()
        write.answer.add_done_callback(lambda _: self._count(-1))
        item: _Item
        try:
            item = ([write], self._prepare([write]), None)
        except BaseException as exc:
            item = ([write], None, exc)
        try:
            here = item[2] is not None or quick(item[1])
        except Exception:  # the write thread stores it, and says why not if it cannot
            here = False
        if not here:
            with self._closing:
                if not self._closed:
                    self._prepared.put(item)
                    return write.answer
        self._answer(*item)
        return write.answer

    def _count(self, change: int) -> None:
        with self._counting:
            self._in_hand += change
            if not self._in_hand:
                self._counting.notify_all()

    def close(self) -> None:
        """Store what waits, then stop."""
        with self._closing:
            self._closed = True
            self._waiting.put(None)
        for thread in self._threads:
            thread.join(timeout=60)
        with self._counting:  # and a write being stored here
            self._counting.wait_for(lambda: not self._in_hand, timeout=60)

    def _parse(self) -> None:
        while (group := drain(self._waiting, TOGETHER_MAX)) is not None:
            # a write whose caller went away before it began is not stored
            group = [w for w in group if w.answer.set_running_or_notify_cancel()]
            if group:
                item: _Item
                try:
                    item = (group, self._prepare(group), None)
                except BaseException as exc:
                    item = (group, None, exc)
                self._prepared.put(item)
                self._prepared.join()  # taken by the write thread
        self._prepared.put(None)

    def _write(self) -> None:
        while (item := self._prepared.get()) is not None:
            self._prepared.task_done()
            self._answer(*item)

    def _answer(self, group: list[LineWrite], prepared: Any, failed: BaseException | None
                ) -> None:
        """Store a prepared group (or not: `failed` says why it could not be parsed) and set
        each write's answer."""
        try:
            if failed is not None:
                raise failed
            outcomes = self._store(prepared)
            if len(outcomes) != len(group):
                raise RuntimeError(f"the store answered {len(outcomes)} of {len(group)} writes")
        except BaseException as exc:
            outcomes = [exc] * len(group)
        for write, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                write.answer.set_exception(outcome)
            else:
                write.answer.set_result(outcome)
