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

A write nobody needs to wait for yet (`write_soon`: the record of a run whose caller waits for
its end anyway) rides with the next batch, so a short run by hand costs one commit, not two; if
no batch comes within SOON_S, a thread of this class commits it then.

The batches run on one connection kept open: taking a connection from the pool and giving it
back (with its reset) cost more than the write, and on PostgreSQL the pool's check of it (a
round trip) was 7 % of a cluster worker process's time under load. A connection idle for more than
KEEP_IDLE_S goes back to the pool, so the next batch gets a checked one: a server restarted
while the writes paused costs no write. One that fails a batch is dropped (the batch's writes
run again alone, each on a new one); so a restart under load fails the writes of one batch,
which their callers write again (docs/scale-out.md says how each does).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection, Engine

from tsq.db import write_lock

KEEP_IDLE_S = 1.0  # a connection unused this long is checked before its next batch
SOON_S = 0.1  # the longest a `write_soon` waits for a batch to ride with

__all__ = ["GroupCommit", "Write"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Write(Generic[T]):
    """A write handed in: its function, then its result or error once its batch ended."""

    __slots__ = ("done", "error", "lead", "result", "soon", "write")

    def __init__(self, write: Callable[[Connection], T], *, soon: float | None = None) -> None:
        self.write = write
        self.soon = soon  # handed in at (monotonic) by `write_soon`: no thread waits for it
        self.done = threading.Event()
        self.lead = False  # woken to lead the next batch, not because its write is done
        self.result: T | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """The writes of one engine, committed in groups (`write`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._waiting: list[Write[Any]] = []
        self._leading = False  # a thread is running a batch
        self.batches = 0  # batches committed, for tests and benchmarks
        self._kept: Connection | None = None  # used by the leader only, one at a time
        self._used = 0.0  # when the kept connection last ended a transaction (monotonic)
        self._soon_due = threading.Condition(self._lock)  # wakes the `write_soon` thread
        self._soon_thread: threading.Thread | None = None
        self._soon_idle = False  # the `write_soon` thread waits until told
        self._closed = False

    def close(self) -> None:
        """Commit what `write_soon` left waiting, then let the connection go."""
        with self._lock:
            self._closed = True
            self._soon_due.notify()
            pending = self._oldest_soon() is not None
        if pending:
            self.write(_nothing)
        if self._soon_thread is not None:
            self._soon_thread.join(timeout=5)
        with write_lock(self.engine):
            if self._kept is not None:
                self._kept.close()
                self._kept = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with write_lock(self.engine):
            kept, self._kept = self._kept, None  # None until the transaction has ended well
            if kept is not None and time.monotonic() - self._used > KEEP_IDLE_S:
                kept.close()  # back to the pool, which checks it (pool_pre_ping)
                kept = None
            if kept is None:
                kept = self.engine.connect()
            try:
                with kept.begin():
                    yield kept
            except BaseException:
                kept.close()
                raise
            self._kept, self._used = kept, time.monotonic()

    def write(self, write: Callable[[Connection], T]) -> T:
        """`write(connection)`'s result once the transaction it ran in has committed; its
        exception if it failed (in a transaction of its own, then)."""
        mine: Write[T] = Write(write)
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

    def write_soon(self, write: Callable[[Connection], T]) -> Write[T]:
        """Hand `write` in to be committed with the next batch, or within SOON_S; `written`
        waits for it. Writes handed in later commit after it, in the same batch or a later
        one, so a write that needs its rows finds them."""
        mine: Write[T] = Write(write, soon=time.monotonic())
        with self._lock:
            if self._closed:
                raise RuntimeError("the group commit is closed")
            self._waiting.append(mine)
            if self._soon_thread is None:
                self._soon_thread = threading.Thread(target=self._commit_soon_writes,
                                                     name="tsq-commit-soon", daemon=True)
                self._soon_thread.start()
            if self._soon_idle:  # told only when it waits idle: not a wake-up per batch
                self._soon_idle = False
                self._soon_due.notify()
        return mine

    def written(self, write: Write[T]) -> T:
        """The result of a `write_soon` once it has committed; its exception if it failed."""
        write.done.wait()
        return self._outcome(write)

    def _commit_soon_writes(self) -> None:
        """The `write_soon` thread: makes a batch for the writes no batch took in SOON_S."""
        while True:
            with self._lock:
                if self._closed:  # `close` commits what is left
                    return
                oldest = self._oldest_soon()
                if oldest is None or oldest.soon is None:  # nothing to watch: wait to be told
                    self._soon_idle = True
                    self._soon_due.wait()
                    continue
                left = oldest.soon + SOON_S - time.monotonic()
                if left > 0:
                    self._soon_due.wait(left)  # a batch may take it meanwhile
                    continue
            self.write(_nothing)  # waits in (or leads) the next batch, which takes it

    def _oldest_soon(self) -> Write[Any] | None:
        return next((write for write in self._waiting if write.soon is not None), None)

    def _lead(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            self._commit(batch)
        finally:
            with self._lock:
                # The first write handed in during the batch whose thread waits leads next;
                # `write_soon` ones wait for it or for their thread.
                successor = next((write for write in self._waiting if write.soon is None), None)
                if successor is not None:
                    successor.lead = True
                    successor.done.set()
                else:
                    self._leading = False
            for write in batch:
                if write.soon is not None and write.error is not None:  # no thread hears it
                    log.error("a write handed in to commit soon failed: %s", write.error)
                write.lead = False
                write.done.set()

    def _commit(self, batch: list[Write[Any]]) -> None:
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
    def _outcome(write: Write[T]) -> T:
        if write.error is not None:
            raise write.error
        return write.result  # type: ignore[return-value]  # set when error is not


def _nothing(_db: Connection) -> None:
    """A write that only makes a batch happen (for the writes waiting in it)."""
