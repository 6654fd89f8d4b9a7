"""Work taken off a queue in batches: the next item and whatever else waits behind it, so a
thread that writes what it takes pays one transaction (or one store write) for a burst."""

from __future__ import annotations

import queue
from typing import Protocol, TypeVar

__all__ = ["drain", "drain_now"]

T = TypeVar("T")


class _Queue(Protocol[T]):
    def get(self) -> T: ...

    def get_nowait(self) -> T: ...

    def put(self, item: T) -> None: ...


def drain(items: _Queue[T | None], most: int) -> list[T] | None:
    """The next item and those waiting behind it, up to `most`; None once closed (a None was
    put, which stays for the next call when it comes after a batch)."""
    first = items.get()
    if first is None:
        return None
    return [first, *drain_now(items, most - 1)]


def drain_now(items: _Queue[T | None], most: int) -> list[T]:
    """The items waiting now, up to `most`, without waiting for one."""
    batch: list[T] = []
    while len(batch) < most:
        try:
            item = items.get_nowait()
        except queue.Empty:
            break
        if item is None:
            items.put(None)  # seen again by the next drain, after this batch
            break
        batch.append(item)
    return batch
