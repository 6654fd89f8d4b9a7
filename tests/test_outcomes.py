"""Run statuses and the failures tsq reports: one enum each, and the JSON stays as it was."""

from __future__ import annotations

import pytest

from tsq.outcomes import UNFINISHED, FailureKind, RunError, RunResult, RunStatus


def test_statuses_on_the_wire() -> None:
    assert [str(s) for s in RunStatus] == ["queued", "running", "success", "failed", "timeout",
                                           "expired", "cancelled"]
    assert {"queued", "running"} == UNFINISHED  # a StrEnum compares with the JSON text
    assert [str(s) for s in RunStatus.final()] == ["success", "failed", "timeout", "expired",
                                                   "cancelled"]


def test_who_hears_of_a_run_and_what_a_synchronous_request_answers() -> None:
    assert {s for s in RunStatus if s.notified} == {"failed", "timeout", "expired"}
    assert {s: s.http_status for s in RunStatus.final()} == {
        "success": 200, "failed": 500, "timeout": 504, "expired": 500, "cancelled": 409}


@pytest.mark.parametrize(("kind", "status"), [
    (FailureKind.TIMEOUT, "timeout"), (FailureKind.EXPIRED, "expired"),
    (FailureKind.INTERRUPTED, "failed"), (FailureKind.MEMORY_LIMIT, "failed"),
    (FailureKind.CANCELLED, "cancelled")])
def test_each_failure_kind_ends_its_run_one_way(kind: FailureKind, status: str) -> None:
    result = RunResult.failure(kind, "why")
    assert (result.status, result.error) == (status, RunError(kind.value, "why"))
