"""What an ad-hoc query may cost: a deadline and a largest answer, in points.

The API runs each query under a budget (`budgeted`). The TSL evaluator calls `check` between
steps, so a query past its deadline, or whose client has gone, stops at the next step instead of
running on unseen (the WarpScript VM keeps the deadline itself and asks `stopped`); and it calls
`allow` before a step that makes points out of nothing (a sampleBy with a fill makes one per
bucket, however little data there is), so a year at one second is refused before half a
gigabyte is built. Outside `budgeted` these cost one context-variable read and never refuse:
loops' handlers run under their own limits (their `timeout`, the worker's memory).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from tsq.errors import QueryTimeout, QueryTooLarge

__all__ = ["NARROWING", "QueryBudget", "allow", "budgeted", "check", "stopped"]

NARROWING = ("narrow the query: a shorter range (from(), last()), a wider sampleBy span, "
             "fewer series (where(), a longer name), or a group() of them")


@dataclass
class QueryBudget:
    """A deadline on time.monotonic() and a largest answer; `stop` ends the query early (its
    client went away)."""

    timeout_s: float
    max_points: int
    deadline: float = 0.0
    stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.timeout_s

    @property
    def remaining_s(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def stop(self) -> None:
        self.stopped.set()

    def timed_out(self) -> QueryTimeout:
        return QueryTimeout(
            f"the query ran past query_timeout_s ({self.timeout_s:g} s) and was stopped; "
            f"{NARROWING}, or raise query_timeout_s (tsq.toml, --query-timeout-s, "
            f"TSQ_QUERY_TIMEOUT_S)",
            details={"limit": "query_timeout_s", "timeout_s": self.timeout_s})

    def too_large(self, points: int, what: str) -> QueryTooLarge:
        return QueryTooLarge(
            f"{what} would hold {points} points, more than max_query_points "
            f"({self.max_points}); {NARROWING}, or raise max_query_points (tsq.toml, "
            f"--max-query-points, TSQ_MAX_QUERY_POINTS)",
            details={"limit": "max_query_points", "max_points": self.max_points,
                     "points": points})

    def check(self) -> None:
        if self.stopped.is_set() or self.expired:
            raise self.timed_out()

    def allow(self, points: int, what: str) -> None:
        if points > self.max_points:
            raise self.too_large(points, what)


_BUDGET: ContextVar[QueryBudget | None] = ContextVar("tsq_query_budget", default=None)


@contextmanager
def budgeted(budget: QueryBudget) -> Iterator[QueryBudget]:
    """Run the block's query under `budget` (checked now: a query that waited past its
    deadline for a thread does not start)."""
    token = _BUDGET.set(budget)
    try:
        budget.check()
        yield budget
    finally:
        _BUDGET.reset(token)


def check() -> None:
    """QueryTimeout if the current query is past its deadline or was stopped."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.check()


def allow(points: int, what: str) -> None:
    """QueryTooLarge if `what` (e.g. "the sampleBy's grid") holding `points` points passes the
    current query's largest answer."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.allow(points, what)


def stopped() -> bool:
    """Whether the current query was stopped (its client went away): for code with a deadline
    of its own (the WarpScript VM), which only needs to hear of that."""
    budget = _BUDGET.get()
    return budget is not None and budget.stopped.is_set()
