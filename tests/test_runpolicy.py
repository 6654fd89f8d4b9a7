"""The pure rules of a run's fate: epsilon expiry and retries."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsq.loopfile import load_loop_file
from tsq.model import LoopSpec
from tsq.outcomes import RunStatus
from tsq.run import Run
from tsq.runpolicy import RETRY_CAP_S, expired, retried, retry_delay_s


def spec(extra: str = "") -> LoopSpec:
    text = ("functions:\n  roll:\n    handler: h.js\n" + extra +
            "    events:\n      - tick: {rate: R/2026-01-01T00:00:00Z/PT1M/ET30S}\n")
    [loop] = load_loop_file(text, "loops.yml", {"h.js": "x"}.get, lambda *_: None)
    return loop.spec


def run(**fields: Any) -> Run:
    return Run(**{"id": "r1", "project": "p", "loop": "roll", "event": "tick",
                  "version_id": "v1", "status": RunStatus.QUEUED, "params": {},
                  "queued_ms": 60_000, "pipeline_id": "r1", "pipeline_ms": 60_000,
                  "trigger": "schedule", "attempt": 1, "scheduled_ms": 60_000,
                  "epsilon_ms": 30_000, **fields})


@settings(max_examples=80, deadline=None)
@given(backoff=st.floats(0.001, 600), attempt=st.integers(1, 40), jitter=st.floats(0, 0.999))
def test_retry_delay_is_capped_exponential_with_half_jitter(
        backoff: float, attempt: int, jitter: float) -> None:
    delay = retry_delay_s(backoff, attempt, jitter)
    full = min(RETRY_CAP_S, backoff * 2.0 ** (attempt - 1))
    assert full / 2 <= delay < full or delay == pytest.approx(full / 2)
    assert delay <= RETRY_CAP_S
    if attempt > 1 and full < RETRY_CAP_S:
        assert retry_delay_s(backoff, attempt, 0.0) >= retry_delay_s(backoff, attempt - 1, 0.0)


@settings(max_examples=80, deadline=None)
@given(late_ms=st.integers(-10_000, 120_000))
def test_a_scheduled_first_attempt_expires_past_its_epsilon(late_ms: int) -> None:
    now = 60_000 + late_ms
    assert expired(run(), spec(), now) is (late_ms > 30_000)
    assert not expired(run(), spec("    catchup: all\n"), now)  # every missed time runs
    assert not expired(run(attempt=2), spec(), now)  # a retry is late by design
    assert not expired(run(trigger="manual"), spec(), now)


@pytest.mark.parametrize(("status", "trigger", "attempt", "again"), [
    ("failed", "schedule", 1, True), ("timeout", "backfill", 2, True),
    ("failed", "schedule", 3, False),  # max: 2 retries, so 3 attempts in all
    ("expired", "schedule", 1, False), ("success", "schedule", 1, False),
    ("failed", "manual", 1, False),  # its caller wants the first answer
    ("failed", "call", 1, True)])
def test_who_is_retried(status: str, trigger: str, attempt: int, again: bool) -> None:
    retrying = spec("    retries: {max: 2, backoff: 1s}\n")
    assert retried(run(trigger=trigger, attempt=attempt), status, retrying) is again
