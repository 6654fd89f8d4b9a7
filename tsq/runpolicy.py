"""The rules that decide a run's fate, as pure functions of the run, its loop and the time, so
they are tested without threads or clocks: whether it may still start (epsilon) and whether and
when it is tried again (retries).
"""

from __future__ import annotations

from tsq.model import LoopSpec
from tsq.outcomes import RunStatus
from tsq.run import Run

__all__ = ["LIMITED_TRIGGERS", "RETRY_CAP_S", "expired", "retried", "retry_delay_s"]

LIMITED_TRIGGERS = frozenset({"schedule", "after", "backfill"})  # share the loop's lane
# A caller waiting on a manual run wants its first answer; a Loop.run step is retried in its
# caller's stead.
RETRIED_TRIGGERS = LIMITED_TRIGGERS | {"call"}
RETRIED_STATUSES = frozenset({RunStatus.FAILED, RunStatus.TIMEOUT})
RETRY_CAP_S = 3600.0


def expired(run: Run, spec: LoopSpec, now_ms: int) -> bool:
    """A scheduled time that can no longer start within its epsilon (first attempts only, and
    never with `catchup: all`, which runs every missed time however late)."""
    return (run.trigger == "schedule" and run.attempt == 1
            and spec.catchup != "all" and run.epsilon_ms is not None
            and now_ms - run.when_ms > run.epsilon_ms)


def retried(run: Run, status: str, spec: LoopSpec) -> bool:
    """Whether a run that ended with `status` gets another attempt under its loop's `retries:`."""
    return (status in RETRIED_STATUSES and run.trigger in RETRIED_TRIGGERS
            and run.attempt <= spec.retries.max)


def retry_delay_s(backoff_s: float, attempt: int, jitter: float) -> float:
    """The wait before attempt `attempt + 1`: backoff·2^(attempt-1), capped, times [0.5, 1).

    `jitter` is uniform in [0, 1); half the delay is fixed and half random ("equal jitter"), so
    retries of many runs that failed together spread out but none comes back too early.
    """
    delay = min(RETRY_CAP_S, backoff_s * 2.0 ** max(0, attempt - 1))
    return delay * (0.5 + jitter / 2)
