"""PostgreSQL's statistics of the runs table, renewed after a burst of new runs.

PostgreSQL plans by statistics that autovacuum renews only a while after a table changed by a
tenth. Until then a burst of runs (a backfill, a catch-up) is invisible to the planner: it
took a loop's 6,000 new runs for one, and a backfill's progress (`RunStore.keyed_statuses`)
read the loop's whole history, 2.6 -> 8.7 ms a poll as they ran, where its event's index
reads the range asked for. The statements of the hot path do not depend on them (their ids go
as arrays, searched by the primary key: docs/design-notes.md).

A process that has created ANALYZE_AFTER runs since it last renewed them has PostgreSQL
`ANALYZE` the table, at most every ANALYZE_EVERY_S: a scheduler creating runs all the time
samples the table once a minute, not at every batch. `ANALYZE` waits for no one: while
autovacuum or another process holds the table's statistics, that one renews them.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["ANALYZE_AFTER", "ANALYZE_EVERY_S", "RunStatistics"]

log = logging.getLogger(__name__)

ANALYZE_AFTER = 1000  # runs created since the last renewal that call for the next
ANALYZE_EVERY_S = 60.0  # a process renews them at most this often
LOCK_WAIT_MS = 100  # how long ANALYZE waits for the statistics' lock before leaving it be


class RunStatistics:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.on = engine.dialect.name == "postgresql"  # SQLite's planner needs none of this
        self._created = 0
        self._renewed = -math.inf  # time.monotonic() of the last renewal
        self._lock = threading.Lock()

    def created(self, count: int) -> None:
        """`count` runs were just created (committed): renew the statistics if they are due."""
        if not self.on or count <= 0:
            return
        with self._lock:
            self._created += count
            now = time.monotonic()
            if self._created < ANALYZE_AFTER or now - self._renewed < ANALYZE_EVERY_S:
                return
            self._created, self._renewed = 0, now
        try:
            with self.engine.begin() as db:
                db.exec_driver_sql(f"SET LOCAL lock_timeout = {LOCK_WAIT_MS}")
                db.exec_driver_sql("ANALYZE runs")
        except sa.exc.DBAPIError as exc:  # the runs are created; the plans wait for autovacuum
            log.debug("did not renew PostgreSQL's statistics of the runs: %s", exc.orig)
