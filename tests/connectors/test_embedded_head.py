"""The embedded store's head (its newest points in memory, made durable by its own log) keeps the
connector contract whether a read falls in it, in the table or across both; a restart replays
its log, a torn log tail is cut, and moving points into the table loses or doubles none of
them. A hypothesis model checks every mix of writes, overwrites, deletes, moves and restarts
against a dictionary."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.connectors.contract import CPU, ConnectorContract, S
from tests.scheduling_helpers import ScriptedPool
from tsq.config import Settings
from tsq.connectors import blockstore, embedded, head, headlog
from tsq.connectors.embedded import HEAD_SPAN, HEAD_SUFFIX, EmbeddedStore, compact
from tsq.connectors.pastbuffer import PAST_POINTS
from tsq.errors import Conflict
from tsq.selector import parse_selector
from tsq.series import SeriesSet
from tsq.service import Service


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def store_at(path: Path | str, now: int, span: int = HEAD_SPAN) -> EmbeddedStore:
    return EmbeddedStore(path, head_span=span, clock=Clock(now))


class TestEverythingInTheHead(ConnectorContract):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[EmbeddedStore]:
        store = store_at(tmp_path / "points.duckdb", now=0)  # the head starts 2 h before 0
        yield store
        store.close()


class TestTheHeadStartingAtTwoSeconds(ConnectorContract):
    """CPU's points at 1 s are in the table, those at 2 s and 3 s in the head."""

    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[EmbeddedStore]:
        store = store_at(tmp_path / "points.duckdb", now=2 * S + HEAD_SPAN)
        yield store
        store.close()


def table_points(store: EmbeddedStore) -> int:
    """The numeric points the table holds, as rows or in blocks."""
    found = store._db.execute("SELECT (SELECT count(*) FROM points) + "
                              "(SELECT coalesce(sum(count), 0) FROM blocks)").fetchone()
    assert found is not None
    return int(found[0])


def every_point(store: EmbeddedStore, selector: str = '{__name__=~".+"}'
                ) -> dict[tuple[str, str, int], float]:
    found = store.select(parse_selector(selector))
    return {(s.name, s.labels.get("host", ""), int(t)): float(v)
            for s in found for t, v in zip(s.timestamps, s.values, strict=True)}


def points_after_restart(path: Path, now: int = 0) -> dict[tuple[str, str, int], float]:
    """Every point of the store at `path` as a restart finds it (opened, read, closed)."""
    again = store_at(path, now=now)
    try:
        return every_point(again)
    finally:
        again.close()


def test_a_restart_replays_writes_overwrites_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "p.duckdb"
    store = store_at(path, now=0)
    store.write(SeriesSet.from_series(CPU))
    store.write(SeriesSet.from_series([("cpu", {"dc": "gra", "host": "web01"}, [2 * S],
                                        [-2.0])]))
    assert store.delete(parse_selector("mem")) == 1
    before = every_point(store)
    store.close()
    assert not (tmp_path / "p.duckdb.head").is_file()
    assert list((tmp_path / f"p.duckdb{HEAD_SUFFIX}").glob("*.log")), "no head log"
    again = store_at(path, now=0)
    try:
        assert every_point(again) == before
        assert before[("cpu", "web01", 2 * S)] == -2.0
        assert ("mem", "web01", S) not in before
        # nothing of it went to the table: the head held it all
        assert table_points(again) == 0
    finally:
        again.close()


def test_moving_points_into_the_table_keeps_them_once(tmp_path: Path) -> None:
    path = tmp_path / "p.duckdb"
    clock = Clock(0)
    store = EmbeddedStore(path, head_span=10 * S, clock=clock)
    store.write(SeriesSet.from_series(("up", {"host": f"h{i}"}, [t * S for t in range(20)],
                                       [float(i * 100 + t) for t in range(20)])
                                      for i in range(3)))
    before = every_point(store)
    clock.now = 30 * S  # more than 1.5 spans past the head's start (-10 s): 20 s onwards stay
    store.write(SeriesSet.from_series([("up", {"host": "h0"}, [25 * S], [7.0])]))
    assert store._head.state.start == 20 * S
    assert table_points(store) == 60
    before[("up", "h0", 25 * S)] = 7.0
    assert every_point(store) == before
    # a write reaching back behind the head replaces the point in the table
    store.write(SeriesSet.from_series([("up", {"host": "h1"}, [5 * S], [-1.0])]))
    before[("up", "h1", 5 * S)] = -1.0
    assert every_point(store) == before
    segments = sorted((tmp_path / f"p.duckdb{HEAD_SUFFIX}").glob("*.log"))
    store.close()
    again = EmbeddedStore(path, head_span=10 * S, clock=clock)
    try:
        assert every_point(again) == before
        assert again._head.state.points == 1
    finally:
        again.close()
    # the segment that held only moved points is gone
    assert segments[0].name == "00000002.log"


def test_a_write_is_quick_unless_the_store_is_held_a_move_is_due_or_the_past_would_fill(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tsq.kernels import sortedmerge  # here: a test below imports this module without numba

    sortedmerge.warm()
    clock = Clock(0)
    store = EmbeddedStore(tmp_path / "p.duckdb", head_span=10 * S, clock=clock, past_points=5)
    try:
        assert store.writes_quickly(4)
        assert not store.writes_quickly(5)  # the write that fills the buffer writes it
        store.write(SeriesSet.from_series([("up", {}, [-30 * S, -29 * S], [1.0, 2.0])]))
        assert store._past.points == 2
        assert store.writes_quickly(2) and not store.writes_quickly(3)
        with store._write_lock:  # another writer: a read writing the past, a fold, a delete
            assert not store.writes_quickly(1)
        with monkeypatch.context() as before_the_merge_loads:
            before_the_merge_loads.setattr(embedded, "merges_loaded", lambda: False)
            assert not store.writes_quickly(1)
        clock.now = 6 * S  # the head starts at -10 s: more than 1.5 spans later, a move is due
        assert not store.writes_quickly(1)
        store.write(SeriesSet.from_series([("up", {}, [5 * S], [3.0])]))  # moves the head
        assert store._head.state.start == -4 * S and store.writes_quickly(1)
    finally:
        store.close()
    in_memory = EmbeddedStore(":memory:")  # points behind its head go to its table: never
    try:
        assert not in_memory.writes_quickly(1)
    finally:
        in_memory.close()


def logged_twice(path: Path, name: str) -> Path:
    """A store whose head log holds CPU, then `name`{host=web01} at 9 s: its last segment."""
    store = store_at(path, now=0)
    store.write(SeriesSet.from_series(CPU))
    store.write(SeriesSet.from_series([(name, {"dc": "gra", "host": "web01"}, [9 * S],
                                        [9.0])]))
    store.close()
    return max(path.with_name(f"{path.name}{HEAD_SUFFIX}").glob("*.log"))


def test_a_torn_head_log_tail_is_cut_and_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "p.duckdb"
    segment = logged_twice(path, "cpu")
    whole = segment.stat().st_size
    with segment.open("r+b") as log:  # the second record cut short
        log.truncate(whole - 5)
    again = store_at(path, now=0)
    try:
        found = every_point(again)
        assert len(found) == 7 and ("cpu", "web01", 9 * S) not in found
        again.write(SeriesSet.from_series([("cpu", {"dc": "gra", "host": "web01"}, [8 * S],
                                            [8.0])]))
    finally:
        again.close()
    assert list(segment.parent.glob("*.damaged-*")), "no copy of the damaged segment"
    assert segment.stat().st_size < whole - 5
    assert points_after_restart(path)[("cpu", "web01", 8 * S)] == 8.0


def test_a_garbled_record_fails_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "p.duckdb"
    segment = logged_twice(path, "mem")
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF  # a value byte of the last record
    segment.write_bytes(bytes(data))
    found = points_after_restart(path)
    assert ("mem", "web01", 9 * S) not in found and len(found) == 7


def test_a_write_whose_log_append_fails_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.duckdb"
    store = store_at(path, now=0)
    try:
        store.write(SeriesSet.from_series(CPU))
        before = every_point(store), store.names()

        def full(*args: object) -> None:
            raise OSError("No space left on device")

        monkeypatch.setattr(headlog.os, "fdatasync", full)
        with pytest.raises(OSError, match="No space"):
            store.write(SeriesSet.from_series([("swap", {}, [S], [1.0]),
                                               ("cpu", {"dc": "gra", "host": "web01"}, [S],
                                                [-1.0])]))
        monkeypatch.undo()
        assert (every_point(store), store.names()) == before
    finally:
        store.close()
    again = store_at(path, now=0)
    try:
        assert (every_point(again), again.names()) == before
    finally:
        again.close()


@pytest.mark.parametrize("where", ["head", "past"])
def test_a_write_whose_log_sync_fails_is_taken_out_of_memory_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """A write of known series only: its log records are synced while its points go into the
    head or the buffer of the past; the sync failing, the points are taken out again, the
    records cut off, and the write changes nothing, now or after a restart."""
    path = tmp_path / "p.duckdb"
    store = store_at(path, now=0 if where == "head" else 100 * HEAD_SPAN)
    at = 9 * S  # in the head of a store whose clock is at 0; far behind it otherwise
    try:
        store.write(SeriesSet.from_series(CPU))
        before = every_point(store)

        def full(*args: object) -> None:
            raise OSError("No space left on device")

        monkeypatch.setattr(headlog.os, "fdatasync", full)
        with pytest.raises(OSError, match="No space"):
            store.write(SeriesSet.from_series([("cpu", {"dc": "gra", "host": "web01"},
                                                [2 * S, at], [-2.0, -9.0])]))
        monkeypatch.undo()
        assert every_point(store) == before
        assert store._past.points == 0
    finally:
        store.close()
    assert points_after_restart(path, now=0 if where == "head" else 100 * HEAD_SPAN) == before


def test_a_write_prepared_before_series_came_or_went_stores_every_point_under_one_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`prepare` looks the series up off the write lock (a server's parsing thread does, while
    the write before is stored): a series another write made meanwhile, and one it found that
    a failing write then forgot, are looked up again, so each series has one entry and every
    point is there, now and after a restart (a point of a forgotten entry would not be)."""
    def one(host: str, at: int, value: float) -> SeriesSet:
        return SeriesSet.from_series([("cpu", {"host": host}, [at * S], [value])])

    path = tmp_path / "p.duckdb"
    store = store_at(path, now=0)
    try:
        store.write(one("a", 1, 1.0))
        later = store.prepare(SeriesSet.from_series([("cpu", {"host": "a"}, [2 * S], [2.0]),
                                                     ("cpu", {"host": "b"}, [2 * S], [3.0])]))
        assert [entry is not None for entry in later.found] == [True, False]
        store.write(one("b", 1, 4.0))  # b made meanwhile
        assert store.write_prepared(later) == 2
        during: list[Any] = []

        def full(*args: object) -> None:  # c is indexed, its write not yet done: it fails
            during.append(store.prepare(one("c", 3, 5.0)))
            raise OSError("No space left on device")

        monkeypatch.setattr(headlog.os, "fdatasync", full)
        with pytest.raises(OSError, match="No space"):
            store.write(one("c", 1, 6.0))
        monkeypatch.undo()
        assert during[0].found[0] is not None  # found c while the failing write had it
        assert store.write_prepared(during[0]) == 1
        expected = {("cpu", "a", S): 1.0, ("cpu", "a", 2 * S): 2.0, ("cpu", "b", S): 4.0,
                    ("cpu", "b", 2 * S): 3.0, ("cpu", "c", 3 * S): 5.0}
        assert every_point(store) == expected
        assert len(store.describe(parse_selector("cpu"))) == 3
        text = store.prepare(SeriesSet.from_series([("cpu", {"host": "a"}, [4 * S],
                                                     np.array(["up"], dtype=object))]))
        assert not text.whole  # a series of numbers: the write says why it cannot be
        with pytest.raises(Conflict, match="holds double values; text values cannot"):
            store.write_prepared(text)
    finally:
        store.close()
    assert points_after_restart(path) == expected


def test_a_logged_write_of_a_series_never_committed_is_not_replayed(tmp_path: Path) -> None:
    """The process died after the log record and before the transaction that made its series:
    the write was never acknowledged, and its points must not come back without a series."""
    path = tmp_path / "p.duckdb"
    store = store_at(path, now=0)
    store.write(SeriesSet.from_series(CPU))
    assert store._log is not None
    store._log.append(headlog.Writing(np.array([1, 99], np.int32), np.array([5 * S, 5 * S]),
                                      np.array([1.0, 2.0])))
    store.close()
    assert len(points_after_restart(path)) == 7


def test_reads_of_few_dense_and_all_series_in_the_head_agree(tmp_path: Path) -> None:
    store = store_at(tmp_path / "p.duckdb", now=0)
    try:
        for batch in range(6):  # several chunks
            store.write(SeriesSet.from_series(
                ("up", {"host": f"h{i:03d}"}, [batch * S], [float(i * 10 + batch)])
                for i in range(100)))
        every = every_point(store, "up")
        assert len(every) == 600
        for selector in ('up{host=~"h00."}', 'up{host=~"h0[0-7].|h09."}', 'up{host="h042"}',
                         'up{host=~"h0[13579]."}'):
            assert every_point(store, selector) == {
                k: v for k, v in every.items() if parse_selector(selector).matchers[0].matches(
                    k[1])}
    finally:
        store.close()


WRITTEN = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 30), st.integers(-9, 9)),
                   min_size=1, max_size=20)
OPERATION = st.one_of(
    st.tuples(st.just("write"), WRITTEN),
    st.tuples(st.just("delete"), st.tuples(st.integers(0, 5), st.integers(0, 30),
                                           st.integers(0, 30))),
    st.tuples(st.just("tick"), st.integers(0, 10)),
    st.tuples(st.just("reopen"), st.none()),
    st.tuples(st.just("crash"), WRITTEN),  # a write, then the process killed at once
    st.tuples(st.just("compact"), st.none()),
    st.tuples(st.just("fold"), st.none()),
)


@settings(max_examples=80, deadline=None)
@given(operations=st.lists(OPERATION, max_size=25), block_from=st.sampled_from([2, 64]),
       past_points=st.sampled_from([PAST_POINTS, 1]))
def test_the_store_holds_what_a_dictionary_holds(
        tmp_path_factory: pytest.TempPathFactory,
        operations: list[tuple[str, object]], block_from: int, past_points: int) -> None:
    """Writes (overwrites included), deletes, the clock moving (and with it points into the
    table's blocks), restarts, compactions and folds (rows into blocks), in any order: every
    read gives the model's points. With `block_from` 2, a write into the past makes blocks
    of any series it brings two points of, so overwrites and deletes cut blocks too. With
    `past_points` 1, a write into the past fills the buffer, which a thread then writes
    into the table while the operations after it go on."""
    path = tmp_path_factory.mktemp("model") / "p.duckdb"
    with patch.object(embedded, "PAST_POINTS", past_points):
        _holds_what_the_model_holds(path, operations, block_from)


def _holds_what_the_model_holds(path: Path, operations: list[tuple[str, object]],
                                block_from: int) -> None:
    clock = Clock(10 * S)
    model: dict[tuple[str, str, int], float] = {}
    store = EmbeddedStore(path, head_span=4 * S, clock=clock)
    try:
        for kind, argument in operations:
            with patch.object(blockstore, "BLOCK_FROM", block_from):
                store = _apply(store, kind, argument, model, clock, path)
            # one series first: a read of it writes the buffer of the past into the table
            # only if the series has points there
            assert every_point(store, 'up{host="h1"}') == {
                k: v for k, v in model.items() if k[1] == "h1"}
            assert every_point(store) == model
            for start, end in ((0, 12), (8, 31), (12, 13)):
                assert every_point_in(store, start * S, end * S) == {
                    k: v for k, v in model.items() if start * S <= k[2] < end * S}
    finally:
        store.close()


def _apply(store: EmbeddedStore, kind: str, argument: object,
           model: dict[tuple[str, str, int], float], clock: Clock, path: Path
           ) -> EmbeddedStore:
    """One operation of the model test on the store and on the model; the store it leaves."""
    if kind == "crash":  # the files as a kill -9 leaves them: what close would write is not
        _apply(store, "write", argument, model, clock, path)
        return _crashed(store, path, clock)
    if kind in ("reopen", "compact"):
        store.close()
        if kind == "compact":
            compact(path)
        return EmbeddedStore(path, head_span=4 * S, clock=clock)
    if kind == "write":
        assert isinstance(argument, list)
        written: dict[tuple[int, int], float] = {}
        for host, second, value in argument:
            written[(host, second)] = float(value)
        hosts = sorted({h for h, _ in written})
        store.write(SeriesSet.from_series(
            ("up", {"host": f"h{h}"}, [t * S for (g, t) in sorted(written) if g == h],
             [v for (g, t), v in sorted(written.items()) if g == h]) for h in hosts))
        model.update({("up", f"h{h}", t * S): v for (h, t), v in written.items()})
    elif kind == "delete":
        assert isinstance(argument, tuple)
        host, start, end = argument
        store.delete(parse_selector(f'up{{host="h{host}"}}'), start * S, end * S)
        for key in [k for k in model if k[1] == f"h{host}"
                    and start * S <= k[2] < end * S]:
            del model[key]
    elif kind == "tick":
        assert isinstance(argument, int)
        clock.now += argument * S
    elif kind == "fold":
        store.fold_rows()
    return store


def _crashed(store: EmbeddedStore, path: Path, clock: Clock) -> EmbeddedStore:
    """The store opened again from a copy of its files taken while it was open (each
    acknowledged write is synced: the copy holds what a kill -9 would leave)."""
    saved = path.parent / "saved"
    shutil.rmtree(saved, ignore_errors=True)
    saved.mkdir()
    for found in path.parent.glob(f"{path.name}*"):
        (shutil.copytree if found.is_dir() else shutil.copy2)(found, saved / found.name)
    store.close()
    for found in path.parent.glob(f"{path.name}*"):
        shutil.rmtree(found) if found.is_dir() else found.unlink()
    for found in saved.iterdir():
        found.rename(path.parent / found.name)
    return EmbeddedStore(path, head_span=4 * S, clock=clock)


def every_point_in(store: EmbeddedStore, start: int, end: int
                   ) -> dict[tuple[str, str, int], float]:
    found = store.select(parse_selector('{__name__=~".+"}'), start, end)
    return {(s.name, s.labels.get("host", ""), int(t)): float(v)
            for s in found for t, v in zip(s.timestamps, s.values, strict=True)}


def test_the_service_keeps_store_head_minutes_in_memory(tmp_path: Path) -> None:
    service = Service(Settings.load(tmp_path, flags={"store_head_minutes": 5}),
                      workers=ScriptedPool())
    try:
        store = service.store
        assert isinstance(store, EmbeddedStore)
        assert store._span == 5 * 60 * 10**9
        assert abs(store._head.state.start - (time.time_ns() - store._span)) < 60 * 10**9
    finally:
        service.close()


@settings(max_examples=200, deadline=None)
@given(mine=st.lists(st.tuples(st.integers(0, 5), st.integers(-3, 3)), max_size=30),
       theirs=st.lists(st.tuples(st.integers(0, 5), st.integers(-3, 3)), min_size=1,
                       max_size=30))
def test_pairs_among_theirs_are_found_exactly(mine: list[tuple[int, int]],
                                              theirs: list[tuple[int, int]]) -> None:
    """The hashed look-up of (series, time) pairs, and its sorted fallback when theirs repeat
    one, both agree with a set."""
    sid, ts = (np.array([p[i] for p in mine], np.int32 if i == 0 else np.int64).reshape(-1)
               for i in (0, 1))
    their_sid = np.array([p[0] for p in theirs], np.int32)
    their_ts = np.array([p[1] * 10**9 for p in theirs], np.int64)
    found = head._Among(their_sid, their_ts)(sid, ts * 10**9)
    assert found.tolist() == [(s, t) in {(a, b) for a, b in theirs} for s, t in mine]


@pytest.mark.parametrize("now", [0, 100 * HEAD_SPAN], ids=["numbers in the head",
                                                          "numbers in the table"])
def test_a_read_of_numbers_and_strings_gives_none_for_nan(tmp_path: Path, now: int) -> None:
    """Strings never go to the head: one read joins the floats, from the head or the table,
    and the table's strings (NaN then comes back as None, as the table gives a number's NULL
    beside strings)."""
    store = store_at(tmp_path / "p.duckdb", now=now)
    try:
        store.write(SeriesSet.from_series([("a", {}, [S, 2 * S], [1.0, np.nan])]))
        store.write(SeriesSet.from_series([("b", {}, [S], np.array(["x"], dtype=object))]))
        found = store.select(parse_selector('{__name__=~".+"}'))
        assert [(s.name, list(s.values)) for s in found] == [("a", [1.0, None]), ("b", ["x"])]
    finally:
        store.close()


chunk_points = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 50)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(older=chunk_points, newer=chunk_points, compiled=st.booleans())
def test_two_chunks_merge_as_a_stable_sort_of_both_would_place_them(
        older: list[tuple[int, int]], newer: list[tuple[int, int]], compiled: bool) -> None:
    """Sorted by series, and within a series the older chunk's points first, in their order:
    the order `_replaced` and the reads rely on; by numpy or by the compiled merge."""
    def chunk(points: list[tuple[int, int]], mark: float) -> head.Chunk:
        sid = np.array([p[0] for p in points], np.int32)
        ts = np.array([p[1] for p in points], np.int64)
        return head.Chunk.of(sid, ts, np.arange(len(points)) + mark)

    if not older or not newer:
        return
    a, b = chunk(older, 0.0), chunk(newer, 0.5)
    with patch.object(head, "COMPILED_MERGE", 0 if compiled else 2**62), \
            patch.object(head, "COMPILED_MERGE_LOADED", 0 if compiled else 2**62):
        merged = a.merged(b)
    sid = np.concatenate((a.sid, b.sid))
    order = np.argsort(sid, kind="stable")
    assert merged.sid.tolist() == sid[order].tolist()
    assert merged.ts.tolist() == np.concatenate((a.ts, b.ts))[order].tolist()
    assert merged.value.tolist() == np.concatenate((a.value, b.value))[order].tolist()
    assert (merged.low, merged.high) == (min(a.low, b.low), max(a.high, b.high))


def _chunk_of(points: int, seed: int) -> head.Chunk:
    rng = np.random.default_rng(seed)
    return head.Chunk.of(rng.integers(0, 100, points).astype(np.int32),
                         rng.integers(0, 10**6, points), rng.random(points))


def test_chunks_of_a_write_or_two_are_merged_compiled_once_the_merge_is_loaded() -> None:
    """Two 5,000-point chunks (a write each) merge by the compiled pass when this process has
    it (3-5 times quicker than numpy, and without the GIL), by numpy below that size."""
    from tsq.kernels import sortedmerge

    sortedmerge.warm()
    big, small = (_chunk_of(5000, 1), _chunk_of(5000, 2)), (_chunk_of(100, 3), _chunk_of(100, 4))
    for (older, newer), compiled in ((big, True), (small, False)):
        with patch.object(sortedmerge, "merge_by_series",
                          wraps=sortedmerge.merge_by_series) as merge:
            merged = older.merged(newer)
        assert merge.called is compiled
        order = np.argsort(np.concatenate((older.sid, newer.sid)), kind="stable")
        assert merged.ts.tolist() == np.concatenate((older.ts, newer.ts))[order].tolist()


def test_a_process_without_the_compiled_merge_does_not_load_numba_for_a_small_merge() -> None:
    """A CLI or a first small write merges two mid-size chunks with numpy rather than wait a
    second for numba to load."""
    code = ("import sys; from tests.connectors.test_embedded_head import _chunk_of; "
            "_chunk_of(5000, 1).merged(_chunk_of(5000, 2)); print('numba' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, timeout=120, cwd=Path(__file__).parents[2])
    assert found.stdout.strip() == "False"


def test_a_merge_or_scan_module_another_thread_is_still_importing_counts_as_not_loaded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A server imports the compiled merge and scan on a thread of their own while writes come
    in, and a module is in sys.modules before its code has run: a write meanwhile takes numpy
    rather than fail on the half-made module."""
    from tsq import lineprotocol

    half_made = types.ModuleType("half-made")
    monkeypatch.setitem(sys.modules, "tsq.kernels.sortedmerge", half_made)
    monkeypatch.setitem(sys.modules, "tsq.linescan", half_made)
    assert not head.merges_loaded() and not lineprotocol._scan_loaded()
    older, newer = _chunk_of(5000, 1), _chunk_of(5000, 2)
    order = np.argsort(np.concatenate((older.sid, newer.sid)), kind="stable")
    assert older.merged(newer).ts.tolist() == \
        np.concatenate((older.ts, newer.ts))[order].tolist()


def test_a_write_whose_points_cannot_go_into_memory_is_cut_off_its_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write of known series whose points fail on their way into the head (here, no memory
    left) is not acknowledged, and its log record goes too: a restart does not bring back a
    write its client was told failed."""
    path = tmp_path / "p.duckdb"
    store = store_at(path, now=0)
    try:
        store.write(SeriesSet.from_series(CPU))
        before = every_point(store)

        def no_memory(*args: object) -> None:
            raise MemoryError

        monkeypatch.setattr(head.Head, "append", no_memory)
        with pytest.raises(MemoryError):
            store.write(SeriesSet.from_series([("cpu", {"dc": "gra", "host": "web01"},
                                                [7 * S], [-7.0])]))
        monkeypatch.undo()
        assert every_point(store) == before
    finally:
        store.close()
    assert points_after_restart(path) == before
