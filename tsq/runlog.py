"""A line of a run's log: what its handler printed, or what tsq says of the run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["LOG_FLUSH_S", "LogBuffer", "LogLine", "LogStore"]


@dataclass(frozen=True)
class LogLine:
    ts_ms: int
    level: str  # debug | info | warning | error
    message: str

LOG_FLUSH_S = 1.0  # a long run's log lines reach the store at least this often


class LogStore(Protocol):
    def append_logs(self, run_id: str, lines: list[LogLine]) -> None: ...


class LogBuffer:
    """Log lines of a running run, written with its outcome (one transaction) or every second.
    `scrub` is applied to each line as it comes (tsq.redaction takes the loop's secrets out)."""

    def __init__(self, runs: LogStore, run_id: str,
                 scrub: Callable[[list[LogLine]], list[LogLine]] | None = None) -> None:
        self.runs = runs
        self.run_id = run_id
        self.scrub = scrub
        self.lines: list[LogLine] = []
        self.flushed = time.monotonic()
        self.lock = threading.Lock()

    def add(self, lines: list[LogLine]) -> None:
        if self.scrub is not None:
            lines = self.scrub(lines)
        with self.lock:
            self.lines.extend(lines)
            if time.monotonic() - self.flushed < LOG_FLUSH_S:
                return
            pending, self.lines, self.flushed = self.lines, [], time.monotonic()
        self.runs.append_logs(self.run_id, pending)

    def take(self) -> list[LogLine]:
        with self.lock:
            pending, self.lines = self.lines, []
        return pending
