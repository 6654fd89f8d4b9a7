"""A line of a run's log: what its handler printed, or what tsq says of the run."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LogLine"]


@dataclass(frozen=True)
class LogLine:
    ts_ms: int
    level: str  # debug | info | warning | error
    message: str

