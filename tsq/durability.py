"""Writes acknowledged once durable, without the writer waiting for it: a store's write made
inside `deferred()` returns once its points are in memory and its log record is written, and
leaves its acknowledgement to the caller: a future done once the record is durable, or failed
once the write is undone (`after_all` waits for a group's).

A server's write thread stores the next group of writes while the last one's log is synced
(`tsq.linewrites`): waiting for `fdatasync` (0.3-0.5 ms here) held it for a fifth of its time
with four clients writing. A store that defers a sync keeps what undoing the write needs until
the sync is done, and a failed sync fails every write after it too (the kernel reports a failed
writeback once: a later sync may succeed without the earlier data); a write made outside
`deferred()` waits for its sync as before (`connectors/embedded.py`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from contextlib import contextmanager

__all__ = ["after_all", "deferred", "deferring"]

Syncs = list[Future[None]]

_local = threading.local()


@contextmanager
def deferred() -> Iterator[Syncs]:
    """The syncs that the stores' writes made on this thread inside leave to the caller."""
    syncs: Syncs = []
    outer = getattr(_local, "syncs", None)
    _local.syncs = syncs
    try:
        yield syncs
    finally:
        _local.syncs = outer


def deferring() -> Syncs | None:
    """Where a store's write leaves its sync instead of waiting for it (None: it waits)."""
    syncs: Syncs | None = getattr(_local, "syncs", None)
    return syncs


def after_all(syncs: Syncs, then: Callable[[BaseException | None], None]) -> None:
    """Call `then` once every one of `syncs` is done, with the first failure among them or
    None: at once if they are, else on the thread that ends the last of them (a store's: `then`
    must not write to a store, which would wait for that thread)."""
    left = [len(syncs)]
    lock = threading.Lock()

    def one_done(_: Future[None]) -> None:
        with lock:
            left[0] -= 1
            if left[0]:
                return
        then(next((failure for failure in map(_failure, syncs) if failure is not None), None))

    if not syncs:
        then(None)
    for sync in syncs:
        sync.add_done_callback(one_done)


def _failure(sync: Future[None]) -> BaseException | None:
    return CancelledError() if sync.cancelled() else sync.exception()
