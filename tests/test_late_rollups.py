"""Late points re-roll their windows: a rollup with `late: {within: 7d}` runs again, under the same
run key, the windows it had covered that get points afterwards, and its output becomes the exact
new mean; a window older than the horizon is not run again, and its run's log says why."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from tsq.config import Settings
from tsq.run import Run
from tsq.runstore import RunFilter
from tsq.selector import parse_selector
from tsq.service import Service

pytestmark = pytest.mark.slow

H = 3_600_000  # ms
OLD = 1_767_225_600_000  # 2026-01-01T00:00:00Z: an hour far past the horizon
LOOPS = """
functions:
  late-1m:
    rollup: {from: lr_cpu, to: lr_cpu_1m, span: 1m, aggregate: mean, late: {within: 7d}}
    events: [{hourly: {rate: R/2026-01-01T00:00:00Z/PT1H/ET10M}}]
"""


@pytest.fixture
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(Settings.load(tmp_path_factory.mktemp("late")))
    service.start()
    yield service
    service.close()


def hour_lines(start_ms: int) -> str:
    """An hour of points of one host, every 10 s, values 0, 1, 2, …"""
    return "\n".join(f"lr_cpu,host=a value={i} {(start_ms + i * 10_000) * 1_000_000}"
                     for i in range(360))


def backfill(service: Service, window_start_ms: int) -> None:
    """Run the scheduled time whose window starts at `window_start_ms`."""
    at = datetime.fromtimestamp((window_start_ms + H) / 1000, UTC)
    job = service.backfill("late-1m", at, datetime.fromtimestamp(at.timestamp() + 60, UTC))
    until(lambda: service.backfill_status(job["id"])["status"] == "done")
    assert service.backfill_status(job["id"])["success"] == 1


def minute(service: Service, start_ms: int) -> float:
    [found] = service.store.select(parse_selector("lr_cpu_1m"), start_ms * 1_000_000,
                                   (start_ms + 60_000) * 1_000_000)
    return float(found.values[0])


def run_of(service: Service, window_start_ms: int) -> Run:
    return next(r for r in service.runs.find(RunFilter(loop="late-1m", limit=1000))
                if r.window_start_ms == window_start_ms)


def until(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_late_points_re_roll_their_window_within_the_horizon_only(svc: Service) -> None:
    recent = (int(time.time() * 1000) // H - 2) * H  # the hour before the last complete one
    svc.write_lines(hour_lines(recent) + "\n" + hour_lines(OLD))
    svc.deploy(LOOPS, "loops.yml", lambda name: None)
    backfill(svc, recent)
    backfill(svc, OLD)
    assert minute(svc, recent) == minute(svc, OLD) == np.mean(range(6))  # 0 … 5

    # Two late points in the first minute of the recent hour, between the ones it had.
    svc.write_lines(f"lr_cpu,host=a value=100 {(recent + 5_000) * 1_000_000}\n"
                    f"lr_cpu,host=a value=200 {(recent + 15_000) * 1_000_000}")
    until(lambda: run_of(svc, recent).attempt == 2 and run_of(svc, recent).status == "success")
    assert minute(svc, recent) == np.mean([*range(6), 100, 200])
    rerolled = run_of(svc, recent)
    assert rerolled.key == f"late-1m:hourly:{recent + H}"
    messages = [line["message"] for line in svc.runs.logs(rerolled.id)]
    assert any(m.startswith("re-rolled: late points in [") and "attempt 1 had result" in m
               for m in messages), messages

    # The same into the old hour: past the horizon, nothing runs, and the run's log says why.
    svc.write_lines(f"lr_cpu,host=a value=100 {(OLD + 5_000) * 1_000_000}")
    old = run_of(svc, OLD)
    until(lambda: any("not re-rolled" in line["message"] for line in svc.runs.logs(old.id)))
    [why] = [line["message"] for line in svc.runs.logs(old.id) if "not re-rolled" in line["message"]]
    assert why == ("late points in [2026-01-01T00:00:05Z, 2026-01-01T00:00:05.001Z) not re-rolled: "
                   "the window ended at 2026-01-01T01:00:00Z, before the horizon "
                   f"{why.split('before the horizon ')[1].split(' ')[0]} (late.within 7d)")
    time.sleep(1)
    assert run_of(svc, OLD).attempt == 1
    assert minute(svc, OLD) == np.mean(range(6))


OFFSET_LOOPS = """
functions:
  offset-1s:
    rollup: {from: off_cpu, to: off_cpu_1s, span: 1s, aggregate: mean, offset: 3s}
    events: [{every-2s: {rate: R/2026-01-01T00:00:00Z/PT2S/ET1S}}]
"""


def test_offset_runs_each_window_that_long_after_its_end(svc: Service) -> None:
    svc.deploy(OFFSET_LOOPS, "loops.yml", lambda name: None)
    # A window that ends at least 2 s from now: its point comes 1 s after its end, late but
    # within the offset, as a collector's delayed batch would.
    end_ms = (int(time.time() * 1000) // 2000 + 2) * 2000
    time.sleep(max(0.0, (end_ms + 1000) / 1000 - time.time()))
    svc.write_lines(f"off_cpu,host=a value=42 {(end_ms - 1000) * 1_000_000}")

    def window_run() -> Run | None:
        return next((r for r in svc.runs.find(RunFilter(loop="offset-1s", limit=1000))
                     if r.window_end_ms == end_ms), None)

    until(lambda: (run := window_run()) is not None and run.status == "success", 30)
    run = window_run()
    assert run is not None and run.scheduled_ms == end_ms and run.attempt == 1
    assert run.started_ms is not None and run.started_ms >= end_ms + 3000
    [rolled] = svc.store.select(parse_selector("off_cpu_1s"), (end_ms - 1000) * 1_000_000,
                                end_ms * 1_000_000)
    assert rolled.values.tolist() == [42.0]
