"""One clock: under a test clock every stamp of a run, its id and its loop's version agree with
it (they used to mix the test's time with the wall clock)."""

from __future__ import annotations

from pathlib import Path

from tests.scheduling_helpers import deploy, loop_yaml, ms
from tsq.service import Service

NOW = "2026-01-01T00:00:30Z"  # where the `clock` fixture (tests/scheduling/conftest.py) stands


def test_a_run_and_its_loop_are_stamped_by_the_service_clock(service: Service,
                                                              tmp_path: Path) -> None:
    deploy(service, tmp_path, loop_yaml())
    record = service.run("roll")
    assert record.status == "success"
    stamps = [record.queued_ms, record.started_ms, record.finished_ms]
    assert stamps == [ms(NOW)] * 3  # the test clock stands still
    assert int(record.id[:12], 16) == ms(NOW)
    assert service.get_loop("roll", None)["version"]["created"] == ms(NOW)
