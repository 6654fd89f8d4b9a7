"""Group commit: writes that threads hand in at the same time share one transaction.

A commit costs SQLite about 100 µs here (the write-ahead log's append and the lock hand-over),
whatever it holds, and a run writes twice (created, settled). Many runs at once, each committing
its own rows, spend most of their time in commits and queue for the one writer. So a write is
handed in as a function of a connection: the first thread to find no write in progress leads,
runs every write waiting at that moment in one transaction, and wakes their threads; writes
handed in meanwhile wait for the next leader, the first of them, chosen when the batch ends.
A lone write costs what it did (one transaction, at once).

If a batch fails, each of its writes is run again in a transaction of its own, so an error (a
duplicate run key) reaches only the caller whose write caused it.

On SQLite the batches run on one connection kept open: taking a connection from the pool and
giving it back (with its reset) cost more than the write. On PostgreSQL each batch takes a pooled
connection, which the pool checks first, so a restarted server costs no write.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection, Engine

from tsq.db import transaction, write_lock

KEEPS_CONNECTION = {"sqlite": True, "postgresql": False}  # by backend (see above)

__all__ = ["GroupCommit"]

T = TypeVar("T")


class _Write(Generic[T]):
    __slots__ = ("done", "error", "lead", "result", "write")

    def __init__(self, write: Callable[[Connection], T]) -> None:
        self.write = write
        self.done = threading.Event()
        self.lead = False  # woken to lead the next batch, not because its write is done
        self.result: T | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """The writes of one engine, committed in groups (`write`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._waiting: list[_Write[Any]] = []
        self._leading = False  # a thread is running a batch
        self.batches = 0  # batches committed, for tests and benchmarks
        self._kept: Connection | None = None  # used by the leader only, one at a time

    def close(self) -> None:
        with write_lock(self.engine):
            if self._kept is not None:
                self._kept.close()
                self._kept = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        if not KEEPS_CONNECTION.get(self.engine.dialect.name, False):
            with transaction(self.engine) as db:
                yield db
            return
        with write_lock(self.engine):
            kept = self._kept or self.engine.connect()
            self._kept = None  # until the transaction has ended well
            try:
                with kept.begin():
                    yield kept
            except BaseException:
                kept.close()
                raise
            self._kept = kept

    def write(self, write: Callable[[Connection], T]) -> T:
        """`write(connection)`'s result once the transaction it ran in has committed; its
        exception if it failed (in a transaction of its own, then)."""
        mine: _Write[T] = _Write(write)
        with self._lock:
            self._waiting.append(mine)
            lead = not self._leading
            self._leading = True
        if not lead:
            mine.done.wait()
            if not mine.lead:
                return self._outcome(mine)
        self._lead()
        return self._outcome(mine)

    def _lead(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            self._commit(batch)
        finally:
            with self._lock:
                if self._waiting:  # handed in during the batch: the first of them leads next
                    successor = self._waiting[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._leading = False
            for write in batch:
                write.lead = False
                write.done.set()

    def _commit(self, batch: list[_Write[Any]]) -> None:
        self.batches += 1
        try:
            with self._transaction() as db:
                results = [write.write(db) for write in batch]
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
                return
            for write in batch:  # each alone, so that an error is its own write's
                try:
                    with self._transaction() as db:
                        write.result = write.write(db)
                except Exception as alone:
                    write.error = alone
            return
        except BaseException as error:  # an interrupt: nothing of the batch is known written
            for write in batch:
                write.error = error
            raise
        for write, result in zip(batch, results, strict=True):
            write.result = result

    @staticmethod
    def _outcome(write: _Write[T]) -> T:
        if write.error is not None:
            raise write.error
        return write.result  # type: ignore[return-value]  # set when error is not
