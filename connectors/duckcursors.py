"""Cursors of the embedded store's DuckDB connection, kept between uses.

A cursor starts in DuckDB's own database, and `USE` of the store's attached one costs 0.2-0.3 ms
here: a fifth of a small read's time in DuckDB. So a cursor that ended well (its transaction, if
it began one, committed or rolled back) is kept for the next read or write, on any thread; one
whose use raised is closed, which rolls back whatever it began. At most KEPT wait at a time
(the query and write threads that use them at once).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

__all__ = ["Cursors"]

KEPT = 8


class Cursors:
    def __init__(self, db: duckdb.DuckDBPyConnection, database: str) -> None:
        self._db = db
        self._use = f"USE {database}"
        self._idle: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def borrowed(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the store's database, this caller's alone until the block ends."""
        with self._lock:
            cursor = self._idle.pop() if self._idle else None
        if cursor is None:
            cursor = self._db.cursor()
            try:
                cursor.execute(self._use)
            except BaseException:
                cursor.close()
                raise
        try:
            yield cursor
        except BaseException:
            cursor.close()
            raise
        with self._lock:
            if not self._closed and len(self._idle) < KEPT:
                self._idle.append(cursor)
                return
        cursor.close()

    def close(self) -> None:
        """Close the cursors kept (those in use are closed as they come back)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for cursor in idle:
            cursor.close()
