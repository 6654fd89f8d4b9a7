"""The embedded store's blocks (connectors/blockstore.py): where points become blocks, that a
point is in one place only, and that a delete drops whole blocks without decoding them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest

from tsq.connectors import embedded
from tsq.connectors.embedded import EmbeddedStore, compact
from tsq.kernels import Blocks
from tsq.selector import parse_selector
from tsq.series import SeriesSet

S = 10**9
HOSTS = 3


@pytest.fixture(autouse=True)
def written_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each write into the past goes into the table as it is made (held back, as the store
    does, several would go in together): these tests look at where one write's points go."""
    monkeypatch.setattr(embedded, "PAST_POINTS", 0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "p.duckdb"


@pytest.fixture
def store(path: Path) -> Iterator[EmbeddedStore]:
    opened = EmbeddedStore(path)  # 1970: every point is behind the head, in the table
    yield opened
    opened.close()


def stretch(first: int, length: int, value: float = 0.0) -> SeriesSet:
    """`length` seconds of every host from second `first`, values first + i + value."""
    return SeriesSet.from_series(
        ("up", {"host": f"h{h}"}, [(first + i) * S for i in range(length)],
         [float(first + i) + value for i in range(length)]) for h in range(HOSTS))


def held(store: EmbeddedStore) -> tuple[int, int]:
    """(points in rows, points in blocks)."""
    found = store._db.execute("SELECT (SELECT count(*) FROM points), "
                              "(SELECT coalesce(sum(count), 0) FROM blocks)").fetchone()
    assert found is not None
    return int(found[0]), int(found[1])


def values(store: EmbeddedStore) -> list[list[float]]:
    return [s.values.tolist() for s in store.select(parse_selector("up"))]


def test_a_long_stretch_becomes_a_block_and_a_few_points_rows(store: EmbeddedStore) -> None:
    store.write(stretch(0, 100))
    assert held(store) == (0, HOSTS * 100)
    store.write(stretch(100, 5))  # a few of each, as a time-major /write brings them
    assert held(store) == (HOSTS * 5, HOSTS * 100)
    assert values(store) == [[float(t) for t in range(105)]] * HOSTS


def test_an_overwrite_replaces_the_point_a_block_holds(store: EmbeddedStore) -> None:
    store.write(stretch(0, 100))
    store.write(stretch(40, 3, value=0.5))  # rows, replacing three points of each block
    assert held(store) == (HOSTS * 3, HOSTS * 97)
    expected = [float(t) + (0.5 if 40 <= t < 43 else 0.0) for t in range(100)]
    assert values(store) == [expected] * HOSTS
    store.write(stretch(0, 100, value=0.25))  # a whole new stretch: blocks again, once
    assert held(store) == (0, HOSTS * 100)
    assert values(store) == [[float(t) + 0.25 for t in range(100)]] * HOSTS


def blocks_table(store: EmbeddedStore) -> list[tuple[int, int, int, int]]:
    return store._db.execute("SELECT sid, first, last, count FROM blocks ORDER BY ALL"
                             ).fetchall()


def test_points_among_a_blocks_times_replacing_none_go_to_rows_and_leave_it_be(
        store: EmbeddedStore) -> None:
    """A late batch (writers racing each other) brings points at new times among a block's:
    they go to rows, and the block is not written again for them."""
    every_other = SeriesSet.from_series(
        ("up", {"host": f"h{h}"}, [2 * t * S for t in range(100)],
         [float(2 * t) for t in range(100)]) for h in range(HOSTS))
    store.write(every_other)  # a block a host: 0, 2, 4 … 198 s
    before = blocks_table(store)
    late = SeriesSet.from_series(
        ("up", {"host": f"h{h}"}, [(2 * t + 1) * S for t in range(20, 90)],
         [float(2 * t + 1) for t in range(20, 90)]) for h in range(HOSTS))
    store.write(late)  # 41, 43 … 179 s, enough for a block: none a time the block holds
    assert blocks_table(store) == before
    assert held(store) == (HOSTS * 70, HOSTS * 100)
    expected = sorted([float(2 * t) for t in range(100)] +
                      [float(2 * t + 1) for t in range(20, 90)])
    assert values(store) == [expected] * HOSTS
    assert store.fold_rows() == HOSTS * 70  # the background fold takes them in
    assert held(store) == (0, HOSTS * 170)
    assert values(store) == [expected] * HOSTS


def test_a_series_whose_block_is_written_again_anyway_has_all_its_points_go_there(
        store: EmbeddedStore) -> None:
    store.write(stretch(0, 100))  # a block a host at 0 … 99 s
    halves = [(t * S + S // 2) for t in range(10, 80)]  # 10.5 … 79.5 s: 70 new times
    store.write(SeriesSet.from_series([
        ("up", {"host": "h0"}, [10 * S, *halves], [-1.0] * 71),  # and 10 s, which it replaces
        ("up", {"host": "h1"}, halves, [-2.0] * 70)]))  # replacing nothing
    h1_block = [row for row in blocks_table(store) if row[0] == 2]
    assert held(store) == (70, HOSTS * 100 + 70)  # h0's all in its block, h1's rows
    assert h1_block == [(2, 0, 99 * S, 100)]  # not written again
    found = {s.labels["host"]: dict(zip(s.timestamps.tolist(), s.values.tolist(), strict=True))
             for s in store.select(parse_selector("up"))}
    assert found["h0"][10 * S] == -1.0 and found["h0"][20 * S + S // 2] == -1.0
    assert found["h1"][20 * S + S // 2] == -2.0 and found["h1"][20 * S] == 20.0
    assert [len(found[h]) for h in ("h0", "h1", "h2")] == [170, 170, 100]


def test_a_reopened_store_still_replaces_the_rows_and_blocks_it_holds(path: Path) -> None:
    """A write over the past looks for the points it replaces only where its series may have
    some, rows or blocks; a store opened again knows where from its tables."""
    first = EmbeddedStore(path)
    first.write(stretch(0, 100))  # blocks
    first.write(stretch(100, 5))  # rows
    first.close()
    again = EmbeddedStore(path)
    try:
        again.write(stretch(98, 4, value=0.5))  # two points of the blocks, two rows
        assert held(again) == (HOSTS * 7, HOSTS * 98)
        expected = [float(t) + (0.5 if 98 <= t < 102 else 0.0) for t in range(105)]
        assert values(again) == [expected] * HOSTS
    finally:
        again.close()


def test_a_delete_drops_whole_blocks_without_decoding_them(store: EmbeddedStore) -> None:
    for first in range(0, 400, 100):
        store.write(stretch(first, 100))
    with patch.object(Blocks, "decoded", side_effect=AssertionError("decoded")):
        assert store.delete(parse_selector("up"), 100 * S, 300 * S) == HOSTS * 200
    assert store.delete(parse_selector("up"), 50 * S, 350 * S) == HOSTS * 100  # two edges
    assert held(store) == (0, HOSTS * 100)
    expected = [float(t) for t in [*range(50), *range(350, 400)]]
    assert values(store) == [expected] * HOSTS


def test_compaction_folds_rows_into_blocks(path: Path) -> None:
    store = EmbeddedStore(path)
    try:
        for first in range(0, 200, 5):
            store.write(stretch(first, 5))
        assert held(store) == (HOSTS * 200, 0)
    finally:
        store.close()
    compact(path)
    again = EmbeddedStore(path)
    try:
        assert held(again) == (0, HOSTS * 200)
        assert values(again) == [[float(t) for t in range(200)]] * HOSTS
        found = again._db.execute("SELECT count(*) FROM blocks").fetchone()
        assert found == (HOSTS,)  # a block a series
    finally:
        again.close()


def test_nan_and_negative_zero_come_back_from_a_block(store: EmbeddedStore) -> None:
    given = np.array([np.nan, -0.0, 1.5, np.inf] * 20)
    store.write(SeriesSet.from_series([("up", {"host": "h0"}, [t * S for t in range(80)],
                                        given.tolist())]))
    assert held(store) == (0, 80)
    found = store.select(parse_selector("up")).values
    assert found.view(np.uint64).tolist() == given.view(np.uint64).tolist()


def test_a_read_sees_every_point_while_writes_move_them_between_blocks_and_rows(
        store: EmbeddedStore) -> None:
    """A read takes the rows and the blocks in one snapshot: points that writes move from a
    block to rows (an overwrite of a few) and back (a long stretch again) are never missed
    or seen twice."""
    store.write(stretch(0, 100))
    stop = threading.Event()
    failures: list[int] = []

    def read() -> None:
        while not stop.is_set():
            found = store.select(parse_selector("up"))
            if found.points != HOSTS * 100:
                failures.append(found.points)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_ in range(150):
            store.write(stretch(10, 20, value=round_ % 2 + 0.5))  # rows over a block's points
            store.write(stretch(0, 100))  # blocks again, the rows replaced
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not failures, f"reads saw {sorted(set(failures))} points instead of {HOSTS * 100}"


def test_a_read_of_blocks_alone_sees_the_points_a_write_moves_to_their_first_rows(
        store: EmbeddedStore) -> None:
    """Series with blocks alone are read in one statement, without a transaction. A write
    that brings them their first rows, taking points out of their blocks, notes before it
    commits that they may have rows: a read whose statement saw that commit finds the note
    after it and reads rows and blocks again, in one snapshot, rather than miss the points.
    Here the write commits right after the read has looked where the points are."""
    store.write(stretch(0, 100))
    looked = embedded._stored_in
    writes = [stretch(10, 20, value=0.5)]  # rows over a block's points

    def look_then_write(table: str, entries: list[Any]) -> tuple[bool, bool]:
        found = looked(table, entries)
        if writes:
            store.write(writes.pop())
        return found

    with patch.object(embedded, "_stored_in", look_then_write):
        found = store.select(parse_selector("up"))
    assert not writes
    expected = [float(t) + (0.5 if 10 <= t < 30 else 0.0) for t in range(100)]
    assert [s.values.tolist() for s in found] == [expected] * HOSTS


def test_rows_are_folded_into_blocks_in_the_background(store: EmbeddedStore) -> None:
    """Once FOLD_FROM rows are written, a thread folds them into blocks, with the points of
    the blocks they fall among, while the store serves; reads meanwhile find every point."""
    store.write(stretch(0, 100))
    stop = threading.Event()
    failures: list[int] = []

    def read() -> None:
        while not stop.is_set():
            found = store.select(parse_selector("up")).points
            if found != HOSTS * 100:
                failures.append(found)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        with patch.object(embedded, "FOLD_FROM", HOSTS * 20):
            for round_ in range(30):
                store.write(stretch(10, 20, value=round_ % 2 + 0.5))  # rows: a fold starts
                folder = store._folder
                assert folder is not None
                folder.join(timeout=30)
                assert held(store) == (0, HOSTS * 100)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not failures, f"reads saw {sorted(set(failures))} points instead of {HOSTS * 100}"
    expected = [float(t) + (1.5 if 10 <= t < 30 else 0.0) for t in range(100)]
    assert values(store) == [expected] * HOSTS


def blob_store(path: Path) -> None:
    """A store as tsq wrote it before blocks were lists of words: each block a BLOB of the same
    words, a row of `points` beside them."""
    import duckdb

    from tsq.kernels.blocks import encode

    schema = [s.replace("data UBIGINT[] NOT NULL", "data BLOB NOT NULL")
              for s in embedded.SCHEMA]
    assert schema != list(embedded.SCHEMA)
    ts = np.arange(50, dtype=np.int64) * S
    words, starts = encode(ts, ts / S + 0.5, np.array([0, 20, 50]))
    with duckdb.connect(str(path)) as db:
        for statement in schema:
            db.execute(statement)
        db.execute("""INSERT INTO series VALUES (1, 'up', '{"host":"h0"}', 'double')""")
        db.execute("INSERT INTO blocks VALUES (1, 0, ?, 20, ?), (1, ?, ?, 30, ?)", [
            19 * S, words[starts[0]:starts[1]].tobytes(), 20 * S, 49 * S,
            words[starts[1]:].tobytes()])
        db.execute("INSERT INTO points VALUES (1, ?, 99.5)", [60 * S])


UPGRADED = [t + 0.5 for t in range(50)] + [99.5]


@pytest.mark.parametrize("at_a_time", [1, 8192])
def test_a_store_of_blob_blocks_reads_writes_and_deletes_as_lists(
        path: Path, at_a_time: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upgraded as it opens, a few blocks at a time (one: each of its two blocks alone)."""
    from tsq.connectors import blockstore

    monkeypatch.setattr(blockstore, "UPGRADE_ROWS", at_a_time)
    blob_store(path)
    store = EmbeddedStore(path)
    try:
        assert values(store) == [UPGRADED]
        assert store._db.execute("SELECT DISTINCT data_type FROM duckdb_columns() WHERE "
                                 "table_name = 'blocks' AND column_name = 'data'"
                                 ).fetchall() == [("UBIGINT[]",)]
        store.write(SeriesSet.from_series([("up", {"host": "h0"}, [10 * S], [-1.0])]))
        store.delete(parse_selector("up"), 30 * S, 40 * S)
    finally:
        store.close()
    again = EmbeddedStore(path)
    try:
        expected = [*UPGRADED[:10], -1.0, *UPGRADED[11:30], *UPGRADED[40:]]
        assert values(again) == [expected]
    finally:
        again.close()


def test_compacting_a_store_of_blob_blocks_keeps_every_point(path: Path) -> None:
    blob_store(path)
    compact(path)
    store = EmbeddedStore(path)
    try:
        assert values(store) == [UPGRADED]
        assert held(store) == (0, 51)
    finally:
        store.close()


def test_store_files_are_made_of_small_duckdb_blocks(path: Path) -> None:
    """A new store and a compacted one: the size is the file's, read whenever it opens."""
    import duckdb

    def block_size() -> int:
        with duckdb.connect(str(path), read_only=True) as db:
            found = db.execute("SELECT block_size FROM pragma_database_size()").fetchone()
        assert found is not None
        return int(found[0])

    EmbeddedStore(path).close()
    assert block_size() == embedded.STORE_BLOCK_SIZE
    compact(path)
    assert block_size() == embedded.STORE_BLOCK_SIZE


def test_duckdb_s_log_stays_short_as_blocks_are_appended(store: EmbeddedStore,
                                                         path: Path) -> None:
    """DuckDB logs a list column's earlier appends again at each append until a checkpoint:
    without one, these 30 appends of 24 KB leave a log of 11 MB."""
    wal = Path(f"{path}.wal")
    noise = np.random.default_rng(7).random((30, HOSTS, 1000))  # 8 bytes a point in a block
    longest = 0
    for n in range(30):
        store.write(SeriesSet.from_series(
            ("up", {"host": f"h{h}"}, [(n * 1000 + i) * S for i in range(1000)],
             noise[n, h].tolist()) for h in range(HOSTS)))
        longest = max(longest, wal.stat().st_size if wal.exists() else 0)
    assert longest <= embedded.CHECKPOINT_AFTER + 100_000
    assert held(store) == (0, 30 * 1000 * HOSTS)
    assert values(store)[0] == noise[:, 0].ravel().tolist()


def test_a_growing_store_keeps_no_copies_of_its_blocks(
        store: EmbeddedStore, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint after appends to a list column rewrites the column of the row group
    appended to, and the file keeps the old copy as free blocks: in one large row group that
    is every block so far (a file of twice the blocks' bytes), in DuckDB's smallest the last
    2,048 blocks at most."""
    monkeypatch.setattr(embedded, "CHECKPOINT_AFTER", 0)  # a checkpoint after each write
    rng = np.random.default_rng(3)
    for n in range(12):  # 400 blocks a write: 4,800 in all
        store.write(SeriesSet.from_series(
            ("up", {"host": f"h{h}"}, [(n * 64 + i) * S for i in range(64)],
             rng.random(64).tolist()) for h in range(400)))
    found = store._db.execute("SELECT 8 * sum(len(data)), count(*) FROM blocks").fetchone()
    assert found is not None and found[1] == 4800
    store.close()
    assert path.stat().st_size <= 1.5 * int(found[0]) + 200_000
