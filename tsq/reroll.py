"""Re-rolls: the windows a rollup covered that got late points run again, under their run keys.

A thread takes the ranges `tsq.late` recorded and, for each successful run of the rollup whose
window overlaps one, puts the run back in the queue as its next attempt: the run keeps its key,
its log keeps both attempts, and the rollup replaces its window's output, so the new value is
the exact one. A window that ended before the rollup's horizon (`late: {within: …}`) is not run
again; its run's log says so. A window whose run is queued reads the late points anyway; one
whose run is running is looked at again once it has ended.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import orjson

from tsq.clock import Clock, now_ms
from tsq.dispatcher import Dispatcher
from tsq.late import LateLog
from tsq.outcomes import RunStatus
from tsq.run import Run
from tsq.runlog import LogLine
from tsq.runstore import RunStore

__all__ = ["Rerolls"]

log = logging.getLogger(__name__)

BUSY_RETRY_S = 0.5  # how soon a range whose window was running is looked at again
RESULT_SHOWN = 2000  # characters of a replaced result kept in the log


class Rerolls:
    def __init__(self, late: LateLog, runs: RunStore, dispatcher: Dispatcher,
                 clock: Clock) -> None:
        self.late = late
        self.runs = runs
        self.dispatcher = dispatcher
        self.clock = clock
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tsq-reroll", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self.late.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._closed.is_set():
            self.late.wake.wait(BUSY_RETRY_S)
            if self._closed.is_set():
                return
            for (project, loop), ranges in self.late.take().items():
                try:
                    busy = self.reroll(project, loop, ranges)
                except Exception:  # a failed look must not stop the thread for later writes
                    log.exception("re-rolling %s/%s failed", project, loop)
                    continue
                if busy:
                    self.late.put_back((project, loop), busy)

    def reroll(self, project: str, loop: str, ranges: list[tuple[int, int]]
               ) -> list[tuple[int, int]]:
        """Run again the windows of `loop` that `ranges` overlap; the ranges to look at again
        (their window's run is running)."""
        watch = self.late.watched(project, loop)
        if watch is None:
            return []  # no longer watched (deleted, or `late:` removed)
        horizon = now_ms(self.clock) - watch.within_ms
        busy: list[tuple[int, int]] = []
        start, end = min(a for a, _ in ranges), max(b for _, b in ranges)
        for run in self.runs.keyed_overlapping(project, loop, start, end):
            hit = [(a, b) for a, b in ranges if _overlaps(run, a, b)]
            if not hit:
                continue
            if run.status is RunStatus.RUNNING:
                busy.extend(hit)
            elif run.status is RunStatus.SUCCESS:
                self._again(run, hit, horizon, watch.within_ms)
        return busy

    def _again(self, run: Run, hit: list[tuple[int, int]], horizon: int, within_ms: int) -> None:
        where = ", ".join(f"[{_iso(a)}, {_iso(b)})" for a, b in hit)
        if (run.window_end_ms or 0) <= horizon:
            message = (f"late points in {where} not re-rolled: the window ended at "
                       f"{_iso(run.window_end_ms or 0)}, before the horizon {_iso(horizon)} "
                       f"(late.within {_duration(within_ms)})")
            log.warning("%s/%s run %s: %s", run.project, run.loop, run.id, message,
                        extra={"project": run.project, "loop": run.loop, "run": run.id})
            self.runs.append_logs(run.id, [LogLine(now_ms(self.clock), "warning", message)])
            return
        # The run record keeps the newest result: the one it replaces stays in its log.
        before = orjson.dumps(run.result).decode()
        self.dispatcher.offer(self.runs.requeue(
            run.id, attempt=run.attempt + 1, not_before_ms=None,
            message=f"re-rolled: late points in {where}; attempt {run.attempt} had result "
                    f"{before[:RESULT_SHOWN]}"))


def _overlaps(run: Run, start_ms: int, end_ms: int) -> bool:
    return (run.window_start_ms or 0) < end_ms and start_ms < (run.window_end_ms or 0)


def _iso(ms: int) -> str:
    spec = "milliseconds" if ms % 1000 else "seconds"  # a range ends 1 ms after its last point
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec=spec).replace(
        "+00:00", "Z")


def _duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
