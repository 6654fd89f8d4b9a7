"""The embedded store: time series in one DuckDB file, nothing to install or start.

Tables: `series` (id, name, labels as canonical JSON, kind) and the points, `points` (series
id, ts, value DOUBLE) and `text_points` for string values. A series holds one point per
timestamp, the last written: the store remembers each series' newest timestamp, so a write that
only adds newer points (the usual case for metrics) is a plain append, and a write that reaches
back first deletes the points it replaces (a primary-key index made every write four times
slower). The series table lives in memory too, indexed by name and label (`seriesindex`):
selectors are matched there, and only the points of matching series are read, as numpy arrays
straight from DuckDB (no rows in Python). A write keeps a list of the series it adds, so a
failed one forgets them and its cost does not grow with the series stored. Every user value
reaches SQL as a bound parameter or a registered array, never as SQL text.

A write is acknowledged once committed, and DuckDB syncs its log at every commit, so it survives
`kill -9`; a log whose end a crash damaged is cut back to its last whole record (`_connect`).
`compact` rewrites the file in (series, time) order, at about half the bytes (docs/store.md); the
service's store does it as it opens, once the store has doubled since it last did.

One writer at a time (a lock), many readers (a DuckDB cursor per call). DuckDB lets one process
open a file for writing, so worker processes reach the store through the service.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import duckdb
import numpy as np
import numpy.typing as npt
import orjson

from tsq import explain
from tsq.collector import collector_paused
from tsq.connectors import blockstore
from tsq.connectors.base import Capabilities, label_values
from tsq.connectors.blockcache import OPEN_END, BlockCache
from tsq.connectors.duckcursors import Cursors
from tsq.connectors.head import Head, merges_loaded
from tsq.connectors.headlog import Deletion, HeadLog, Writing, synced
from tsq.connectors.pastbuffer import PAST_POINTS, Flush, PastBuffer, Written
from tsq.connectors.seriesindex import Entry, SeriesIndex
from tsq.errors import ConfigError, Conflict
from tsq.hostcalls import numbers_only
from tsq.isotime import format_ms
from tsq.kernels import (
    Aggregator,
    Blocks,
    Buckets,
    Fill,
    Grouping,
    Points,
    bucketize,
    bucketize_groups,
    bucketize_parts,
    points_of,
)
from tsq.selector import Selector
from tsq.series import SeriesSet

__all__ = ["HEAD_SPAN", "HEAD_SUFFIX", "PAST_SUFFIX", "STORE_FILE", "WAL_SUFFIX", "Compacted",
           "EmbeddedStore", "compact", "compact_if_grown"]

log = logging.getLogger(__name__)

Ints = npt.NDArray[np.int64]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NUMERIC_KINDS = ("double", "long", "bool")
KIND_OF_DTYPE = {"f": "double", "i": "long", "u": "long", "b": "bool", "O": "text",
                 "U": "text"}
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
    "labels VARCHAR NOT NULL, kind VARCHAR NOT NULL, UNIQUE (name, labels))",
    "CREATE TABLE IF NOT EXISTS points (sid INTEGER NOT NULL, ts BIGINT NOT NULL, "
    "value DOUBLE)",
    "CREATE TABLE IF NOT EXISTS text_points (sid INTEGER NOT NULL, ts BIGINT NOT NULL, "
    "value VARCHAR)",
    # where the head begins: `points` holds nothing at or after it (connectors/head.py)
    "CREATE TABLE IF NOT EXISTS head (start BIGINT NOT NULL)",
    blockstore.SCHEMA,
)
STORE_FILE = "points.duckdb"  # in the data directory
WAL_SUFFIX = ".wal"  # DuckDB's write-ahead log: the store file's name and this, beside it
HEAD_SUFFIX = ".head"  # the head's log (connectors/headlog.py): a folder, named so, beside it
PAST_SUFFIX = ".past"  # the log of the points behind the head not yet in the table, likewise
# The span of time the head keeps in memory: a write moves the points older than this into the
# table once the head holds half as much again (so a move takes an hour of points at a time)
HEAD_SPAN = 2 * 3600 * 10**9
# The most points the head keeps, whatever their times (20 bytes each)
HEAD_POINTS = 20_000_000
# Bytes of blocks of recent reads kept in memory (store_cache_mb): a day of 1,000 series every
# 10 s is 11 MB of them
CACHE_BYTES = 256 << 20
# Where DuckDB's replay found a record whose checksum fails: the records before it are whole
CORRUPT_AT = re.compile(r"Corrupt WAL file: entry at byte position (\d+)")
# Series a read names in a list: the row groups whose ids lie outside are skipped unread, where
# a join scans the whole table (a few ms a million rows); more are joined, from a frame
FEW_SERIES = 64
# A read of more series scans their id range when at least a quarter of it is wanted
DENSE_FRACTION = 4
# Rows a read takes from DuckDB at a time, as one Arrow batch: a part of the read
READ_BATCH = 1 << 20
RUN_PROBE = 4096  # the first rows of a batch that tell whether it comes in runs of a series
MATCHES_KEPT = 256  # selectors whose matching series are kept, oldest dropped first
# Rows written to the table (a few points of each series a write, behind the head) from which
# the store folds them into blocks in the background, FOLD_SERIES series a transaction
FOLD_FROM = 1 << 20
FOLD_SERIES = 1024
TABLE_OF_KIND = {"double": "points", "long": "points", "bool": "points", "text": "text_points"}


class EmbeddedStore:
    capabilities = Capabilities(sampling=True, grouping=True, prepares=True)

    @classmethod
    def open(cls, config: Mapping[str, Any], data_dir: Path) -> EmbeddedStore:
        """`type: embedded` in a loop file: the store in the data directory, compacted first
        when it has doubled since it last was (`compact_if_grown`)."""
        path = data_dir / STORE_FILE
        compact_if_grown(path)
        minutes = config.get("head_minutes")  # the service's store_head_minutes setting
        past = config.get("past_points")  # and its store_past_points
        cache = config.get("cache_mb")  # and its store_cache_mb
        return cls(path, HEAD_SPAN if minutes is None else int(minutes) * 60 * 10**9,
                   past_points=None if past is None else int(past),
                   cache_bytes=CACHE_BYTES if cache is None else int(cache) << 20)

    def __init__(self, path: str | Path, head_span: int = HEAD_SPAN,
                 clock: Callable[[], int] = time.time_ns, past_points: int | None = None,
                 cache_bytes: int = CACHE_BYTES) -> None:
        """`clock` gives the time in epoch nanoseconds: the head keeps `head_span` before it.
        `past_points`: points behind the head held back (`connectors/pastbuffer.py`; None:
        PAST_POINTS); `cache_bytes`: the blocks of recent reads kept in memory
        (`connectors/blockcache.py`; 0: none)."""
        self._past_points = PAST_POINTS if past_points is None else past_points
        self._block_cache = BlockCache(cache_bytes)
        self._db = _connect(str(path))
        self._cursors = Cursors(self._db, STORE_DATABASE)
        self._wal = None if str(path) == ":memory:" else Path(f"{path}{WAL_SUFFIX}")
        self._write_lock = threading.Lock()
        self._unfolded = 0  # rows written to the table since it was last folded
        self._folder: threading.Thread | None = None
        self._fold_lock = threading.Lock()
        self._closing = threading.Event()
        self._span, self._clock = head_span, clock
        for statement in SCHEMA:
            self._db.execute(statement)
        blockstore.upgrade(self._db)
        self._series = SeriesIndex()
        self._matched: dict[Selector, tuple[int, list[Entry]]] = {}  # `_matching`'s answers
        self._matched_lock = threading.Lock()
        stored = {sid: (newest, bool(rows), bool(blocks)) for sid, newest, rows, blocks in
                  self._db.execute(
            "SELECT sid, max(ts), bool_or(row), bool_or(NOT row) FROM ("
            "SELECT sid, ts, true AS row FROM points UNION ALL "
            "SELECT sid, ts, true FROM text_points UNION ALL "
            "SELECT sid, last, false FROM blocks) GROUP BY sid").fetchall()}
        rows = self._db.execute("SELECT id, name, labels, kind FROM series").fetchall()
        with collector_paused():
            self._series.extend(Entry(sid, name, orjson.loads(labels), kind, labels,
                                      *stored.get(sid, (None, False, False)))
                                for sid, name, labels, kind in rows)
        self._next_id = max((row[0] for row in rows), default=0)
        self._head = Head(self._head_start())
        in_memory = str(path) == ":memory:"
        self._log = None if in_memory else HeadLog(Path(f"{path}{HEAD_SUFFIX}"))
        self._past = PastBuffer()
        self._flush: Flush | None = None  # a full buffer of the past a thread writes
        # a write's log records are synced here while its points go into memory
        self._syncer = ThreadPoolExecutor(1, thread_name_prefix="tsq-store-sync")
        self._past_log = None if in_memory else HeadLog(Path(f"{path}{PAST_SUFFIX}"))
        if self._log is not None and self._past_log is not None:
            self._replay(self._log, self._past_log, rows)

    def _head_start(self) -> int:
        """Where the head begins, as stored; in a store that has none yet, `head_span` before
        now, or after the newest point the table holds if that is later."""
        found = self._db.execute("SELECT max(start) FROM head").fetchone()
        if found is not None and found[0] is not None:
            return int(found[0])
        newest = self._db.execute("SELECT greatest((SELECT max(ts) FROM points), "
                                  "(SELECT max(last) FROM blocks))").fetchone()
        start = self._clock() - self._span
        if newest is not None and newest[0] is not None:
            start = max(start, int(newest[0]) + 1)
        self._db.execute("INSERT INTO head VALUES (?)", [start])
        return start

    def _replay(self, headlog: HeadLog, past_log: HeadLog, rows: list[tuple[Any, ...]]
                ) -> None:
        """Rebuild the head from its log, and write the past's log into the table. A write
        naming a series the table does not hold is one whose transaction never committed
        (the process died between the two): skipped."""
        known = np.zeros(self._next_id + 2, dtype=bool)
        known[[sid for sid, _, _, kind in rows if kind in NUMERIC_KINDS]] = True
        for record in past_log.replay():
            if isinstance(record, Writing) and known[np.clip(record.sid, 0,
                                                              len(known) - 1)].all():
                self._past.add(record.sid, record.ts, record.value)
        self._write_behind()
        for record in headlog.replay():
            start = self._head.state.start
            if isinstance(record, Deletion):
                self._head.delete(record.sid, max(record.start, start), record.end)
                continue
            if not known[np.clip(record.sid, 0, len(known) - 1)].all():
                continue
            keep = record.ts >= start
            self._head.append(record.sid[keep], record.ts[keep], record.value[keep])

    def close(self) -> None:
        self._closing.set()
        with self._fold_lock:
            folder = self._folder
        if folder is not None:
            folder.join()  # it stops after the share it is folding
        try:
            with self._write_lock:
                self._write_behind()
        except Exception:  # kept in its log: the next open writes it
            log.exception("could not write the buffer of the past into the embedded store")
        self._syncer.shutdown()
        for log_ in (self._log, self._past_log):
            if log_ is not None:
                log_.close()
        self._cursors.close()
        self._db.close()

    def cache_counts(self) -> dict[str, int]:
        """The blocks of recent reads kept (`connectors/blockcache.py`): their bytes, and how
        many reads of the past took them from memory and how many asked the table."""
        cache = self._block_cache
        return {"bytes": cache.size, "hits": cache.hits, "misses": cache.misses}

    # -- reading ---------------------------------------------------------------------------

    def select(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> SeriesSet:
        matching = self._reading(selector, start, end)
        if not matching:
            return SeriesSet.empty()
        return _grouped(matching, *self._columns(matching, start, end))

    def select_sampled(self, selector: Selector, start: int | None, end: int | None,
                       buckets: Buckets, aggregator: Aggregator,
                       fills: Sequence[Fill] = ()) -> SeriesSet:
        """`select` then bucketize, here: the caller gets the buckets, not the raw points.
        Where the aggregator allows (`bucketize_parts`), the points are bucketed in the order
        the table and the head's chunks hold them, never joined or grouped by series."""
        return self._sampled(selector, start, end, buckets, aggregator, fills, None)

    def select_grouped(self, selector: Selector, start: int | None, end: int | None,
                       buckets: Buckets, aggregator: Aggregator, fills: Sequence[Fill],
                       group: Grouping) -> SeriesSet:
        """`select_sampled` then `group.apply`; a large read's groups come from its dense
        cells (`bucketize_groups`), without making each series' buckets."""
        return self._sampled(selector, start, end, buckets, aggregator, fills, group)

    def _sampled(self, selector: Selector, start: int | None, end: int | None,
                 buckets: Buckets, aggregator: Aggregator, fills: Sequence[Fill],
                 group: Grouping | None) -> SeriesSet:
        matching = self._reading(selector, start, end)
        found = None
        if matching:
            rank_of, parts = self._parts(matching, start, end)
            if all(s.kind in NUMERIC_KINDS for s in matching):
                heads = SeriesSet(*_heads(matching), np.zeros(0, np.int64), np.zeros(0),
                                  np.zeros(len(matching) + 1, np.int64))
                if group is not None:
                    grouped = bucketize_groups(heads, parts, buckets, aggregator, fills,
                                               rank_of, group)
                    if grouped is not None:
                        done: SeriesSet = grouped
                        explain.note("embedded store", lambda: f"bucketed by "
                                     f"{buckets.span / 10**9:g} s, {aggregator.name}, and "
                                     f"{_grouped_step(group, done)} (dense cells)")
                        return done
                found = bucketize_parts(heads, parts, buckets, aggregator, fills, rank_of)
            if found is None:
                found = bucketize(numbers_only(_grouped(matching, *_joined_parts(rank_of, parts)),
                                               "sampleBy"), buckets, aggregator, fills)
        else:
            found = SeriesSet.empty()
        explain.note("embedded store", lambda: f"bucketed by {buckets.span / 10**9:g} s, "
                                               f"{aggregator.name}: {found.points} buckets")
        if group is None:
            return found
        grouped = group.apply(found)
        explain.note("embedded store", lambda: _grouped_step(group, grouped))
        return grouped

    def _reading(self, selector: Selector, start: int | None, end: int | None) -> list[Entry]:
        """The series `selector` matches, noted in the plan as read."""
        matching = self._matching(selector)
        explain.note("embedded store", lambda: f"read {len(matching)} series of {selector} in "
                                               f"{_span(start, end)}")
        return matching

    def _columns(self, matching: list[Entry], start: int | None, end: int | None
                 ) -> tuple[npt.NDArray[np.integer[Any]], npt.NDArray[np.int64],
                            npt.NDArray[Any]]:
        """The points of `matching` in [start, end) as the table and the head hold them: the
        rank in `matching` of each point's series, its time and its value."""
        return _joined_parts(*self._parts(matching, start, end))

    def _parts(self, matching: list[Entry], start: int | None, end: int | None
               ) -> tuple[npt.NDArray[np.integer[Any]], list[Points | Blocks]]:
        """The points of `matching` in [start, end), unjoined: a part per table read, per
        batch of the table's blocks and per chunk of the head (series ids, times, values), and
        the table from a series id to its rank in `matching`."""
        head = self._head.state  # before the table: a move then adds only what this holds
        parts: list[Points | Blocks] = []
        for table in sorted({TABLE_OF_KIND[s.kind] for s in matching}):
            ids = np.array([s.id for s in matching if TABLE_OF_KIND[s.kind] == table], np.int64)
            if table == "points" and _high(end) > head.start:
                chunks = [Points(*part, runs=True) for part in head.read(
                    np.sort(ids).astype(np.int32), _low(start), _high(end))]
                _note_head(chunks)
                parts.extend(chunks)
            if table != "points" or _low(start) < head.start:
                if table == "points":
                    self._behind_written(ids)
                parts.extend(self._read(
                    table, [s for s in matching if TABLE_OF_KIND[s.kind] == table], start,
                    min(_high(end), head.start) if table == "points" else end,
                    all(s.kind in NUMERIC_KINDS for s in matching)))
        every = [s.id for s in matching]
        # numpy radix-sorts 16-bit integers: the ranks take that type when they fit in it
        rank_of: npt.NDArray[np.integer[Any]] = np.zeros(
            max(every) + 1, dtype=np.int16 if len(every) < 2**15 else np.int64)
        rank_of[every] = np.arange(len(every))
        return rank_of, parts

    def _read(self, table: str, entries: list[Entry], start: int | None, end: int | None,
              numeric: bool) -> list[Points | Blocks]:
        """The points of the series `entries` in [start, end): the rows in the order the scan
        gives them (mostly insertion order, so mostly time order per series), a part per
        batch of rows as DuckDB hands them to Arrow: numpy views of the batches, never copied
        or joined (fetchnumpy gathered the day's 8.64 M rows in 266 ms, the batches come in
        51); and, of `points`, the blocks that hold points there (connectors/blockstore.py),
        decoded by whoever reads them. `numeric`: every series read holds numbers; else the
        values come as objects.

        Rows and blocks are read in one snapshot (a transaction): a write that moves a point
        from a block to a row (an overwrite) commits between two statements, never inside
        one. Where the series have only rows, or only blocks (`_stored_in`), one statement is
        its own snapshot: the other is not read, and no transaction is begun (each statement
        costs DuckDB a millisecond or more). A write notes where its series' points go before
        it commits; so if, after the statement, the series may have points in the other too,
        that write committed before the statement began, and the read is made again, both in
        one transaction."""
        ids = np.array([s.id for s in entries], np.int64)
        stored = _stored_in(table, entries)
        parts = self._snapshot(table, ids, start, end, numeric, stored)
        if stored != (True, True) and _stored_in(table, entries) != stored:
            parts = self._snapshot(table, ids, start, end, numeric, (True, True))
        return [part for part in parts if _holds(part)]

    def _snapshot(self, table: str, ids: npt.NDArray[np.int64], start: int | None,
                  end: int | None, numeric: bool, stored: tuple[bool, bool]
                  ) -> list[Points | Blocks]:
        """The rows (`stored[0]`) and the blocks (`stored[1]`) of the series `ids` in [start,
        end), in one snapshot (`_read`)."""
        rows, blocks = stored
        if not rows and not blocks:
            return []
        low_ts, high_ts = _low(start), _high(end)
        cached = not rows and table == "points"  # the blocks alone: as a read kept has them
        if cached:
            kept = self._block_cache.found(ids, low_ts, high_ts)
            if kept is not None:
                return list(kept)
            generation = self._block_cache.generation
            # no block holds a point from the head's start on: a read up to there holds every
            # block after its start (a move of the head is a transaction: a new generation)
            reach = OPEN_END if high_ts >= self._head.state.start else high_ts
        both = rows and blocks
        with self._cursors.borrowed() as cursor:
            if both:
                cursor.begin()
            where, params, wanted = _where(cursor, ids)
            parts: list[Points | Blocks] = []
            if rows:
                found = cursor.sql(f"SELECT sid, ts, value FROM {table} WHERE {where} "
                                   f"AND ts >= $1 AND ts < $2", params=[low_ts, high_ts, *params])
                parts.extend(_part(batch, numeric) for batch in found.to_arrow_reader(READ_BATCH))
            if blocks:
                parts.extend(blockstore.read(cursor, where, params, low_ts, high_ts))
            if both:
                cursor.commit()
            cursor.unregister(WANTED)  # if `_where` made it: the kept cursor lets it go
        if wanted is not None:
            low = int(ids.min())
            parts = [_kept(part, wanted[part.ids - low]) for part in parts]
        if cached:
            self._block_cache.keep(ids, generation, low_ts, reach,
                                   [part for part in parts if isinstance(part, Blocks)])
        return parts

    def describe(self, selector: Selector) -> list[tuple[str, dict[str, str]]]:
        """The matching series, without their points: (name, labels), in `select`'s order."""
        return [(s.name, dict(s.labels)) for s in self._matching(selector)]

    def names(self) -> list[str]:
        return self._series.names()

    def labels(self, selector: Selector | None = None) -> dict[str, list[str]]:
        if selector is None:
            return self._series.label_values()
        return label_values((s.name, s.labels) for s in self._series.matching(selector))

    def _matching(self, selector: Selector) -> list[Entry]:
        """The matching series, sorted by name then labels: the order of `select`. A scheduled
        loop asks the same selector again and again, and sorting 10,000 series costs 8 ms: the
        answer is kept until a series is added or removed."""
        version = self._series.version  # before matching: a series added meanwhile renews it
        kept = self._matched.get(selector)
        if kept is not None and kept[0] == version:
            return list(kept[1])
        found = sorted(self._series.matching(selector), key=lambda s: (s.name, s.key))
        with self._matched_lock:
            if len(self._matched) >= MATCHES_KEPT:
                del self._matched[next(iter(self._matched))]
            self._matched[selector] = (version, found)
        return list(found)

    # -- writing ---------------------------------------------------------------------------

    def write(self, series: SeriesSet) -> int:
        """Store the points: numbers from the head's start on in the head, numbers before it
        in the buffer of the past (`connectors/pastbuffer.py`), each logged first; text in
        the table, in a transaction."""
        return self.write_prepared(self.prepare(series))

    def prepare(self, series: SeriesSet) -> PreparedWrite:
        """`write`'s lookups, made without its lock: a server's parsing thread makes them while
        the write before is stored (tsq.linewrites)."""
        version = self._series.version  # before looking up: a change meanwhile renews it
        keys = [_canonical(labels) for labels in series.labels]
        numeric = KIND_OF_DTYPE.get(series.values.dtype.kind) in NUMERIC_KINDS
        found = [self._series.get(name, key) for name, key in zip(series.names, keys, strict=True)]
        # one holding the other kind of values is left to the write, which says so
        usable = [entry if entry is not None and (entry.kind in NUMERIC_KINDS) == numeric
                  else None for entry in found]
        return PreparedWrite(series, self._series, version, keys, usable,
                             all(entry is not None for entry in usable))

    def write_prepared(self, prepared: PreparedWrite) -> int:
        """`write` of `prepared.series`."""
        series = prepared.series
        if series.points == 0:
            return 0
        kind = KIND_OF_DTYPE.get(series.values.dtype.kind)
        if kind is None:
            raise Conflict(f"cannot store values of type {series.values.dtype}")
        table = TABLE_OF_KIND[kind]
        counts = np.diff(series.offsets)
        ts = series.timestamps
        with self._write_lock:
            self._move_if_due()
            start = self._head.state.start
            recent = ts >= start if table == "points" else np.zeros(len(ts), dtype=bool)
            behind = ~recent if table == "points" and self._past_log is not None else \
                np.zeros(len(ts), dtype=bool)
            direct = ~recent & ~behind  # into the table now: text, or a store in memory
            created: list[Entry] = []
            logged: list[tuple[HeadLog, int]] = []
            syncing: Future[None] | None = None
            try:
                known = self._entries(prepared, kind, created)
                sid = np.repeat(np.array([k.id for k in known], dtype=np.int32), counts)
                if direct.any():
                    blocked = blockstore.in_blocks(sid[direct], ts[direct]) \
                        if table == "points" else np.zeros(int(direct.sum()), dtype=bool)
                records = [(log_, Writing(sid[part], ts[part], _numbers(series.values[part])))
                           for log_, part in ((self._log, recent), (self._past_log, behind))
                           if log_ is not None and part.any()]
                if created or direct.any():  # the table too: the log records inside
                    self._settle()
                    with self._transaction() as db:
                        _insert_series(db, created)
                        logged.extend((log_, log_.append(r)) for log_, r in records)
                        if direct.any():
                            over_rows, over_blocks = _replacing(known, counts, ts)
                            blocked = _write_past(db, table, known, sid[direct], ts[direct],
                                                  series.values[direct], blocked,
                                                  over_rows[direct], over_blocks[direct])
                else:  # the logs alone, synced while the points go into memory (below)
                    logged.extend((log_, log_.written(r)) for log_, r in records)
                    syncing = self._syncer.submit(_synced, [log_ for log_, _ in logged])
            except BaseException:
                for log_, mark in logged:
                    log_.undo(mark)
                self._forget(created)
                raise
            self._into_memory(sid, ts, series.values, recent, behind, syncing, logged)
            if self._past.points >= self._past_points:
                # at once where the store keeps no buffer (`past_points` 0)
                self._write_behind_soon() if self._past_points else self._write_behind_logged()
            if direct.any():
                self._wrote_past(Written(known, counts, np.where(direct, ts, INT64_MIN),
                                         series.offsets, int((~blocked).sum())
                                         if table == "points" else 0))
        return series.points

    def _into_memory(self, sid: npt.NDArray[np.int32], ts: npt.NDArray[np.int64],
                     values: npt.NDArray[Any], recent: npt.NDArray[np.bool_],
                     behind: npt.NDArray[np.bool_], syncing: Future[None] | None,
                     logged: list[tuple[HeadLog, int]]) -> None:
        """A write's points into the head (`recent`) and the buffer of the past (`behind`)
        while `syncing` makes its log records durable; if that fails, or the points' move into
        memory does, they are taken out of both again and the records cut off (the write is
        not acknowledged; a read meanwhile may have seen them)."""
        before = self._head.state, self._past.mark()
        try:
            if recent.any():
                self._head.append(sid[recent], ts[recent], _numbers(values[recent]))
            if behind.any():
                self._past.add(sid[behind], ts[behind], _numbers(values[behind]))
            if syncing is not None:
                syncing.result()
        except BaseException:
            if syncing is not None:
                futures_wait([syncing])  # its sync done before the records are cut off
            self._head.advance(before[0])
            self._past.undo(before[1])
            for log_, mark in logged:
                log_.undo(mark)
            raise

    def _write_behind(self) -> None:
        """Write the buffer of the past into the table in one transaction, then empty it and
        its log; the buffer a thread writes settled first. The caller holds the write lock.
        If the transaction fails, both stay as they were, and the caller gets its error."""
        self._settle()
        if not self._past.points or self._past_log is None:
            return
        # noted first: what the table holds, whatever follows
        self._wrote_past(self._into_table(self._past))
        self._past.clear()
        self._past_log.clear()

    def _into_table(self, buffer: PastBuffer, checkpoint: bool = True) -> Written:
        """`buffer`'s points written into the table in one transaction; what `_wrote_past`
        then notes of them."""
        sid, ts, values = buffer.held()
        firsts = np.flatnonzero(np.append(True, sid[1:] != sid[:-1]))
        known = [self._series.by_id(found) for found in sid[firsts].tolist()]
        entries = [k for k in known if k is not None]
        if len(entries) != len(known):  # written after a check of its series: never so
            raise RuntimeError("the buffer of the past holds points of an unknown series")
        counts = np.diff(np.append(firsts, len(sid)))
        with self._transaction(checkpoint) as db:
            blocked = _write_past(db, "points", entries, sid, ts, values,
                                  blockstore.in_blocks(sid, ts), *_replacing(entries, counts, ts))
        return Written(entries, counts, ts, np.append(firsts, len(sid)), int((~blocked).sum()))

    def _write_behind_soon(self) -> None:
        """For a write that filled the buffer (the caller holds the write lock): the buffer
        handed to a thread that writes it into the table, the writes after it going into a
        fresh one and a fresh segment of the log meanwhile (connectors/pastbuffer.py); the
        one a thread wrote before settled first."""
        self._settle()
        if not self._past.points or self._past_log is None:
            return
        try:
            flush = Flush(self._past, self._past_log.rotate())
        except OSError:  # no new segment: this write writes it, as if held no buffer
            self._write_behind_logged()
            return
        # the thread's buffer named before the fresh one replaces it: a reader that looks at
        # the buffer, then at the thread's (`_behind_written`), sees the points in one of them
        self._flush = flush
        self._past = PastBuffer()
        try:
            threading.Thread(target=self._flush_past, args=(flush,), name="tsq-store-behind",
                             daemon=True).start()
        except RuntimeError:  # no thread to be had: the next write-behind takes it back
            log.exception("could not start a thread to write the buffer of the past")
            flush.done.set()

    def _flush_past(self, flush: Flush) -> None:
        """The thread of a `_write_behind_soon`: never takes the write lock (whoever waits
        for it holds it), nor checkpoints (the store's connection is the writers')."""
        try:
            flush.written = self._into_table(flush.buffer, checkpoint=False)
        except Exception:
            log.exception("could not write the buffer of the past into the embedded store; "
                          "the next read of the past tries again")
        finally:
            flush.done.set()

    def _settle(self) -> None:
        """Wait for the buffer a thread writes into the table, if one does, and take its
        outcome: its segments of the log deleted and its points noted once written; put back
        in front of the buffer's if not, for the next write-behind to try again. The caller
        holds the write lock."""
        flush = self._flush
        if flush is None:
            return
        flush.done.wait()
        # the thread's buffer stays named until its points are back or noted in the table:
        # a reader that finds neither waits for the lock (`_behind_written`)
        if flush.written is None:
            self._past.put_back(flush.buffer)
            self._flush = None
            return
        self._wrote_past(flush.written)
        self._flush = None
        if self._past_log is not None:
            self._past_log.drop(flush.segments)
        self._checkpoint_if_long()  # the thread's transaction left it to the lock's holder

    def _write_behind_logged(self) -> None:
        """`_write_behind` for a write that filled the buffer: that write is logged and held
        already, so a failure here is not its own (the next read tries again, and fails)."""
        try:
            self._write_behind()
        except Exception:
            log.exception("could not write the buffer of the past into the embedded store; "
                          "the next read of the past tries again")

    def _behind_written(self, ids: npt.NDArray[np.int64]) -> None:
        """Before the table is read for the series `ids`: the buffer of the past written into
        it, if it holds points of theirs (or the buffer a thread writes does)."""
        past, flush = self._past, self._flush  # in this order: see `_write_behind_soon`
        if (past.points and past.holds_any(ids)) or \
                (flush is not None and flush.buffer.holds_any(ids)):
            with self._write_lock:
                self._settle()  # then the buffer only if it holds theirs: a backfill may fill it
                if self._past.points and self._past.holds_any(ids):
                    self._write_behind()

    def _wrote_past(self, written: Written) -> None:
        """After a write into the table committed: later writes of its series may append to
        the table, and its rows are folded into blocks once there are FOLD_FROM of them."""
        _note_newest(written.series, written.counts, written.ts, written.offsets)
        self._unfolded += written.rows
        if self._unfolded >= FOLD_FROM:
            self._fold_in_background()

    # -- folding rows into blocks ----------------------------------------------------------

    def fold_rows(self) -> int:
        """Fold the numeric rows of the table into blocks (with the blocks they fall
        among), FOLD_SERIES series at a time, each share in a transaction of its own under
        the write lock, which writes take in between: compaction while the store serves.
        Returns how many rows went into blocks."""
        folded = 0
        with self._write_lock:
            self._write_behind()
            self._unfolded = 0
            ids = sorted(e.id for e in self._series.entries()
                         if e.rows and e.kind in NUMERIC_KINDS)
        for share in range(0, len(ids), FOLD_SERIES):
            if self._closing.is_set():
                break
            with self._write_lock:
                self._settle()  # a buffer of the past filled meanwhile: in the table first
                entries = [e for e in (self._series.by_id(i) for i in
                                       ids[share:share + FOLD_SERIES]) if e is not None]
                for entry in entries:  # before the commit: see `_read`
                    entry.blocks = True
                with self._transaction() as db:
                    folded += blockstore.fold_rows(db, np.array([e.id for e in entries],
                                                                np.int32))
                for entry in entries:  # committed, the write lock held: none came back
                    entry.rows = False
        return folded

    def _fold_in_background(self) -> None:
        """Start folding the table's rows into blocks in a thread, unless one is at it."""
        with self._fold_lock:
            if self._folder is not None and self._folder.is_alive():
                return
            self._folder = threading.Thread(target=self._fold_logged, name="tsq-store-fold",
                                            daemon=True)
            self._folder.start()

    def _fold_logged(self) -> None:
        started = time.monotonic()
        try:
            folded = self.fold_rows()
        except Exception:  # the rows stay rows: a fold changes nothing unless it commits
            log.exception("could not fold the embedded store's rows into blocks")
            return
        log.info("folded %d rows of the embedded store into blocks in %.1f s", folded,
                 time.monotonic() - started)

    def delete(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> int:
        matching = self._matching(selector)
        removed = 0
        numeric = np.unique(np.array([s.id for s in matching if s.kind in NUMERIC_KINDS],
                                     dtype=np.int32))
        with self._write_lock:
            self._write_behind()
            head_start = max(_low(start), self._head.state.start)
            logged: int | None = None
            try:
                with self._transaction() as db:
                    for table in sorted({TABLE_OF_KIND[s.kind] for s in matching}):
                        ids = np.array([s.id for s in matching
                                        if TABLE_OF_KIND[s.kind] == table], np.int32)
                        db.register("doomed", _frame({"sid": ids}))
                        row = db.execute(
                            f"DELETE FROM {table} WHERE sid IN (SELECT sid FROM doomed) "
                            f"AND ts >= ? AND ts < ?", [_low(start), _high(end)]).fetchone()
                        removed += int(row[0]) if row else 0
                        db.unregister("doomed")
                        if table == "points":
                            removed += blockstore.cut(db, ids, _low(start), _high(end))
                    if len(numeric) and head_start < _high(end) and self._log is not None:
                        logged = self._log.append(Deletion(numeric, head_start, _high(end)))
            except BaseException:
                if logged is not None and self._log is not None:
                    self._log.undo(logged)
                raise
            if len(numeric) and head_start < _high(end):
                removed += self._head.delete(numeric, head_start, _high(end))
        return removed

    def writes_quickly(self, points: int) -> bool:
        """Whether a write of `points` numbers would now be stored without waiting for other
        work or doing more than its own: no other writer holds the store, no thread is writing
        a full buffer of the past into the table (a write of a new series would wait for it),
        no move of the head is due, the buffer of the past would not fill (the write that
        fills it hands it to that thread), and the head's merge is compiled. A
        store in memory writes points behind the head into its table: never. A server stores a
        lone line write on its event loop's thread when this holds, just before it is stored
        (tsq.linewrites)."""
        flush = self._flush  # once: a settle may clear it meanwhile
        return self._past_log is not None and not self._write_lock.locked() and \
            (flush is None or flush.done.is_set()) and self._move_boundary() is None and \
            self._past.points + points < self._past_points and merges_loaded()

    def _move_if_due(self) -> None:
        """Move the head's oldest points into the table once it is due (`_move_boundary`)."""
        boundary = self._move_boundary()
        if boundary is not None:
            self.move(boundary)

    def _move_boundary(self) -> int | None:
        """Where the head should start now, if its oldest points are due to move into the
        table: once it holds half as much again as `head_span` (then it keeps `head_span`), or
        more than HEAD_POINTS points (then it keeps the newer half of its span)."""
        state = self._head.state
        now = self._clock()
        boundary = None
        if now - state.start > self._span + self._span // 2:
            boundary = now - self._span
        elif state.points > HEAD_POINTS and state.newest is not None:
            boundary = state.start + (state.newest - state.start) // 2 + 1
        return boundary if boundary is not None and boundary > state.start else None

    def move(self, boundary: int) -> int:
        """Move the head's points before `boundary` into the table, in one transaction with the
        head's new start, then let the log drop what only those points needed. The caller
        holds the write lock. Returns how many points moved."""
        self._write_behind()  # older than the moved points: their blocks come after
        moved, rest = self._head.split(boundary)
        for found in np.unique(moved["sid"]).tolist():  # before the commit: see `_read`
            entry = self._series.by_id(found)
            if entry is not None:
                entry.blocks = True
        with self._transaction() as db:
            # sorted by series then time, each series' stretch later than the table holds:
            # blocks, a series' moved points in one
            blockstore.write(db, moved["sid"], moved["ts"], moved["value"])
            db.execute("UPDATE head SET start = ?", [rest.start])
        self._head.advance(rest)
        # a read between the commit and here took the head's old start for where blocks end
        self._block_cache.changed()
        sid, ts = moved["sid"], moved["ts"]
        if len(sid):
            lasts = np.flatnonzero(np.append(sid[1:] != sid[:-1], True))
            for found, last in zip(sid[lasts].tolist(), ts[lasts].tolist(), strict=True):
                entry = self._series.by_id(found)
                if entry is not None:
                    entry.newest = last if entry.newest is None else max(entry.newest, last)
        if self._log is not None:
            self._log.retire(rest.start)
        explain.note("embedded store", lambda: f"moved {len(sid)} points from the head into the "
                                               f"table, up to {_instant(rest.start)}")
        return len(sid)

    def _entries(self, prepared: PreparedWrite, kind: str, created: list[Entry]
                 ) -> list[Entry]:
        """Each series' entry: as `prepare` found it while no series was added or removed
        since, else looked up again; a series it did not find is looked up (it may have come
        meanwhile) and made if it is new."""
        series = prepared.series
        found: Sequence[Entry | None] = [None] * len(prepared.keys)
        if prepared.index is self._series and prepared.version == self._series.version:
            if prepared.whole:  # the common case
                return cast(list[Entry], prepared.found)
            found = prepared.found
        return [self._series_id(name, labels, kind, created, key) if entry is None else entry
                for name, labels, key, entry in zip(series.names, series.labels, prepared.keys,
                                                    found, strict=True)]

    def _series_id(self, name: str, labels: Mapping[str, str], kind: str,
                   created: list[Entry], key: str) -> Entry:
        """The series' entry (`key`: its labels made canonical); a new one is indexed and
        appended to `created`, which the caller inserts and a failure forgets (`_forget`)."""
        known = self._series.get(name, key)
        if known is not None:
            if (known.kind in NUMERIC_KINDS) != (kind in NUMERIC_KINDS):
                raise Conflict(f"series {name}{key} holds {known.kind} values; "
                               f"{kind} values cannot be added to it")
            return known
        self._next_id += 1
        known = Entry(self._next_id, name, dict(labels), kind, key)
        self._series.add(known)
        created.append(known)
        return known

    @contextmanager
    def _transaction(self, checkpoint: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB transaction on a cursor of its own, rolled back if it fails; then a
        checkpoint if due."""
        with self._cursors.borrowed() as db:
            self._block_cache.changed()  # the blocks read before may change from here
            db.execute("BEGIN TRANSACTION")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            finally:  # and a read during the transaction saw them as they were before it
                self._block_cache.changed()
        if checkpoint:
            self._checkpoint_if_long()

    def _checkpoint_if_long(self) -> None:
        """Checkpoint once DuckDB's log is longer than CHECKPOINT_AFTER. The transaction before
        is committed whatever happens here: a checkpoint that fails is DuckDB's to retry."""
        try:
            if self._wal is None or self._wal.stat().st_size <= CHECKPOINT_AFTER:
                return
        except FileNotFoundError:
            return
        try:
            self._db.execute("CHECKPOINT")
        except duckdb.Error as exc:
            log.debug("the embedded store did not checkpoint (%s); DuckDB will later", exc)

    def _forget(self, created: list[Entry]) -> None:
        """Forget the series a failed write added. Only those are kept aside, so a write costs
        the same with ten series stored or a million."""
        for entry in reversed(created):
            self._series.remove(entry)
        self._next_id -= len(created)


@dataclass(frozen=True)
class Compacted:
    path: Path
    before: int  # bytes of the store file and its log
    after: int


COMPACTING = ".compacting"  # the fresh file, beside the store's, until it replaces it
# Points a store holds before opening it compacts it; then again each time it has doubled, so
# each point is rewritten about twice over the store's life, and a small store never (the
# rewrite moves some ten million points a second)
COMPACT_FROM = 1_000_000
# DuckDB's blocks in a store file, a sixteenth of its default: a table's last block is mostly
# empty, and a small store's file was a few whole 256 KiB blocks (the footprint benchmark's
# 864,000 points: 2.74 bytes a point against 1.44; the day's 8.64 M points 1.49 against 1.34)
STORE_BLOCK_SIZE = 16_384
# Rows of a row group, DuckDB's smallest (its default is 122,880): a checkpoint after appends to
# a list column now and then writes the row group's whole column again, leaving the old copy
# as free blocks that the file keeps (measured: 14 MB of blocks appended 0.7 MB at a time, a
# checkpoint each, made a file of 23 MB in one row group, 15.6 MB in row groups of 2,048)
STORE_ROW_GROUP = 2048
# A transaction that leaves DuckDB's log longer than this checkpoints (DuckDB's own threshold is
# 16 MB): until a checkpoint, each append to the blocks' list column logs that column's earlier
# appends again (four appends of 0.4 MB log 0.4, 0.8, 1.2 and 1.6 MB), and a checkpoint of
# appended blocks writes only them, in a few milliseconds
CHECKPOINT_AFTER = 1 << 20


def compact(path: str | Path) -> Compacted:
    """Rewrite the store into a fresh file, its points in (series, time) order, and put that in
    place of the old one: about half the bytes of a store written as /write writes (time-major
    batches interleave the series, so a row group's timestamps jump back at every series and
    bit-pack in 40-odd bits instead of a few; docs/store.md). Rewriting in place would not
    shrink the file: DuckDB keeps freed blocks for reuse. The store must not be open elsewhere
    (DuckDB's lock refuses it); a crash before the rename leaves the old file as it was."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no embedded store at {path}")
    fresh = path.with_name(path.name + COMPACTING)
    for stale in (fresh, Path(f"{fresh}{WAL_SUFFIX}")):  # from a compaction cut short
        stale.unlink(missing_ok=True)
    before = _bytes(path)
    db = _connect(str(path))  # replays the log first
    try:
        for statement in SCHEMA:  # a store from before a table was added gets it empty
            db.execute(statement)
        blockstore.upgrade(db)
        source = db.execute("SELECT current_database()").fetchone()
        assert source is not None
        db.execute(f"ATTACH '{_quoted(fresh)}' AS compacted "
                   f"(ROW_GROUP_SIZE {STORE_ROW_GROUP}, BLOCK_SIZE {STORE_BLOCK_SIZE})")
        db.execute("USE compacted")
        for statement in SCHEMA:
            db.execute(statement)
        origin = '"' + str(source[0]).replace('"', '""') + '"'
        db.execute(f"INSERT INTO series SELECT * FROM {origin}.series ORDER BY id")
        db.execute(f"INSERT INTO head SELECT * FROM {origin}.head")
        db.execute(f"INSERT INTO text_points SELECT sid, ts, value FROM {origin}.text_points "
                   f"ORDER BY sid, ts")
        blockstore.fold(db, origin)  # the numbers, rows and blocks, as blocks
        db.execute(COMPACTED_ROWS)
        db.execute(f"INSERT INTO compacted_rows SELECT {POINT_ROWS}")
        db.execute(f"USE {origin}")
        db.execute("DETACH compacted")  # checkpointed: all of it in the file
    except BaseException:
        db.close()
        fresh.unlink(missing_ok=True)  # a failed copy (a full disk) takes no room
        raise
    db.close()
    if Path(f"{fresh}{WAL_SUFFIX}").exists() or Path(f"{path}{WAL_SUFFIX}").exists():
        raise ConfigError(f"compacting {path} left a write-ahead log behind; the store is "
                          f"unchanged")
    synced(fresh)
    os.replace(fresh, path)
    synced(path.parent)
    return Compacted(path, before, _bytes(path))


# The points a compaction wrote, kept in the file it wrote
COMPACTED_ROWS = "CREATE TABLE IF NOT EXISTS compacted_rows (rows BIGINT NOT NULL)"
POINT_ROWS = ("(SELECT count(*) FROM points) + (SELECT count(*) FROM text_points) + "
              "(SELECT coalesce(sum(count), 0) FROM blocks)")


def compact_if_grown(path: Path) -> Compacted | None:
    """Compact the store when it holds COMPACT_FROM points or more and at least twice as many
    as its last compaction wrote; a compaction that fails leaves the store as it was and is
    logged, and the store opens all the same."""
    if not path.is_file():
        return None
    db = _connect(str(path))
    try:
        for statement in (*SCHEMA, COMPACTED_ROWS):  # a store from before a table was added
            db.execute(statement)
        found = db.execute(f"SELECT {POINT_ROWS}, (SELECT max(rows) FROM compacted_rows)"
                           ).fetchone()
    finally:
        db.close()
    rows, compacted = (int(found[0]), int(found[1] or 0)) if found else (0, 0)
    if rows < COMPACT_FROM or rows < 2 * compacted:
        return None
    started = time.monotonic()
    try:
        done = compact(path)
    except (duckdb.Error, OSError, ConfigError) as exc:
        log.warning("could not compact the embedded store %s (%s); it opens as it is", path,
                    exc)
        return None
    log.info("compacted the embedded store %s: %d points, %d bytes → %d in %.1f s", path, rows,
             done.before, done.after, time.monotonic() - started)
    return done


def _bytes(path: Path) -> int:
    wal = Path(f"{path}{WAL_SUFFIX}")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    """The store's file opened, its write-ahead log replayed. A log DuckDB cannot replay (a
    record torn by a crash or a bad disk: DuckDB itself skips a record that is only cut short)
    is copied aside and cut back to its last whole record, or set aside entirely when DuckDB
    does not say where the damage starts, so the store opens with what came before."""
    try:
        return _attached(path)
    except duckdb.Error as exc:
        wal = Path(path + WAL_SUFFIX)
        if path == ":memory:" or "replaying WAL" not in str(exc) or not wal.is_file():
            raise ConfigError(f"cannot open the embedded store {path}: {exc}") from None
        _set_aside(wal, exc)
    try:
        return _attached(path)
    except duckdb.Error as exc:
        raise ConfigError(f"cannot open the embedded store {path} even without the damaged "
                          f"part of its log: {exc}") from None


STORE_DATABASE = "store"  # the name the store's file is attached by
WANTED = "wanted"  # the series ids of a read of many, scattered ones, as a view of its cursor


def _attached(path: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose database is the store's file, with STORE_ROW_GROUP rows a row
    group (a setting of the attachment, not of the file); a new file gets STORE_BLOCK_SIZE
    blocks (kept in the file: giving it again for an older file of other blocks is an error)."""
    db = duckdb.connect()
    size = f", BLOCK_SIZE {STORE_BLOCK_SIZE}" if not Path(path).exists() else ""
    try:
        db.execute(f"ATTACH '{_quoted(Path(path))}' AS {STORE_DATABASE} "
                   f"(ROW_GROUP_SIZE {STORE_ROW_GROUP}{size})")
        db.execute(f"USE {STORE_DATABASE}")
    except BaseException:
        db.close()
        raise
    return db


def _set_aside(wal: Path, error: duckdb.Error) -> None:
    """Keep a copy of the damaged log for inspection, then cut the log before the damage."""
    kept = wal.with_name(f"{wal.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    shutil.copyfile(wal, kept)
    found = CORRUPT_AT.search(str(error))
    whole = int(found.group(1)) if found else 0
    with wal.open("r+b") as file:
        file.truncate(whole)
    log.error("the embedded store's write-ahead log %s could not be replayed (%s); kept its "
              "first %d of %d bytes (the writes before the damage), a copy of it as %s",
              wal, error, whole, kept.stat().st_size, kept)


def _insert_series(db: duckdb.DuckDBPyConnection, created: list[Entry]) -> None:
    if not created:
        return
    db.register("fresh", _frame({"id": [k.id for k in created],
                                 "name": [k.name for k in created],
                                 "labels": [k.key for k in created],
                                 "kind": [k.kind for k in created]}))
    db.execute("INSERT INTO series SELECT id, name, labels, kind FROM fresh")
    db.unregister("fresh")


def _write_past(db: duckdb.DuckDBPyConnection, table: str, known: list[Entry],
                sid: npt.NDArray[np.int32], ts: npt.NDArray[np.int64], values: npt.NDArray[Any],
                blocked: npt.NDArray[np.bool_], over_rows: npt.NDArray[np.bool_],
                over_blocks: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Put points of the series `known` into the table, those `blocked` marks as blocks
    (`blockstore.in_blocks`: a series' long stretch in time order; merged with what is left of
    the blocks it replaces points of), the others as rows; those `over_rows` and `over_blocks`
    mark (at or before their series' newest time there, which may have rows or blocks) first
    take out the points they replace. Returns which went to blocks. `table` comes from
    TABLE_OF_KIND, never from a user.

    A point among the times of its series' blocks replaces one there only where a block holds
    its time. Where none of a series' points does, they go to rows, which the background fold
    takes into the blocks later, and its blocks are not written again for them: writers
    racing each other, or a collector catching up, bring a few points among blocks a write
    has just made, and rewriting each such block at every write of the buffer of the past held
    four writers up for most of their time. A series whose blocks are written again anyway
    has all its points go there."""
    if table == "points" and over_blocks.any():
        replacing = blockstore.held_in_blocks(db, sid[over_blocks], ts[over_blocks])
        among = over_blocks & ~np.isin(sid, sid[over_blocks][replacing])
        blocked, over_blocks = blocked & ~among, over_blocks & ~among
    _note_where(known, sid, blocked)  # before the commit: see `_read`
    if over_rows.any():
        db.register("replaced", _frame({"sid": sid[over_rows], "ts": ts[over_rows]}))
        db.execute(f"DELETE FROM {table} WHERE (sid, ts) IN (SELECT sid, ts FROM replaced)")
        db.unregister("replaced")
    if table == "points":
        values = _numbers(values)
        kept = blockstore.replace_points(db, sid[over_blocks], ts[over_blocks])
        blockstore.write_joined(db, kept, (sid[blocked], ts[blocked], values[blocked]))
        rows = ~blocked
        sid, ts, values = sid[rows], ts[rows], values[rows]
    else:
        values = values.astype(object)
    if len(sid):
        db.register("batch", _frame({"sid": sid, "ts": ts, "value": values}))
        db.execute(f"INSERT INTO {table} SELECT sid, ts, value FROM batch")
        db.unregister("batch")
    return blocked


def _stored_in(table: str, entries: list[Entry]) -> tuple[bool, bool]:
    """Whether any of `entries` (series of `table`) may have rows there, and blocks."""
    if table != "points":
        return True, False
    return any(s.rows for s in entries), any(s.blocks for s in entries)


def _where(cursor: duckdb.DuckDBPyConnection, ids: npt.NDArray[np.int64]
           ) -> tuple[str, list[Any], npt.NDArray[np.bool_] | None]:
    """A condition on `sid` for the series `ids` and its parameters (from $3), for a read on
    `cursor`; and, where it takes other series too, which of them are wanted (by id from the
    lowest)."""
    low, high = int(ids.min()), int(ids.max())
    if len(ids) <= FEW_SERIES:  # a list DuckDB checks against each row group's range
        return f"sid IN ({', '.join(f'${n}' for n in range(3, len(ids) + 3))})", ids.tolist(), \
            None
    if len(ids) * DENSE_FRACTION >= high - low + 1:
        # most ids in their range are wanted: scan the range, in the table's order (a join
        # gives its rows in any order, and each series must then be sorted) and drop the few
        # others
        wanted = None
        if len(ids) < high - low + 1:
            wanted = np.zeros(high - low + 1, dtype=bool)
            wanted[ids - low] = True
        return "sid BETWEEN $3 AND $4", [low, high], wanted
    cursor.register(WANTED, _frame({"sid": ids}))
    return f"sid IN (SELECT sid FROM {WANTED})", [], None


def _grouped_step(group: Grouping, grouped: SeriesSet) -> str:
    return f"{group}: {len(grouped)} series, {grouped.points} points"


def _synced(logs: list[HeadLog]) -> None:
    for found in logs:
        found.sync()


def _replacing(known: list[Entry], counts: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]
               ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Of the points of the series `known` (`counts` each, times `ts`), those at or before
    their series' newest time in the table, where its rows may hold a point they replace, and
    where its blocks may: what `_write_past` takes out first."""
    back = ts <= np.repeat(_newest(known), counts)
    return (back & np.repeat([k.rows for k in known], counts),
            back & np.repeat([k.blocks for k in known], counts))


def _newest(known: list[Entry]) -> npt.NDArray[np.int64]:
    """Each series' newest time in the table (INT64_MIN: none)."""
    return np.array([INT64_MIN if k.newest is None else k.newest for k in known], np.int64)


def _note_where(known: list[Entry], sid: npt.NDArray[np.int32],
                blocked: npt.NDArray[np.bool_]) -> None:
    """Note the series that may now have rows in the table, or blocks (`blocked`: of the
    points `sid` names, those going to blocks), before the write that puts them there
    commits. Series already noted for both are passed over, without a look at their
    points."""
    by_id = {k.id: k for k in known if not (k.rows and k.blocks)}
    if not by_id:
        return
    for found in _named(sid[~blocked], by_id):
        by_id[found].rows = True
    for found in _named(sid[blocked], by_id):
        by_id[found].blocks = True


def _named(sid: npt.NDArray[np.int32], ids: Iterable[int]) -> list[int]:
    """Those of the series `ids` that `sid` names: a mark per series id set by one scatter,
    where `np.unique` hashed every point (8 of the 88 ms that the buffer of the past took to
    write half a million points into the table)."""
    if not len(sid):
        return []
    marks = np.zeros(int(sid.max()) + 1, dtype=bool)
    marks[sid] = True
    return [found for found in ids if found < len(marks) and marks[found]]


def _note_newest(known: list[Entry], counts: npt.NDArray[np.int64], ts: npt.NDArray[np.int64],
                 offsets: npt.NDArray[np.int64]) -> None:
    """Raise each series' newest time in the table to its newest of `ts` (INT64_MIN where a
    point went elsewhere)."""
    firsts = offsets[:-1][counts > 0]
    lasts = np.maximum.reduceat(ts, firsts).tolist() if len(firsts) else []
    for entry, last in zip((k for k, c in zip(known, counts, strict=True) if c), lasts,
                           strict=True):
        if last != INT64_MIN:
            entry.newest = last if entry.newest is None else max(entry.newest, last)


def _numbers(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    return values.astype(np.float64, copy=False)


def _none_for_nan(values: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    found = values.astype(object)
    found[np.isnan(values)] = None
    return found


def _note_head(chunks: list[Points]) -> None:
    explain.note("embedded store", lambda: f"{sum(len(c.stamps) for c in chunks)} points from "
                                           f"the head (memory), in {len(chunks)} chunks")


def _joined_parts(rank_of: npt.NDArray[np.integer[Any]], given: list[Points | Blocks]
                  ) -> tuple[npt.NDArray[np.integer[Any]], npt.NDArray[np.int64],
                             npt.NDArray[Any]]:
    """The parts as one: each point's rank, time and value (blocks decoded)."""
    parts = [points_of(part) for part in given]
    if not parts:
        return rank_of[:0], np.zeros(0, np.int64), np.zeros(0)
    values = [p.values for p in parts]
    if any(v.dtype == object for v in values):  # strings too: NaN comes back as None
        values = [v if v.dtype == object else _none_for_nan(v) for v in values]
    return (_joined([rank_of[p.ids] for p in parts], rank_of.dtype),
            _joined([p.stamps for p in parts], np.int64),
            _joined(values, values[0].dtype))


def _grouped(matching: list[Entry], rank: npt.NDArray[np.integer[Any]],
             ts: npt.NDArray[np.int64], values: npt.NDArray[Any]) -> SeriesSet:
    """The points of `matching` (`rank`: each one's series) as a SeriesSet: grouped by series,
    each in time order."""
    counts = np.bincount(rank, minlength=len(matching))
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    order = _series_then_time(rank, ts, offsets)
    if order is not None:
        ts, values = ts[order], values[order]
    return SeriesSet(*_heads(matching), ts, values, offsets)


def _heads(matching: list[Entry]) -> tuple[tuple[str, ...], tuple[dict[str, str], ...]]:
    """The names and the labels of a SeriesSet of `matching`."""
    return tuple(s.name for s in matching), tuple(s.labels for s in matching)


@dataclass(frozen=True)
class PreparedWrite:
    """A write's series looked up before the store's write lock (`EmbeddedStore.prepare`):
    each one's canonical labels and entry (None: none yet, or one holding the other kind of
    values), good while the series index is at `version` (a series added or removed since,
    the store looks them up again)."""

    series: SeriesSet
    index: SeriesIndex  # the store's, which `version` is of
    version: int
    keys: list[str]
    found: list[Entry | None]
    whole: bool  # every series found, holding values of its kind


def _canonical(labels: Mapping[str, str]) -> str:
    return orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()


def _frame(columns: dict[str, Any]) -> Any:
    """Columns as an Arrow table for DuckDB to scan: a third cheaper than a pandas frame (a
    5,000-point write 3.7 -> 2.7 ms). NaN goes in as NULL, as pandas had it."""
    import pyarrow as pa

    return pa.table({name: pa.array(column, from_pandas=True)
                     for name, column in columns.items()})


def _series_then_time(rank: npt.NDArray[np.integer[Any]], ts: npt.NDArray[np.int64],
                      offsets: npt.NDArray[np.int64]) -> npt.NDArray[np.int64] | None:
    """The order that groups points by series rank and sorts each by time (`offsets`: where
    each rank's points start in it); None if they are already so. A stable sort on the rank
    keeps each series' order from the table, mostly time order already; only the series found
    out of order are sorted again."""
    if len(rank) < 2:
        return None
    if np.all(rank[1:] >= rank[:-1]):  # grouped already: only time order to check
        order = None
        stamps = ts
    else:
        order = np.argsort(rank, kind="stable").astype(np.int64)
        stamps = ts[order]
    backwards = stamps[1:] <= stamps[:-1]
    between = offsets[1:-1]
    backwards[between[(between > 0) & (between < len(ts))] - 1] = False  # a series' first
    unsorted = np.flatnonzero(backwards)
    if not len(unsorted):
        return order
    if order is None:
        order = np.arange(len(ts), dtype=np.int64)
    # parallel scans can hand a series' row groups out of order
    for series in np.unique(np.searchsorted(offsets, unsorted, side="right") - 1).tolist():
        lo, hi = int(offsets[series]), int(offsets[series + 1])
        order[lo:hi] = order[lo:hi][np.argsort(stamps[lo:hi], kind="stable")]
    return order


def _part(batch: Any, numeric: bool) -> Points:
    """A batch of (sid, ts, value) rows as numpy views; NULL (a NaN written through Arrow) as
    NaN, or as None among strings. Rows that come sorted by series (a compacted table) are
    reduced as runs (`bucketize_parts`): a look at the first rows tells."""
    sid, ts, value = (batch.column(n).to_numpy(zero_copy_only=False) for n in range(3))
    if not numeric:  # beside strings, a NULL number is None as a NULL string is
        value = _none_for_nan(value) if value.dtype.kind == "f" else value.astype(object)
    elif value.dtype != np.float64:
        value = value.astype(np.float64)
    head = sid[:RUN_PROBE]
    runs = len(head) > 1 and int(np.count_nonzero(head[1:] != head[:-1])) * 4 < len(head)
    return Points(sid, ts, value, runs=runs)


def _kept(part: Points | Blocks, keep: npt.NDArray[np.bool_]) -> Points | Blocks:
    if keep.all():
        return part
    if isinstance(part, Blocks):
        return part.only(keep)
    return Points(part.ids[keep], part.stamps[keep], part.values[keep], part.runs)


def _holds(part: Points | Blocks) -> bool:
    return bool(len(part.stamps)) if isinstance(part, Points) else bool(len(part.ids))


def _joined(parts: list[Any], dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """One array from the reads, copied only when there are several or the type differs."""
    arrays: list[npt.NDArray[Any]] = [np.asarray(p, dtype=dtype) for p in parts]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _low(start: int | None) -> int:
    return INT64_MIN if start is None else int(start)


def _high(end: int | None) -> int:
    return INT64_MAX if end is None else int(end)


def _span(start: int | None, end: int | None) -> str:
    """`[start, end)` in epoch nanoseconds, as a plan shows it."""
    return f"[{_instant(start)}, {_instant(end)})"


def _instant(ns: int | None) -> str:
    """An instant of a plan: RFC 3339 where a calendar holds it, else epoch nanoseconds."""
    if ns is None:
        return "…"
    try:
        return format_ms(ns // 10**6, "milliseconds")
    except (OverflowError, ValueError, OSError):
        return f"{ns} ns"
