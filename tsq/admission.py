"""Back-pressure: a bound on work waiting, and a 429 with Retry-After past it.

Without one, every request is accepted and waits: a thousand runs by hand queue behind each other
for minutes, and their clients time out and try again while the work goes on. An `Admission`
counts the pieces of one kind of work (runs by hand, writes) accepted and not finished; past
`room` it refuses at once with `TooManyRequests`, whose `retry_after_s` estimates when room frees
up from the pace at which the work has been finishing. The count is in memory, per process: the
API checks it before it takes a thread or writes a run, so a refusal costs nothing.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tsq.errors import TooManyRequests

__all__ = ["Admission", "Quotas", "Ticket"]

MAX_RETRY_AFTER_S = 300
SMOOTHING = 0.2  # weight of the latest duration in the running estimate


class Ticket:
    """One accepted piece of work; `release` once it finished (again: no effect)."""

    def __init__(self, admission: Admission, started: float) -> None:
        self._admission = admission
        self._started = started
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._admission._leave(self._started)


class Admission:
    """At most `waiting` pieces of work wait beyond the `running` that proceed at once.

    `what` names the work in the refusal ("runs by hand waiting"), `setting` the key that raises the
    bound; `pace_s`, the seconds between two pieces finishing until some have, starts the
    Retry-After estimate."""

    def __init__(self, *, waiting: int, running: int, what: str, setting: str,
                 pace_s: float = 1.0, details: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.details = details or {}  # more for the refusal's details (the project)
        self.waiting = waiting
        self.running = running
        self.what = what
        self.setting = setting
        self._clock = clock
        self._lock = threading.Lock()
        self._inside = 0
        self._pace_s = pace_s  # seconds between two pieces finishing: a guess until they do
        self._last_left: float | None = None

    @property
    def room(self) -> int:
        return self.waiting + self.running

    @property
    def inside(self) -> int:
        return self._inside

    def enter(self) -> Ticket:
        """A ticket for one more piece of work, or TooManyRequests if there is no room."""
        with self._lock:
            if self._inside >= self.room:
                raise self._refusal()
            self._inside += 1
        return Ticket(self, self._clock())

    @contextmanager
    def entered(self) -> Iterator[Ticket]:
        """A ticket for the block's work, released when the block ends."""
        ticket = self.enter()
        try:
            yield ticket
        finally:
            ticket.release()

    def _leave(self, started: float) -> None:
        now = self._clock()
        with self._lock:
            self._inside -= 1
            # Under load, the time since the previous piece finished is the pace at which room
            # frees up; after a quiet spell, the time since this one started bounds it.
            since = now - max(started, self._last_left if self._last_left is not None
                              else started)
            self._last_left = now
            self._pace_s += SMOOTHING * (max(since, 0.0) - self._pace_s)

    def _refusal(self) -> TooManyRequests:
        # this piece would start once those waiting ahead of it and itself found room
        ahead = self._inside - self.running + 1
        retry = min(max(math.ceil(self._pace_s * ahead), 1), MAX_RETRY_AFTER_S)
        return TooManyRequests(
            f"{self.waiting} {self.what} already, the limit ({self.setting}); "
            f"try again in {retry} s, or raise {self.setting} (tsq.toml, "
            f"--{self.setting.replace('_', '-')}, TSQ_{self.setting.upper()})",
            retry_after_s=retry,
            details={"limit": self.setting, "waiting": self.waiting, "running": self.running,
                     **self.details})


class Quotas:
    """An `Admission` per key (a project), made on first use, each with room for `limit` pieces
    in progress; `limit` 0 means none is bounded."""

    def __init__(self, limit: int, *, what: str, setting: str, pace_s: float = 1.0) -> None:
        self.limit = limit
        self.what = what  # with {key}: "runs by hand of project {key!r} in progress"
        self.setting = setting
        self.pace_s = pace_s
        self._lock = threading.Lock()
        self._by_key: dict[str, Admission] = {}

    def enter(self, key: str) -> Ticket | None:
        """A ticket for one more piece of `key`'s work (None when unbounded), or
        TooManyRequests naming `key` if it has no room."""
        if not self.limit:
            return None
        with self._lock:
            admission = self._by_key.get(key)
            if admission is None:
                admission = self._by_key[key] = Admission(
                    waiting=self.limit, running=0, what=self.what.format(key=key),
                    setting=self.setting, pace_s=self.pace_s, details={"project": key})
        return admission.enter()
