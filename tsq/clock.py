"""The one clock of a service: every part that stamps or compares times takes it from the
Service (tests pass a clock they move), so a run's record and its timings never disagree."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "now_ms", "wall"]

Clock = Callable[[], float]  # epoch seconds
wall: Clock = time.time


def now_ms(clock: Clock) -> int:
    return int(clock() * 1000)
