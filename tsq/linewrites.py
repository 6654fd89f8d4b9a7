"""A server's line-protocol writes: one thread takes them, one at a time, and the writes that
arrived while it was busy all together.

Parsing and storing hold the GIL for most of a write, so writes on several threads at once took
turns on one core, handing the GIL to each other every half millisecond: four at once (and a
helper process parsing those that waited) spent 1.4-1.7 times the CPU a point of one at a time.
Taken together, the waiting writes are parsed one by one and stored as one write of the store
(`Service.write_lines_together`): what every store write pays whatever its size (its log record
and sync, its chunk of the head) was about half of a 5,000-point write, 1.4-1.7 ms alone, 0.7-0.8
ms each in fours. Four clients wrote 0.69-1.03 M points a second on four threads, 0.82-1.20 M one
write at a time, 1.05-1.35 M taking what waited together (probes of three rounds each).
"""

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


@dataclass(frozen=True)
class LineWrite:
    """One request's lines, and the future its answer goes to."""

    body: str
    precision: str
    project: str | None
    answer: Future[dict[str, Any]] = field(default_factory=Future, compare=False)


# what `write_together` gives for each write: its answer, or the error it raises
Outcome = dict[str, Any] | BaseException


class LineWrites:
    def __init__(self, write_together: Callable[[list[LineWrite]], list[Outcome]]) -> None:
        self._write_together = write_together
        self._waiting: queue.SimpleQueue[LineWrite | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._take, name="tsq-write", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, body: str, precision: str, project: str | None
               ) -> Future[dict[str, Any]]:
        """The answer of the write, once stored: `{"written": points}`, or its error."""
        if self._closed:
            raise RuntimeError("the service is closing: it takes no more writes")
        write = LineWrite(body, precision, project)
        self._waiting.put(write)
        return write.answer

    def close(self) -> None:
        """Store what waits, then stop."""
        self._closed = True
        self._waiting.put(None)
        self._thread.join(timeout=60)

    def _take(self) -> None:
        while (group := drain(self._waiting, TOGETHER_MAX)) is not None:
            # a write whose caller went away before it began is not stored
            group = [w for w in group if w.answer.set_running_or_notify_cancel()]
            if group:
                self._answer(group)

    def _answer(self, group: list[LineWrite]) -> None:
        try:
            outcomes = self._write_together(group)
        except BaseException as exc:
            outcomes = [exc] * len(group)
        for write, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                write.answer.set_exception(outcome)
            else:
                write.answer.set_result(outcome)
