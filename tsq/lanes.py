"""Each loop's lane: its scheduled, `after:` and backfilled runs share the loop's
`max_concurrency`, oldest first, so a catch-up never becomes a storm. Runs started by hand or by
`Loop.run` have no lane: their caller waits for them."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tsq.run import Run
from tsq.runpolicy import LIMITED_TRIGGERS

__all__ = ["Lanes"]


@dataclass
class _Lane:
    running: int = 0
    waiting: deque[Run] = field(default_factory=deque)


class Lanes:
    def __init__(self, limit_of: Callable[[Run], int]) -> None:
        self.limit_of = limit_of  # a run's loop's max_concurrency
        self._lock = threading.Lock()
        self._lanes: dict[tuple[str, str], _Lane] = {}

    def admit(self, run: Run) -> bool:
        """Whether `run` may start now; if not, it waits in its lane until `release` hands it
        on."""
        if run.trigger not in LIMITED_TRIGGERS:
            return True
        limit = self.limit_of(run)
        with self._lock:
            lane = self._lanes.setdefault((run.project, run.loop), _Lane())
            if lane.running >= limit:
                lane.waiting.append(run)
                return False
            lane.running += 1
            return True

    def release(self, run: Run) -> Run | None:
        """`run` ended (or never started): free its slot, or hand the slot to the run of its
        lane that waited longest, which may start now."""
        if run.trigger not in LIMITED_TRIGGERS:
            return None
        with self._lock:
            lane = self._lanes.get((run.project, run.loop))
            if lane is None:
                return None
            if not lane.waiting:
                lane.running -= 1
                return None
            return lane.waiting.popleft()
