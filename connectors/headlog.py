"""The head's write-ahead log: a write to the head is acknowledged only once its record is on
the disk, and opening the store replays the records into a fresh head.

The log is a folder of segments (`00000001.log`, …), each a run of records: a header (the
payload's length, the CRC-32 of the kind and the payload, the kind) and the payload, the
points' columns as raw little-endian arrays, written with one `write` and synced. A new segment
is begun when the store opens, when one grows past SEGMENT_BYTES and after each move of points
into the table; segments are deleted from the oldest while every point they hold is before the
head's start (the table holds those). Only a prefix is deleted, so a delete record is never
lost while a write it removed points of is replayed.

A record whose header or payload is cut short or whose CRC fails (a crash in the middle of a
write, a bad disk) ends its segment: the segment is copied aside and cut back to its last whole
record, and replay goes on with the next segment.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["Deletion", "HeadLog", "Writing", "synced"]

log = logging.getLogger(__name__)

HEADER = struct.Struct("<IIB")  # payload bytes, CRC-32 of the kind byte and the payload, kind
WRITE, DELETE = 1, 2
COUNT = struct.Struct("<Q")
SPAN = struct.Struct("<qqQ")  # a deletion's start, end and number of series
SEGMENT_BYTES = 64 << 20
SUFFIX = ".log"
INT64_MIN = -(2**63)


@dataclass(frozen=True)
class Writing:
    sid: npt.NDArray[np.int32]
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Deletion:
    sid: npt.NDArray[np.int32]  # sorted, unique
    start: int
    end: int


@dataclass
class _Segment:
    path: Path
    newest: int = INT64_MIN  # the newest time a write in it holds


class HeadLog:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._segments = [_Segment(p) for p in sorted(folder.glob(f"*{SUFFIX}"))]
        self._file: int | None = None  # the segment appended to, once `replay` is done
        self._size = 0

    def replay(self) -> Iterator[Writing | Deletion]:
        """Every whole record, oldest first; a damaged segment is cut back to its last whole
        record. Appending starts a new segment afterwards."""
        for segment in self._segments:
            data = segment.path.read_bytes()
            at = 0
            while at < len(data):
                found = _record(data, at)
                if found is None:
                    _cut(segment.path, data, at)
                    break
                record, at = found
                if isinstance(record, Writing) and len(record.ts):
                    segment.newest = max(segment.newest, int(record.ts.max()))
                yield record
        self._begin()

    def append(self, record: Writing | Deletion) -> int:
        """Write and sync one record; returns where the segment ended before it, for `undo`."""
        mark = self.written(record)
        try:
            self.sync()
        except BaseException:
            self.undo(mark)
            raise
        return mark

    def written(self, record: Writing | Deletion) -> int:
        """Write one record, not yet synced (`sync`); returns where the segment ended before
        it, for `undo`."""
        if self._file is None:
            raise RuntimeError("the head log is appended to only after it is replayed")
        if self._size >= SEGMENT_BYTES:
            self._begin()
        assert self._file is not None
        if isinstance(record, Writing):
            kind = WRITE
            payload = b"".join((COUNT.pack(len(record.sid)), record.sid.astype("<i4").tobytes(),
                                record.ts.astype("<i8").tobytes(),
                                record.value.astype("<f8").tobytes()))
        else:
            kind = DELETE
            payload = SPAN.pack(record.start, record.end, len(record.sid)) + \
                record.sid.astype("<i4").tobytes()
        body = HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(bytes((kind,)))),
                           kind) + payload
        mark = self._size
        try:
            os.write(self._file, body)
        except BaseException:
            self.undo(mark)
            raise
        self._size += len(body)
        if isinstance(record, Writing) and len(record.ts):
            current = self._segments[-1]
            current.newest = max(current.newest, int(record.ts.max()))
        return mark

    def sync(self) -> None:
        """Make what was written durable (`fdatasync`: it lets go of the GIL)."""
        if self._file is not None:
            os.fdatasync(self._file)

    def undo(self, mark: int) -> None:
        """Cut the current segment back to `mark` (a write that failed after its record)."""
        if self._file is not None:
            os.ftruncate(self._file, mark)
            self._size = mark

    def retire(self, start: int) -> None:
        """After points before `start` went to the table: begin a new segment, and delete the
        oldest ones while every point they hold is before `start`."""
        self._begin()
        while len(self._segments) > 1 and self._segments[0].newest < start:
            self._segments.pop(0).path.unlink(missing_ok=True)

    def rotate(self) -> int:
        """Begin a new segment for the records from here on; how many segments hold those
        before it (`drop` deletes them once they are stored elsewhere)."""
        self._begin()
        return len(self._segments) - 1

    def drop(self, count: int) -> None:
        """Delete the oldest `count` segments, once what they hold is stored elsewhere."""
        for segment in self._segments[:count]:
            segment.path.unlink(missing_ok=True)
        del self._segments[:count]

    def clear(self) -> None:
        """Delete every segment, once what they hold is stored elsewhere, and begin anew."""
        self.close()
        for segment in self._segments:
            segment.path.unlink(missing_ok=True)
        self._segments = []
        self._begin()

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None

    def _begin(self) -> None:
        """Start appending to a new segment (an empty current one is reused)."""
        if self._file is not None and self._size == 0:
            return
        number = int(self._segments[-1].path.stem) + 1 if self._segments else 1
        path = self.folder / f"{number:08d}{SUFFIX}"
        # opened before the current one is closed: if it cannot be, appending goes on there
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.close()
        self._file = handle
        self._size = 0
        self._segments.append(_Segment(path))
        synced(self.folder)


def _record(data: bytes, at: int) -> tuple[Writing | Deletion, int] | None:
    """The record at `at` and where the next begins; None if it is cut short or damaged."""
    if at + HEADER.size > len(data):
        return None
    length, crc, kind = HEADER.unpack_from(data, at)
    body = at + HEADER.size
    payload = data[body:body + length]
    if len(payload) < length or zlib.crc32(payload, zlib.crc32(bytes((kind,)))) != crc:
        return None
    if kind == WRITE:
        (count,) = COUNT.unpack_from(payload)
        ids = COUNT.size + 4 * count
        times = ids + 8 * count
        if COUNT.size + 20 * count != length:
            return None
        return Writing(np.frombuffer(payload, "<i4", count, COUNT.size).astype(np.int32),
                       np.frombuffer(payload, "<i8", count, ids).astype(np.int64),
                       np.frombuffer(payload, "<f8", count, times).astype(np.float64)
                       ), body + length
    if kind == DELETE:
        start, end, count = SPAN.unpack_from(payload)
        if SPAN.size + 4 * count != length:
            return None
        return Deletion(np.frombuffer(payload, "<i4", count, SPAN.size).astype(np.int32),
                        start, end), body + length
    return None


def _cut(path: Path, data: bytes, whole: int) -> None:
    """Keep a copy of a damaged segment, then cut it back to its `whole` bytes."""
    kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    shutil.copyfile(path, kept)
    with path.open("r+b") as file:
        file.truncate(whole)
    log.error("the embedded store's head log %s ends in a damaged or cut-short record; kept its "
              "first %d of %d bytes (the writes before it), a copy of it as %s", path, whole,
              len(data), kept)


def synced(path: Path) -> None:
    """Flush a file or a directory (a file made or renamed in it) to the disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
