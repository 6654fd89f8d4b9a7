"""The embedded store's compressed blocks: its past, a series' points a few bits each.

Table `blocks` holds one row a block: the series id, its first and last times, its number of
points and the block itself (tsq.kernels.blocks: delta-of-delta times, decimal or XOR values,
bit-packed), about 1.3 bytes a point for regular metrics where a row of `points` takes 3 to 8.
A block is a list of 64-bit words (`UBIGINT[]`), not a BLOB: DuckDB stores a list's words as
one column cut across its blocks wherever they fill, where a BLOB is never split across two
(docs/store.md, "Footprint").
A numeric point of the table is in `points` or in one block, never both: a write that reaches a
time a block holds takes that point out of the block first (the block is written again without
it), and so does a delete. Blocks are made where a series' points come many at a time and in
order: the head's moves into the table, a write of a long stretch of a series into the past,
and compaction, which folds the rows of `points` into blocks. DuckDB keeps the table, so blocks
are written and removed in the store's transactions, with its log and its crash safety.

Every function takes the DuckDB connection (or transaction) to use; ids are series ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from tsq.kernels import Blocks
from tsq.kernels.blocks import encode

__all__ = ["BLOCK_FROM", "BLOCK_POINTS", "SCHEMA", "cut", "fold", "fold_rows", "held_in_blocks",
           "in_blocks", "read", "replace_points", "upgrade", "write", "write_joined"]

def _schema(table: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {table} (sid INTEGER NOT NULL, first BIGINT NOT NULL, "
            f"last BIGINT NOT NULL, count INTEGER NOT NULL, data UBIGINT[] NOT NULL)")


SCHEMA = _schema("blocks")
# The most points a block holds: a day of a series every 10 s fits in one, and a read of a
# short window of it decodes at most this many
BLOCK_POINTS = 1 << 14
WORD = 8  # bytes: blocks are 64-bit words
FOLD_POINTS = 1 << 22  # points compaction folds into blocks at a time
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# A series whose write into the past brings this many points, in time order, gets a block for
# them; fewer go to `points` as rows (a time-major batch brings a few of each), until compaction
BLOCK_FROM = 64
# series (or blocks) a statement names one by one; more are joined as a table
FEW_SERIES = 64
# Points of the table as three columns: series ids, times, values
Stretch = tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], npt.NDArray[np.float64]]


def write(db: duckdb.DuckDBPyConnection, sid: npt.NDArray[np.integer[Any]],
          ts: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
    """Points as blocks: each series' points together and in rising time, none at a time the
    table holds already; a block a series, or more where it has more than BLOCK_POINTS."""
    if not len(sid):
        return
    starts = np.flatnonzero(np.concatenate(([True], sid[1:] != sid[:-1])))
    ends = np.append(starts[1:], len(sid))
    cuts = np.unique(np.concatenate([np.arange(a, b, BLOCK_POINTS) for a, b in
                                     zip(starts.tolist(), ends.tolist(), strict=True)]))
    offsets = np.append(cuts, len(sid)).astype(np.int64)
    words, word_offsets = encode(ts, np.asarray(values, np.float64), offsets)
    _insert(db, sid[cuts], ts[cuts], ts[offsets[1:] - 1], np.diff(offsets), words,
            word_offsets)


def write_joined(db: duckdb.DuckDBPyConnection, *stretches: Stretch) -> None:
    """The points of `stretches` as blocks (each stretch as `write` takes it, no two points
    of a series at one time), joined: a series' points of all of them in one stretch. A
    single stretch with points is written as it is, unsorted."""
    held = [stretch for stretch in stretches if len(stretch[0])]
    if len(held) <= 1:
        write(db, *(held[0] if held else stretches[0]))
        return
    sid, ts, values = (np.concatenate([stretch[n] for stretch in held]) for n in range(3))
    order = np.lexsort((ts, sid))
    write(db, sid[order], ts[order], values[order])


def _insert(db: duckdb.DuckDBPyConnection, sid: npt.NDArray[np.integer[Any]],
            firsts: npt.NDArray[np.int64], lasts: npt.NDArray[np.int64],
            counts: npt.NDArray[np.int64], words: npt.NDArray[np.uint64],
            word_offsets: npt.NDArray[np.int64]) -> None:
    if len(sid) <= FEW_SERIES:  # parameters: DuckDB plans a registered table at some 1 ms
        rows = ", ".join(["(?, ?, ?, ?, ?)"] * len(sid))
        db.execute(f"INSERT INTO blocks VALUES {rows}", [
            value for b in range(len(sid)) for value in (
                int(sid[b]), int(firsts[b]), int(lasts[b]), int(counts[b]),
                words[word_offsets[b]:word_offsets[b + 1]])])
        return
    import pyarrow as pa

    data = pa.LargeListArray.from_arrays(pa.array(np.asarray(word_offsets, np.int64)),
                                         pa.array(words))
    _insert_table(db, pa.table({
        "sid": pa.array(np.asarray(sid, np.int32)), "first": pa.array(firsts),
        "last": pa.array(lasts), "count": pa.array(np.asarray(counts, np.int32)),
        "data": data}))


def _insert_table(db: duckdb.DuckDBPyConnection, blocks: Any, table: str = "blocks") -> None:
    """Block rows of an Arrow table (sid, first, last, count, data) into the blocks table."""
    db.register("fresh_blocks", blocks)
    try:
        db.execute(f"INSERT INTO {table} SELECT sid, first, last, count, data FROM fresh_blocks")
    finally:
        db.unregister("fresh_blocks")


def read(db: duckdb.DuckDBPyConnection, where: str, params: list[Any], start: int,
         end: int, source: str = "blocks") -> list[Blocks]:
    """The blocks of the series `where` selects (SQL on `sid`, its parameters from $3) that may
    hold points in [start, end), to be read in that window; `source`: the blocks table (of
    another database attached)."""
    found = db.sql(f"SELECT sid, first, last, count, data FROM {source} WHERE {where} "
                   f"AND last >= $1 AND first < $2", params=[start, end, *params]
                   ).to_arrow_table()
    return [_blocks(batch, start, end) for batch in found.to_batches() if batch.num_rows]


def _blocks(batch: Any, start: int, end: int) -> Blocks:
    """An Arrow batch of block rows as Blocks, the words where Arrow holds them."""
    column = batch.column(4)
    return Blocks(batch.column(0).to_numpy().astype(np.int64), batch.column(1).to_numpy(),
                  batch.column(2).to_numpy(), batch.column(3).to_numpy().astype(np.int64),
                  column.offsets.to_numpy()[:-1].astype(np.int64),
                  column.values.to_numpy(), start, end)


def cut(db: duckdb.DuckDBPyConnection, ids: npt.NDArray[np.integer[Any]], start: int,
        end: int) -> int:
    """Take the points in [start, end) of the series `ids` out of their blocks: a block
    inside the window is dropped, one across its edge written again without them. Returns
    how many points went. Whole blocks go in one statement, never decoded: retention drops
    a day of blocks as cheaply as a row each."""
    if not len(ids):
        return 0
    with _touching(db, ids) as (series, params):
        inside = db.execute(f"DELETE FROM blocks WHERE {series} AND first >= ? AND last < ? "
                            f"RETURNING count", [*params, start, end]).fetchall()
    removed, kept = _taken_out(db, ids, start, end - 1,
                               lambda sid, stamps: (stamps >= start) & (stamps < end))
    write_joined(db, kept)
    return sum(int(count) for (count,) in inside) + removed


def replace_points(db: duckdb.DuckDBPyConnection, sid: npt.NDArray[np.integer[Any]],
                   ts: npt.NDArray[np.int64]) -> Stretch:
    """Take the points at (sid[i], ts[i]) out of their blocks, before a write puts new ones
    there (the last write wins). The blocks they were in are dropped; their other points
    come back (series ids, times, values) for the caller to write with its own
    (`write_joined`), in one statement and fewer blocks."""
    if not len(sid):
        return _nothing()
    order = np.lexsort((ts, sid))
    sid, ts = sid[order], ts[order]

    def doomed(held: npt.NDArray[np.int32], stamps: npt.NDArray[np.int64]
               ) -> npt.NDArray[np.bool_]:
        found = np.zeros(len(stamps), dtype=bool)
        for series in np.unique(held).tolist():  # a few series: a write's, in one block each
            mine = held == series
            found[mine] = _among(
                ts[np.searchsorted(sid, series):np.searchsorted(sid, series, "right")],
                stamps[mine])
        return found

    return _taken_out(db, np.unique(sid), int(ts.min()), int(ts.max()), doomed)[1]


def held_in_blocks(db: duckdb.DuckDBPyConnection, sid: npt.NDArray[np.integer[Any]],
                   ts: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Which of the points (sid[i], ts[i]) are at a time a block of their series holds a point
    at: those a write replaces there (`replace_points`). The blocks are read, not changed."""
    held = np.zeros(len(sid), dtype=bool)
    if not len(sid):
        return held
    with _touching(db, np.unique(sid)) as (series, params):
        rows = db.sql(f"SELECT sid, first, last, count, data FROM blocks WHERE {series} "
                      f"AND last >= ? AND first <= ?",
                      params=[*params, int(ts.min()), int(ts.max())]).to_arrow_table()
    order = np.lexsort((ts, sid))
    sid, ts = sid[order], ts[order]
    for batch in rows.to_batches():
        if not batch.num_rows:
            continue
        blocks = _blocks(batch, INT64_MIN, INT64_MAX)
        _, stamps, _ = blocks.decoded()  # block after block, each in time order
        ends = np.cumsum(blocks.counts)
        for block, (series, end) in enumerate(zip(blocks.ids.tolist(), ends.tolist(),
                                                   strict=True)):
            low, high = np.searchsorted(sid, series), np.searchsorted(sid, series, "right")
            if low == high:
                continue
            held[order[low:high]] |= _among(stamps[end - int(blocks.counts[block]):end],
                                            ts[low:high])
    return held


def _among(times: npt.NDArray[np.int64], stamps: npt.NDArray[np.int64]
           ) -> npt.NDArray[np.bool_]:
    """Which of `stamps` are among `times` (sorted)."""
    if not len(times):
        return np.zeros(len(stamps), dtype=bool)
    at = np.minimum(np.searchsorted(times, stamps), len(times) - 1)
    return np.asarray(times[at] == stamps)


Doomed = Callable[[npt.NDArray[np.int32], npt.NDArray[np.int64]], npt.NDArray[np.bool_]]


def _taken_out(db: duckdb.DuckDBPyConnection, ids: npt.NDArray[np.integer[Any]], low: int,
               high: int, doomed: Doomed) -> tuple[int, Stretch]:
    """Every block of `ids` that may hold points in [low, high] dropped (one statement) and
    decoded (one call): how many of their points `doomed(sids, stamps)` marks, and the
    others, to be written again."""
    with _touching(db, ids) as (series, params):
        # `sql` runs a DELETE at once, and its relation holds what RETURNING gave
        rows = db.sql(f"DELETE FROM blocks WHERE {series} AND last >= ? AND first <= ? "
                      f"RETURNING sid, first, last, count, data",
                      params=[*params, low, high]).to_arrow_table()
    if not rows.num_rows:
        return 0, _nothing()
    # every point of theirs, whatever its time
    decoded = [_blocks(batch, INT64_MIN, INT64_MAX).decoded() for batch in rows.to_batches()
               if batch.num_rows]
    ids_of, stamps, values = (np.concatenate([part[n] for part in decoded]) for n in range(3))
    sid = ids_of.astype(np.int32)
    keep = ~doomed(sid, stamps)
    order = np.lexsort((stamps[keep], sid[keep]))  # the blocks came in any order
    return len(keep) - int(keep.sum()), (sid[keep][order], stamps[keep][order],
                                         values[keep][order])


def _nothing() -> Stretch:
    return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0)


@contextmanager
def _touching(db: duckdb.DuckDBPyConnection, ids: npt.NDArray[np.integer[Any]]
              ) -> Iterator[tuple[str, list[int]]]:
    """A condition on `sid` for the series `ids` in the statements inside, and its
    parameters: a list of values for a few (DuckDB plans a join with a table of them at some
    2 ms, a list at 0.6), else the table `touched`."""
    if len(ids) <= FEW_SERIES:
        yield f"sid IN ({', '.join('?' * len(ids))})", [int(i) for i in ids]
        return
    db.register("touched", _ids_frame(ids))
    try:
        yield "sid IN (SELECT sid FROM touched)", []
    finally:
        db.unregister("touched")


def _ids_frame(ids: npt.NDArray[np.integer[Any]]) -> Any:
    import pyarrow as pa

    return pa.table({"sid": pa.array(np.asarray(ids, np.int32))})


def fold(db: duckdb.DuckDBPyConnection, origin: str) -> None:
    """Every numeric point of the database `origin` (its rows of `points` and its blocks) into
    blocks of the current database, a share of the series at a time: what compaction does."""
    sizes = db.execute(
        f"SELECT sid, sum(n) FROM (SELECT sid, count(*) AS n FROM {origin}.points GROUP BY sid "
        f"UNION ALL SELECT sid, sum(count) AS n FROM {origin}.blocks GROUP BY sid) "
        f"GROUP BY sid ORDER BY sid").fetchall()
    if not sizes:
        return
    ids = np.array([sid for sid, _ in sizes], np.int64)
    ends = np.cumsum([int(n) for _, n in sizes])
    share = 0
    while share < len(ids):
        # series up to FOLD_POINTS points at a time (at least one series)
        last = max(share, int(np.searchsorted(ends, (ends[share - 1] if share else 0) +
                                              FOLD_POINTS, side="right")) - 1)
        low, high = int(ids[share]), int(ids[last])
        rows = db.sql(f"SELECT sid, ts, value FROM {origin}.points WHERE sid BETWEEN $1 "
                      f"AND $2", params=[low, high]).to_arrow_table()
        columns = [rows.column(n).to_numpy() for n in range(3)]
        for blocks in read(db, "sid BETWEEN $3 AND $4", [low, high], INT64_MIN, INT64_MAX,
                           f"{origin}.blocks"):
            columns = [np.concatenate((a, b)) for a, b in zip(columns, blocks.decoded(),
                                                              strict=True)]
        sid, ts, values = columns
        order = np.lexsort((ts, sid))
        write(db, sid[order], ts[order], np.asarray(values[order], np.float64))
        share = last + 1


def fold_rows(db: duckdb.DuckDBPyConnection, ids: npt.NDArray[np.integer[Any]]) -> int:
    """The rows of `points` of the series `ids` folded into blocks, with the points of the
    blocks they fall among (those blocks are written again): the store's background
    compaction, a few series at a time in a transaction of its own. Returns how many rows
    went."""
    if not len(ids):
        return 0
    with _touching(db, ids) as (series, params):
        found = db.sql(f"SELECT sid, ts, value FROM points WHERE {series}",
                       params=params).to_arrow_table()
        if not found.num_rows:
            return 0
        db.execute(f"DELETE FROM points WHERE {series}", params)
    sid, ts, values = (np.asarray(found.column(n).to_numpy()) for n in range(3))
    _, kept = _taken_out(db, np.unique(sid), int(ts.min()), int(ts.max()),
                         lambda held, stamps: np.zeros(len(stamps), dtype=bool))
    write_joined(db, kept, (sid.astype(np.int32), ts.astype(np.int64),
                            values.astype(np.float64)))
    return int(found.num_rows)


def in_blocks(sid: npt.NDArray[np.integer[Any]], ts: npt.NDArray[np.int64]
              ) -> npt.NDArray[np.bool_]:
    """Which points of a write into the past go to blocks (`write` takes them as they are):
    those of a series whose points come together, BLOCK_FROM or more, each later than the
    one before, as a SeriesSet holds them; the others go to rows."""
    if len(sid) < BLOCK_FROM:
        return np.zeros(len(sid), dtype=bool)
    change = sid[1:] != sid[:-1]
    starts = np.flatnonzero(np.concatenate(([True], change)))
    lengths = np.diff(np.append(starts, len(sid)))
    chosen = lengths >= BLOCK_FROM
    falling = np.flatnonzero(~change & (ts[1:] <= ts[:-1]))  # within a stretch of a series
    chosen[np.searchsorted(starts, falling, side="right") - 1] = False
    found, stretches = np.unique(sid[starts], return_counts=True)
    if (stretches > 1).any():  # a series in two stretches: its blocks could share a time
        chosen &= ~np.isin(sid[starts], found[stretches > 1])
    return np.repeat(chosen, lengths)


def upgrade(db: duckdb.DuckDBPyConnection) -> int:
    """A store written before blocks were lists of words (a BLOB each, the same words) gets its
    blocks table rewritten as lists, in one transaction, UPGRADE_ROWS blocks at a time; how
    many blocks were. Arrow reads the BLOBs' bytes as the lists' words: one copy of them,
    which aligns them."""
    found = db.execute("SELECT data_type FROM duckdb_columns() WHERE database_name = "
                       "current_database() AND schema_name = current_schema() AND "
                       "table_name = 'blocks' AND column_name = 'data'").fetchone()
    if found is None or found[0] != "BLOB":
        return 0
    import pyarrow as pa

    db.execute("BEGIN TRANSACTION")
    try:
        db.execute(_schema("upgraded_blocks"))
        (last,), = db.execute("SELECT coalesce(max(rowid), -1) FROM blocks").fetchall()
        upper, copied = int(last) + 1, 0
        for low in range(0, upper, UPGRADE_ROWS):
            old = db.sql("SELECT sid, first, last, count, data FROM blocks WHERE rowid >= $1 "
                         "AND rowid < $2", params=[low, low + UPGRADE_ROWS]).to_arrow_table()
            for batch in old.to_batches():
                if batch.num_rows:
                    _insert_table(db, pa.table({**{name: batch.column(name) for name in
                                                   ("sid", "first", "last", "count")},
                                                "data": _as_words(batch.column("data"))}),
                                  "upgraded_blocks")
                    copied += batch.num_rows
        db.execute("DROP TABLE blocks")
        db.execute("ALTER TABLE upgraded_blocks RENAME TO blocks")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return copied


# Blocks an upgrade copies at a time: some 100 MB of them at most (a block is up to 16,384
# points), where the whole table at once would be the store's size in memory
UPGRADE_ROWS = 8192


def _as_words(blobs: Any) -> Any:
    """Binary values holding 64-bit words as lists of them."""
    import pyarrow as pa

    _, offsets_buffer, data_buffer = blobs.buffers()
    kind = np.int64 if pa.types.is_large_binary(blobs.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, kind)[blobs.offset:blobs.offset + len(blobs) + 1]
    raw = np.frombuffer(data_buffer, np.uint8)[int(offsets[0]):int(offsets[-1])].copy()
    return pa.LargeListArray.from_arrays(
        pa.array(((offsets - offsets[0]) // WORD).astype(np.int64)), pa.array(raw.view(np.uint64)))
