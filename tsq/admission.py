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

__all__ = ["Admission", "Quotas", "Rates", "Ticket"]

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


class Rates:
    """A rate per key (a project): at most `per_s` pieces of work a second on average, in bursts
    of up to `burst_s` seconds' worth (a token bucket per key, made on first use). Past it,
    TooManyRequests with the seconds until the piece would fit; `per_s` 0 means unbounded.
    The buckets are in memory, per process, as the other bounds."""

    def __init__(self, per_s: float, *, burst_s: float, what: str, setting: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_s = per_s
        self.capacity = per_s * burst_s
        self.what = what  # with {key} and {limit}: "runs by hand of project 'x' a minute"
        self.setting = setting
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, when)

    def take(self, key: str, amount: float = 1.0) -> None:
        """Count `amount` pieces of `key`'s work, or refuse them all (TooManyRequests)."""
        if not self.per_s:
            return
        now = self._clock()
        with self._lock:
            tokens = self._refilled(key, now)
            if amount > tokens:
                self._buckets[key] = (tokens, now)
                raise self._refusal(key, amount, tokens)
            self._buckets[key] = (tokens - amount, now)

    @contextmanager
    def spending(self, key: str) -> Iterator[None]:
        """Count the block's seconds as `key`'s work, once it ends: the cost of a query is known
        only then. The block is refused (TooManyRequests) while earlier blocks have spent all
        of the key's seconds and the time since has not earned one back; a long block can
        overdraw the bucket, which then takes that long to refill."""
        if not self.per_s:
            yield
            return
        now = self._clock()
        with self._lock:
            tokens = self._refilled(key, now)
            self._buckets[key] = (tokens, now)
            if tokens <= 0:
                raise self._refusal(key, 1.0, tokens)
        try:
            yield
        finally:
            end = self._clock()
            with self._lock:
                self._buckets[key] = (self._refilled(key, end) - (end - now), end)

    def _refilled(self, key: str, now: float) -> float:
        """`key`'s tokens at `now`: what its bucket held, plus what the time since earned, up
        to the capacity (a full bucket for a key not seen yet). Under the lock."""
        tokens, then = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - then) * self.per_s)

    def _refusal(self, key: str, amount: float, tokens: float) -> TooManyRequests:
        if amount > self.capacity:
            wait = MAX_RETRY_AFTER_S  # never fits: the client must send less at once
        else:
            wait = min(max(math.ceil((amount - tokens) / self.per_s), 1), MAX_RETRY_AFTER_S)
        return TooManyRequests(
            f"{self.what.format(key=key)} is past its limit ({self.setting}); try again in "
            f"{wait} s, or raise {self.setting} (tsq.toml, --{self.setting.replace('_', '-')}, "
            f"TSQ_{self.setting.upper()})",
            retry_after_s=wait, details={"limit": self.setting, "project": key,
                                         "asked": amount, "left": math.floor(tokens)})
