"""The blocks of recent reads kept in memory (connectors/blockcache.py): a read inside one kept
takes its blocks from there, with the same points; every transaction forgets them, and a read
that a transaction overtook, or that took the head's old start, is not kept. The store's model
test (tests/connectors/test_embedded_head.py) reads each state again and again with the cache
on; it fails if a transaction does not forget."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest

from tsq.config import Settings
from tsq.connectors import blockstore, embedded
from tsq.connectors.blockcache import OPEN_END, BlockCache
from tsq.connectors.embedded import EmbeddedStore
from tsq.connectors.head import Head
from tsq.kernels import Blocks
from tsq.selector import parse_selector
from tsq.series import SeriesSet

S = 10**9
HOSTS = 3


def blocks(ids: list[int], firsts: list[int], lasts: list[int], start: int = 0,
           end: int = 100) -> Blocks:
    n = len(ids)
    return Blocks(np.array(ids, np.int64), np.array(firsts, np.int64),
                  np.array(lasts, np.int64), np.full(n, 2, np.int64),
                  np.arange(n, dtype=np.int64) * 4, np.zeros(4 * n, np.uint64), start, end)


def test_a_read_inside_a_kept_one_gets_the_blocks_that_reach_into_its_window() -> None:
    cache = BlockCache(1 << 20)
    ids = np.array([7, 3], np.int64)
    cache.keep(ids, cache.generation, 0, 100, [blocks([3, 7, 7], [0, 0, 50], [40, 49, 90])])
    found = cache.found(np.array([3, 7], np.int64), 45, 60)  # the same series, any order
    assert found is not None
    (part,) = found
    assert part.ids.tolist() == [7, 7] and part.firsts.tolist() == [0, 50]
    assert (part.start, part.end) == (45, 60)
    assert cache.found(ids, 0, 100) is not None  # the whole window kept
    assert cache.found(ids, -1, 60) is None  # earlier than what was read
    assert cache.found(ids, 10, 101) is None  # later
    assert cache.found(np.array([3], np.int64), 10, 20) is None  # other series


def test_the_blocks_kept_cannot_be_changed_in_place() -> None:
    cache = BlockCache(1 << 20)
    part = blocks([1], [0], [40])
    cache.keep(np.array([1], np.int64), cache.generation, 0, 100, [part])
    with pytest.raises(ValueError, match="read-only"):
        part.counts[0] = 3


def test_a_read_up_to_the_head_holds_every_later_block() -> None:
    cache = BlockCache(1 << 20)
    ids = np.array([1], np.int64)
    cache.keep(ids, cache.generation, 10, OPEN_END, [blocks([1], [0], [40])])
    found = cache.found(ids, 20, 10**18)
    assert found is not None and found[0].ids.tolist() == [1]


def test_a_read_that_a_transaction_began_or_ended_during_is_not_kept() -> None:
    cache = BlockCache(1 << 20)
    ids = np.array([1], np.int64)
    before = cache.generation
    cache.changed()
    cache.keep(ids, before, 0, 100, [blocks([1], [0], [40])])
    assert cache.found(ids, 0, 100) is None and cache.size == 0
    cache.keep(ids, cache.generation, 0, 100, [blocks([1], [0], [40])])
    assert cache.found(ids, 0, 100) is not None
    cache.changed()  # and a transaction forgets what was kept
    assert cache.found(ids, 0, 100) is None and cache.size == 0


def test_the_least_recently_used_reads_go_first_past_the_budget() -> None:
    one = blocks([1], [0], [40])
    size = one.words.nbytes + 5 * 8
    cache = BlockCache(2 * size)
    for sid in (1, 2):
        cache.keep(np.array([sid], np.int64), cache.generation, 0, 100, [one])
    assert cache.found(np.array([1], np.int64), 0, 100) is not None  # 1 used last
    cache.keep(np.array([3], np.int64), cache.generation, 0, 100, [one])
    assert cache.size == 2 * size
    assert cache.found(np.array([2], np.int64), 0, 100) is None
    assert cache.found(np.array([1], np.int64), 0, 100) is not None
    assert cache.found(np.array([3], np.int64), 0, 100) is not None
    small = BlockCache(size - 1)  # a read larger than the budget is never kept
    small.keep(np.array([1], np.int64), small.generation, 0, 100, [one])
    assert small.size == 0


# -- in the store ------------------------------------------------------------------------------


def stretch(first: int, length: int, value: float = 0.0) -> SeriesSet:
    """`length` seconds of every host from second `first`, values first + i + value."""
    return SeriesSet.from_series(
        ("up", {"host": f"h{h}"}, [(first + i) * S for i in range(length)],
         [float(first + i) + value for i in range(length)]) for h in range(HOSTS))


def values(store: EmbeddedStore, start: int | None = None, end: int | None = None
           ) -> list[list[float]]:
    return [s.values.tolist() for s in store.select(parse_selector("up"), start, end)]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedStore]:
    monkeypatch.setattr(embedded, "PAST_POINTS", 0)  # each write into the table at once
    opened = EmbeddedStore(tmp_path / "p.duckdb")  # 1970: every point in the table's past
    yield opened
    opened.close()


@pytest.fixture
def statements() -> Iterator[list[int]]:
    """How many times the store asked DuckDB for blocks."""
    asked: list[int] = []
    read = blockstore.read

    def counted(*args: Any, **kwargs: Any) -> list[Blocks]:
        asked.append(1)
        return read(*args, **kwargs)

    with patch.object(blockstore, "read", counted):
        yield asked


def test_a_second_read_takes_its_blocks_from_memory(store: EmbeddedStore,
                                                    statements: list[int]) -> None:
    store.write(stretch(0, 100))
    assert values(store) == [[float(t) for t in range(100)]] * HOSTS
    assert values(store, 10 * S, 20 * S) == [[float(t) for t in range(10, 20)]] * HOSTS
    assert values(store) == [[float(t) for t in range(100)]] * HOSTS
    assert len(statements) == 1
    counts = store.cache_counts()
    assert (counts["hits"], counts["misses"]) == (2, 1) and counts["bytes"] > 0


def test_a_write_into_the_blocks_is_seen_by_the_next_read(store: EmbeddedStore,
                                                          statements: list[int]) -> None:
    store.write(stretch(0, 100))
    values(store)
    store.write(stretch(0, 100, value=0.5))  # blocks written again in a transaction
    assert values(store) == [[float(t) + 0.5 for t in range(100)]] * HOSTS
    store.delete(parse_selector('up{host="h0"}'), 0, 50 * S)
    assert values(store)[0] == [float(t) + 0.5 for t in range(50, 100)]
    assert len(statements) == 3


def test_a_store_without_a_cache_asks_duckdb_each_time(tmp_path: Path,
                                                       statements: list[int]) -> None:
    store = EmbeddedStore(tmp_path / "p.duckdb", cache_bytes=0)
    try:
        store.write(stretch(0, 100))
        for _ in range(3):
            assert values(store) == [[float(t) for t in range(100)]] * HOSTS
        assert len(statements) == 3
    finally:
        store.close()


def test_a_read_that_a_write_overtakes_is_not_kept(store: EmbeddedStore) -> None:
    """The write commits after the read's statement saw the blocks as they were: that read
    answers the old points, and the next read the new ones."""
    store.write(stretch(0, 100))
    read = blockstore.read
    writes = [stretch(0, 100, value=0.5)]

    def read_then_write(*args: Any, **kwargs: Any) -> list[Blocks]:
        found = read(*args, **kwargs)
        if writes:
            store.write(writes.pop())
        return found

    with patch.object(blockstore, "read", read_then_write):
        assert values(store) == [[float(t) for t in range(100)]] * HOSTS
    assert not writes
    assert values(store) == [[float(t) + 0.5 for t in range(100)]] * HOSTS


def test_a_read_between_a_moves_commit_and_the_heads_new_start_is_not_kept(
        tmp_path: Path) -> None:
    """A move commits its blocks, then the head takes its new start: a read in between takes
    the blocks up to the old start (the head still has the rest); kept as reaching past the
    head, a read after the move would miss the moved points."""
    now = [10 * 3600 * S]
    store = EmbeddedStore(tmp_path / "p.duckdb", head_span=3600 * S, clock=lambda: now[0])
    try:
        first = now[0] - 1800 * S  # half an hour of points, in the head
        store.write(SeriesSet.from_series([("up", {}, [first + i * S for i in range(600)],
                                            [float(i) for i in range(600)])]))
        store.write(SeriesSet.from_series([("up", {}, [first - 7200 * S + i * S
                                                       for i in range(100)],
                                            [float(i) for i in range(100)])]))  # the past
        advance: Callable[..., None] = Head.advance

        def read_then_advance(head: Head, *args: Any) -> None:
            assert len(store.select(parse_selector("up")).timestamps) == 700
            advance(head, *args)

        with patch.object(Head, "advance", read_then_advance):
            moved = store.move(first + 300 * S)
        assert moved == 300
        assert len(store.select(parse_selector("up")).timestamps) == 700
    finally:
        store.close()


def test_the_budget_is_the_settings_store_cache_mb(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path, flags={"store_cache_mb": 3})
    assert settings.store_cache_mb == 3
    store = EmbeddedStore.open({"cache_mb": settings.store_cache_mb}, tmp_path)
    try:
        assert store._block_cache.budget == 3 << 20
    finally:
        store.close()


def test_reads_beside_writes_never_go_back_to_older_points(store: EmbeddedStore) -> None:
    """Writes replace a stretch's blocks again and again, each with higher values; reads on
    another thread, most from memory, see each series whole at one write's values and never
    an older write's after a newer one's (a kept read outliving a transaction would)."""
    store.write(stretch(0, 100))
    stop = threading.Event()
    seen: list[float] = []
    failures: list[str] = []

    def read() -> None:
        while not stop.is_set():
            for series in store.select(parse_selector("up")):
                offsets = set((series.values - np.arange(100)).tolist())
                if len(offsets) != 1:
                    failures.append(f"a series at several writes' values: {sorted(offsets)}")
                    return
                latest = offsets.pop()
                if seen and latest < seen[-1]:
                    failures.append(f"went back from {seen[-1]} to {latest}")
                    return
                seen.append(latest)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_ in range(1, 80):
            store.write(stretch(0, 100, value=float(round_)))
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not failures, failures
    assert values(store) == [[float(t) + 79 for t in range(100)]] * HOSTS
    assert store.cache_counts()["hits"] > 0
