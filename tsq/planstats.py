"""PostgreSQL's statistics of the runs table, renewed after a burst of new runs.

PostgreSQL plans by statistics that autovacuum renews only a while after a table changed by a
tenth. Until then a burst of runs (a backfill, a catch-up) is invisible to the planner: it
took a loop's 6,000 new runs for one, and a backfill's progress (`RunStore.keyed_statuses`)
read the loop's whole history, 2.6 -> 8.7 ms a poll as they ran, where its event's index
reads the range asked for. The statements of the hot path do not depend on them (their ids go
as arrays, searched by the primary key: docs/design-notes.md).

A process that has created ANALYZE_AFTER runs since it last renewed them has PostgreSQL
`ANALYZE` the table on a thread of its own (whoever created the runs goes on at once), at most
every ANALYZE_EVERY_S: a scheduler creating runs all the time samples the table once a minute,
not at every batch, and a burst soon after a renewal is renewed for once the minute is up. The
thread waits LOCK_WAIT_MS at most for the table's maintenance lock (autovacuum may hold it for
minutes) and then tries again a minute later.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.engine import Engine

__all__ = ["ANALYZE_AFTER", "ANALYZE_EVERY_S", "RunStatistics"]

log = logging.getLogger(__name__)

ANALYZE_AFTER = 1000  # runs created since the last renewal that call for the next
ANALYZE_EVERY_S = 60.0  # a process renews them at most this often
LOCK_WAIT_MS = 100  # how long ANALYZE waits for the table's maintenance lock


class RunStatistics:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.on = engine.dialect.name == "postgresql"  # SQLite's planner needs none of this
        self.renewals = 0  # how many ANALYZEs this process had PostgreSQL make
        self._created = 0  # runs created since the last renewal
        self._renewed: float | None = None  # time.monotonic() of the last renewal
        self._changed = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def created(self, count: int) -> None:
        """`count` runs were just created (committed)."""
        if not self.on or count <= 0:
            return
        with self._changed:
            self._created += count
            if self._created < ANALYZE_AFTER or self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew_when_due, daemon=True,
                                                name="tsq-run-statistics")
                self._thread.start()
            self._changed.notify_all()

    def wait_renewed(self, renewals: int, timeout_s: float) -> bool:
        """Whether this process has renewed them `renewals` times within `timeout_s` (on
        SQLite, never: False at once)."""
        if not self.on:
            return False
        with self._changed:
            return self._changed.wait_for(lambda: self.renewals >= renewals, timeout_s)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _renew_when_due(self) -> None:
        with self._changed:
            while not self._closed:
                due = self._renewed + ANALYZE_EVERY_S - time.monotonic() \
                    if self._renewed is not None else 0.0
                if self._created < ANALYZE_AFTER or due > 0:
                    self._changed.wait(due if due > 0 else None)
                    continue
                created, self._created = self._created, 0
                self._renewed = time.monotonic()
                self._changed.release()
                try:
                    renewed = self._analyze()
                finally:
                    self._changed.acquire()
                if renewed:
                    self.renewals += 1
                    self._changed.notify_all()
                else:  # counted again: the next try is a minute later
                    self._created += created

    def _analyze(self) -> bool:
        try:
            with self.engine.begin() as db:
                db.exec_driver_sql(f"SET LOCAL lock_timeout = {LOCK_WAIT_MS}")
                db.exec_driver_sql("ANALYZE runs")
        except Exception as exc:  # the runs are created; the plans wait for the next try
            log.info("did not renew PostgreSQL's statistics of the runs (%s); trying again in "
                     "%.0f s", getattr(exc, "orig", None) or exc, ANALYZE_EVERY_S)
            return False
        return True
