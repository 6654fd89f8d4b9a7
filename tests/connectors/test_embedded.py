"""The embedded DuckDB store keeps the connector contract, survives reopening, and rolls back a
write that fails half way."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.connectors.contract import CPU, ConnectorContract, S
from tsq.connectors import embedded, headlog
from tsq.connectors.embedded import EmbeddedStore, _series_then_time
from tsq.errors import Conflict
from tsq.selector import parse_selector
from tsq.series import SeriesSet


class TestEmbeddedStore(ConnectorContract):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[EmbeddedStore]:
        store = EmbeddedStore(tmp_path / "points.duckdb")
        yield store
        store.close()


def test_points_survive_reopening(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "p.duckdb")
    store.write(SeriesSet.from_series(CPU))
    store.close()
    again = EmbeddedStore(tmp_path / "p.duckdb")
    try:
        assert again.names() == ["cpu", "mem"]
        assert sum(s.points for s in [again.select(parse_selector("cpu"))]) == 6
    finally:
        again.close()


def test_a_type_conflict_writes_nothing(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "p.duckdb")
    try:
        store.write(SeriesSet.from_series([("up", {}, [S], [1.0])]))
        with pytest.raises(Conflict, match="holds double values"):
            store.write(SeriesSet.from_series(
                [("up", {}, [2 * S], np.array(["yes"], dtype=object))]))
        assert list(store.select(parse_selector("up"))[0].values) == [1.0]
    finally:
        store.close()


def test_a_write_failing_after_its_new_series_forgets_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = EmbeddedStore(tmp_path / "p.duckdb")
    try:
        store.write(SeriesSet.from_series(CPU))
        before = (store.names(), store.labels(), store.describe(parse_selector('{dc=~".*"}')))

        def broken(*args: object) -> None:
            raise OSError("disk full")

        # the points' log record, after the transaction inserted the new series
        monkeypatch.setattr(headlog.HeadLog, "append", broken)
        batch = SeriesSet.from_series([("cpu", {"dc": "new", "host": "web09"}, [S], [1.0]),
                                       ("swap", {"dc": "gra"}, [S], [2.0])])
        with pytest.raises(OSError, match="disk full"):
            store.write(batch)
        assert (store.names(), store.labels(),
                store.describe(parse_selector('{dc=~".*"}'))) == before
        assert len(store.select(parse_selector('{dc="new"}'))) == 0
        monkeypatch.undo()
        store.write(batch)
        assert [list(s.values) for s in store.select(parse_selector("swap"))] == [[2.0]]
    finally:
        store.close()
    again = EmbeddedStore(tmp_path / "p.duckdb")
    try:
        assert again.names() == ["cpu", "mem", "swap"]
        assert [s.labels["host"] for s in again.select(parse_selector('cpu{dc="new"}'))] == [
            "web09"]
    finally:
        again.close()


def test_reads_of_few_and_of_many_series_agree(tmp_path: Path) -> None:
    """Few series are read by a list of ids, many through a join: the same points either way."""
    store = EmbeddedStore(tmp_path / "p.duckdb")
    try:
        count = embedded.FEW_SERIES * 2
        store.write(SeriesSet.from_series(
            ("up", {"host": f"h{i:03d}"}, [S, 2 * S], [float(i), -float(i)])
            for i in range(count)))
        every = store.select(parse_selector("up"), None, 2 * S)
        assert [list(s.values) for s in every] == [[float(i)] for i in range(count)]
        few = store.select(parse_selector('up{host=~"h00."}'), None, 2 * S)
        assert [list(s.values) for s in few] == [[float(i)] for i in range(10)]
    finally:
        store.close()


@settings(max_examples=200, deadline=None)
@given(pairs=st.sets(st.tuples(st.integers(0, 40), st.integers(-50, 50)), max_size=300),
       seed=st.integers(0, 2**32 - 1))
def test_reads_are_ordered_by_series_then_time_whatever_the_scan_order(
        pairs: set[tuple[int, int]], seed: int) -> None:
    rows = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    shuffled = rows[np.random.default_rng(seed).permutation(len(rows))]
    rank, ts = shuffled[:, 0].astype(np.int16), shuffled[:, 1].copy()
    counts = np.bincount(rank, minlength=41)  # ranks that hold no point too
    order = _series_then_time(rank, ts, np.concatenate(([0], np.cumsum(counts))))
    got = shuffled if order is None else shuffled[order]
    assert got.tolist() == rows.tolist()


def test_the_series_a_selector_matched_are_renewed_when_series_are_added_or_rolled_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = EmbeddedStore(tmp_path / "p.duckdb")
    try:
        up = parse_selector('up{dc="gra"}')
        store.write(SeriesSet.from_series([("up", {"dc": "gra", "host": "b"}, [S], [1.0])]))
        assert [s.labels["host"] for s in store.select(up)] == ["b"]
        store.write(SeriesSet.from_series([("up", {"dc": "gra", "host": "a"}, [S], [2.0])]))
        assert [s.labels["host"] for s in store.select(up)] == ["a", "b"]

        def broken(*args: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(embedded, "_insert_series", broken)
        with pytest.raises(OSError):
            store.write(SeriesSet.from_series([("up", {"dc": "gra", "host": "c"}, [S],
                                                [3.0])]))
        assert [s.labels["host"] for s in store.select(up)] == ["a", "b"]
        assert [s.labels["host"] for s in store.select(up)] == ["a", "b"]  # the kept answer
    finally:
        store.close()


def test_a_type_conflict_after_a_new_series_forgets_the_new_one(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "p.duckdb")
    try:
        store.write(SeriesSet.from_series([("up", {}, [S], np.array(["yes"], dtype=object))]))
        with pytest.raises(Conflict, match="holds text values"):
            store.write(SeriesSet.from_series([("fresh", {}, [S], [1.0]), ("up", {}, [S], [2.0])]))
        assert store.names() == ["up"]
        store.write(SeriesSet.from_series([("fresh", {}, [2 * S], [3.0])]))
        assert [list(s.values) for s in store.select(parse_selector("fresh"))] == [[3.0]]
    finally:
        store.close()


def test_points_behind_the_head_wait_in_the_buffer_until_the_table_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write into the past is logged and held; the table gets the buffer in one
    transaction when a read needs it. If that transaction fails, the read gets the error and
    the buffer and its log stay: the next read writes them."""
    store = EmbeddedStore(tmp_path / "p.duckdb")  # 1970: every point is behind the head
    try:
        for second in range(3):
            store.write(SeriesSet.from_series([("swap", {"dc": "gra"}, [second * S],
                                                [float(second)])]))
        assert store._past.points == 3
        assert store._db.execute("SELECT count(*) FROM points").fetchone() == (0,)

        def broken(*args: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(embedded, "_write_past", broken)
        with pytest.raises(OSError, match="disk full"):
            store.select(parse_selector("swap"))
        assert store._past.points == 3
        monkeypatch.undo()
        assert [list(s.values) for s in store.select(parse_selector("swap"))] == [
            [0.0, 1.0, 2.0]]
        assert store._past.points == 0
        assert store._db.execute("SELECT count(*) FROM points").fetchone() == (3,)
    finally:
        store.close()


def test_a_full_buffer_of_the_past_goes_into_the_table_by_a_thread_while_writes_go_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write that fills the buffer hands it to a thread; later writes go into a fresh
    buffer meanwhile, and a read of its series waits until the table holds it, then finds
    the later write of a time kept."""
    monkeypatch.setattr(embedded, "PAST_POINTS", 4)
    path = tmp_path / "p.duckdb"
    store = EmbeddedStore(path)
    gate, entered = _gated_table_writes(monkeypatch)
    read: list[list[float]] = []
    reader = threading.Thread(target=lambda: read.extend(
        list(s.values) for s in store.select(parse_selector("swap"))))
    try:
        store.write(SeriesSet.from_series([("swap", {}, [S, 2 * S, 3 * S], [1.0, 2.0, 3.0])]))
        assert store._past.points == 3
        store.write(SeriesSet.from_series([("swap", {}, [2 * S, 4 * S], [-2.0, 4.0])]))
        assert entered.wait(10) and store._past.points == 0  # the thread has it
        # the table still empty, a later write of 2 s held in the fresh buffer and its log
        store.write(SeriesSet.from_series([("swap", {}, [2 * S, 5 * S], [-20.0, 5.0])]))
        assert store._past.points == 2
        assert len(list(Path(f"{path}{embedded.PAST_SUFFIX}").glob("*.log"))) == 2
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and not read, "the read did not wait for the table"
        gate.set()
        reader.join(10)
        assert read == [[1.0, -20.0, 3.0, 4.0, 5.0]]
        assert store._past.points == 0 and store._flush is None
        assert store._db.execute("SELECT ts // 1000000000, value FROM points ORDER BY ts"
                                 ).fetchall() == [(1, 1.0), (2, -20.0), (3, 3.0), (4, 4.0),
                                                  (5, 5.0)]
    finally:
        gate.set()
        store.close()
    again = EmbeddedStore(path)
    try:
        assert [list(s.values) for s in again.select(parse_selector("swap"))] == [
            [1.0, -20.0, 3.0, 4.0, 5.0]]
    finally:
        again.close()


def test_a_write_that_fills_the_buffer_succeeds_though_the_table_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write is logged and held before the buffer goes into the table: a failure there is
    not the write's. The buffer's points come back in front of the later ones, which still
    win, and the read after it tries again; a restart before that finds every point in the
    log."""
    monkeypatch.setattr(embedded, "PAST_POINTS", 2)
    path = tmp_path / "p.duckdb"
    store = EmbeddedStore(path)
    try:
        def broken(*args: object) -> None:
            raise OSError("disk full")

        with monkeypatch.context() as patched:
            patched.setattr(embedded, "_write_past", broken)
            assert store.write(SeriesSet.from_series([("swap", {}, [S, 2 * S], [1.0, 2.0])])) == 2
            flush = store._flush
            assert flush is not None and flush.done.wait(10) and flush.written is None
        assert store.write(SeriesSet.from_series([("swap", {}, [2 * S], [-2.0])])) == 1
        assert store._flush is flush and store._past.points == 1  # not taken back until read
        assert [list(s.values) for s in store.select(parse_selector("swap"))] == [[1.0, -2.0]]
        assert store._past.points == 0
    finally:
        store.close()
    with monkeypatch.context() as patched:
        store = EmbeddedStore(path)
        patched.setattr(embedded, "_write_past", broken)
        try:  # the thread fails, and so does the write-behind of closing: the log keeps them
            store.write(SeriesSet.from_series([("swap", {}, [3 * S, 4 * S], [3.0, 4.0])]))
            flush = store._flush
            assert flush is not None and flush.done.wait(10)
        finally:
            store.close()
    again = EmbeddedStore(path)
    try:
        assert [list(s.values) for s in again.select(parse_selector("swap"))] == [
            [1.0, -2.0, 3.0, 4.0]]
    finally:
        again.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), max_size=40), st.lists(st.integers(0, 60), max_size=20,
                                                             unique=True))
def test_the_series_a_write_names_are_found_among_those_asked(sid: list[int],
                                                               ids: list[int]) -> None:
    # which series a write into the table gives rows or blocks (`_note_where`)
    named = embedded._named(np.array(sid, dtype=np.int32), ids)
    assert named == [found for found in ids if found in set(sid)]


def test_a_read_waits_for_the_full_buffer_while_another_writer_waits_for_it_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write of a new series waits for the thread's buffer under the write lock; a read of
    that buffer's series meanwhile still finds it held, and waits, rather than read a table
    that does not hold its points yet."""
    monkeypatch.setattr(embedded, "PAST_POINTS", 2)
    store = EmbeddedStore(tmp_path / "p.duckdb")
    gate, entered = _gated_table_writes(monkeypatch)
    now = time.time_ns()
    read: list[list[float]] = []
    writer = threading.Thread(target=store.write, args=(
        SeriesSet.from_series([("fresh", {}, [now], [9.0])]),))
    reader = threading.Thread(target=lambda: read.extend(
        list(s.values) for s in store.select(parse_selector("swap"))))
    try:
        store.write(SeriesSet.from_series([("swap", {}, [S, 2 * S], [1.0, 2.0])]))
        assert entered.wait(10)
        writer.start()
        for _ in range(200):  # until the writer holds the lock, waiting for the thread
            if store._write_lock.locked():
                break
            time.sleep(0.01)
        assert store._write_lock.locked() and writer.is_alive()
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and not read, "the read did not wait for the table"
        gate.set()
        writer.join(10)
        reader.join(10)
        assert read == [[1.0, 2.0]]
        assert [list(s.values) for s in store.select(parse_selector("fresh"))] == [[9.0]]
    finally:
        gate.set()
        store.close()


def _gated_table_writes(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event,
                                                                  threading.Event]:
    """Writes into the table wait until the first event is set; the second is set when one
    begins to wait."""
    gate, entered = threading.Event(), threading.Event()
    real = embedded._write_past

    def gated(*args: Any) -> Any:
        entered.set()
        assert gate.wait(10)
        return real(*args)

    monkeypatch.setattr(embedded, "_write_past", gated)
    return gate, entered


def test_a_full_buffer_no_thread_can_take_is_written_by_the_next_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "PAST_POINTS", 2)
    store = EmbeddedStore(tmp_path / "p.duckdb")
    real = threading.Thread

    class NoThreadToBeHad(real):  # type: ignore[misc, valid-type]
        def start(self) -> None:
            if self.name == "tsq-store-behind":
                raise RuntimeError("can't start new thread")
            super().start()

    try:
        with monkeypatch.context() as patched:
            patched.setattr(threading, "Thread", NoThreadToBeHad)
            assert store.write(SeriesSet.from_series([("swap", {}, [S, 2 * S], [1.0, 2.0])])) == 2
        flush = store._flush
        assert flush is not None and flush.done.is_set() and flush.written is None
        assert [list(s.values) for s in store.select(parse_selector("swap"))] == [[1.0, 2.0]]
        assert store._flush is None and store._past.points == 0
    finally:
        store.close()


def test_a_read_of_the_threads_buffer_leaves_the_fresh_one_to_fill(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read of series only the thread's buffer holds waits for the thread, and leaves the
    fresh buffer (another series' backfill) to fill on."""
    monkeypatch.setattr(embedded, "PAST_POINTS", 2)
    store = EmbeddedStore(tmp_path / "p.duckdb")
    try:  # "other" made first (in the head): a write that makes a series waits for the thread
        store.write(SeriesSet.from_series([("other", {}, [time.time_ns()], [0.0])]))
        store.write(SeriesSet.from_series([("swap", {}, [S, 2 * S], [1.0, 2.0])]))
        store.write(SeriesSet.from_series([("other", {}, [S], [5.0])]))
        assert store._flush is not None and store._past.points == 1
        assert [list(s.values) for s in store.select(parse_selector("swap"))] == [[1.0, 2.0]]
        assert store._flush is None and store._past.points == 1  # "other" still waits
        assert [list(s.values) for s in store.select(parse_selector("other"))] == [[5.0, 0.0]]
        assert store._past.points == 0
    finally:
        store.close()
