"""Batches taken off a queue: what waits, up to a size, and the close seen once after them."""

from __future__ import annotations

import queue

from tsq.draining import drain, drain_now


def test_drain_takes_the_next_item_and_what_waits_behind_it_up_to_the_most() -> None:
    items: queue.Queue[int | None] = queue.Queue()
    for item in range(5):
        items.put(item)
    assert drain(items, 3) == [0, 1, 2]
    assert drain(items, 3) == [3, 4]


def test_drain_now_never_waits_and_leaves_a_close_for_the_next_drain() -> None:
    items: queue.Queue[int | None] = queue.Queue()
    assert drain_now(items, 10) == []
    items.put(1)
    items.put(None)
    assert drain_now(items, 10) == [1]
    assert drain(items, 10) is None
