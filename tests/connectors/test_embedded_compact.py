"""`compact` rewrites the embedded store in (series, time) order: every series and point reads
back the same, the file shrinks, and a store open elsewhere is refused and left as it was."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tsq.connectors import embedded
from tsq.connectors.embedded import COMPACTING, STORE_FILE, EmbeddedStore, compact
from tsq.errors import ConfigError
from tsq.selector import parse_selector
from tsq.series import SeriesSet

HOSTS, HOURS, PER_HOUR = 20, 24, 360
START = 1_767_225_600 * 10**9
STEP = 10 * 10**9


def hour(number: int, part: int | None = None) -> SeriesSet:
    """An hour of every host (a tenth of it: `part`) in one write. A tenth is as /write
    batches bring points, a few of each series, too few for blocks: rows, until compaction
    folds them; the whole hour comes as blocks."""
    rng = np.random.default_rng(number * 10 + (part or 0))
    length = PER_HOUR if part is None else PER_HOUR // 10
    first = number * PER_HOUR + (part or 0) * length
    ts = START + (first + np.arange(length, dtype=np.int64)) * STEP
    return SeriesSet(tuple(["cpu"] * HOSTS), tuple({"host": f"h{i:02d}"} for i in range(HOSTS)),
                     np.tile(ts, HOSTS), np.round(rng.uniform(0, 100, HOSTS * length), 2),
                     np.arange(0, HOSTS * length + 1, length, dtype=np.int64))


@pytest.fixture
def written(tmp_path: Path) -> Path:
    path = tmp_path / "points.duckdb"
    store = EmbeddedStore(path, past_points=0)  # each write into the table as it comes: rows
    try:
        for number in range(HOURS):
            for part in range(10):
                store.write(hour(number, part))
        store.write(SeriesSet(("note",), ({},), np.array([START, START + STEP]),
                              np.array(["a", "b'c"], dtype=object), np.array([0, 2])))
    finally:
        store.close()
    return path


def everything(path: Path) -> tuple[SeriesSet, SeriesSet, list[str]]:
    store = EmbeddedStore(path)
    try:
        return (store.select(parse_selector("cpu")), store.select(parse_selector("note")),
                store.names())
    finally:
        store.close()


def test_compaction_keeps_every_point_and_shrinks_the_file(written: Path) -> None:
    cpu, notes, names = everything(written)
    assert notes.values.tolist() == ["a", "b'c"]
    done = compact(written)
    assert done.after < 0.85 * done.before, done  # a small store: mostly fixed costs
    assert written.stat().st_size == done.after
    again_cpu, again_notes, again_names = everything(written)
    assert again_names == names == ["cpu", "note"]
    assert again_cpu.labels == cpu.labels and cpu.points == HOSTS * HOURS * PER_HOUR
    np.testing.assert_array_equal(again_cpu.offsets, cpu.offsets)
    np.testing.assert_array_equal(again_cpu.timestamps, cpu.timestamps)
    np.testing.assert_array_equal(again_cpu.values, cpu.values)
    assert again_notes.values.tolist() == ["a", "b'c"]
    assert not list(written.parent.glob(f"*{COMPACTING}*"))


def test_a_store_compacts_with_a_log_still_to_replay(tmp_path: Path) -> None:
    """Points only in the log (the writer died) are replayed into the compacted file."""
    path = tmp_path / "points.duckdb"
    writer = ("import os, sys; from tsq.connectors.embedded import EmbeddedStore; "
              "from tests.connectors.test_embedded_compact import hour; "
              "store = EmbeddedStore(sys.argv[1]); store.write(hour(0)); os._exit(0)")
    subprocess.run([sys.executable, "-c", writer, str(path)], check=True, timeout=120)
    compact(path)
    assert everything(path)[0].points == HOSTS * PER_HOUR


def test_a_store_open_elsewhere_is_refused_and_left_alone(written: Path) -> None:
    before = written.read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tsq.connectors.embedded import "
         "EmbeddedStore; held = EmbeddedStore(sys.argv[1]); print('open', flush=True); "
         "time.sleep(60)", str(written)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        with pytest.raises(ConfigError, match="cannot open the embedded store"):
            compact(written)
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    assert written.read_bytes() == before


def test_a_file_left_by_an_interrupted_compaction_is_replaced(written: Path) -> None:
    stale = written.with_name(written.name + COMPACTING)
    stale.write_bytes(b"half a file")
    compact(written)
    assert not stale.exists() and everything(written)[0].points == HOSTS * HOURS * PER_HOUR


def test_opening_compacts_a_store_that_has_doubled_since_its_last_compaction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(embedded, "COMPACT_FROM", 10 * HOSTS * PER_HOUR)
    path = tmp_path / STORE_FILE

    def write_hours(hours: range) -> None:
        store = EmbeddedStore(path)
        try:
            for number in hours:
                store.write(hour(number))
        finally:
            store.close()

    def compactions_on_open() -> int:
        """Open the store as the service does: how many compactions the log has told of."""
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="tsq.connectors.embedded"):
            EmbeddedStore.open({}, tmp_path).close()
        return caplog.text.count("compacted the embedded store")

    write_hours(range(9))
    assert compactions_on_open() == 0  # under COMPACT_FROM
    write_hours(range(9, 12))
    grown = path.stat().st_size
    assert compactions_on_open() == 1 and path.stat().st_size < grown
    write_hours(range(12, 23))  # 23 hours: not yet twice the 12 compacted
    assert compactions_on_open() == 0
    write_hours(range(23, 24))
    assert compactions_on_open() == 1
    cpu = everything(path)[0]
    np.testing.assert_array_equal(cpu.offsets, np.arange(HOSTS + 1) * HOURS * PER_HOUR)
    np.testing.assert_array_equal(
        cpu.timestamps, np.tile(START + np.arange(HOURS * PER_HOUR, dtype=np.int64) * STEP,
                                HOSTS))


def test_a_compaction_that_fails_on_open_leaves_the_store_to_open_as_it_is(
        written: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def full_disk(path: Path) -> embedded.Compacted:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(embedded, "COMPACT_FROM", 1)
    monkeypatch.setattr(embedded, "compact", full_disk)
    before = everything(written)[0]
    with caplog.at_level(logging.WARNING, logger="tsq.connectors.embedded"):
        store = EmbeddedStore.open({}, written.parent)
    try:
        assert store.select(parse_selector("cpu")).points == before.points
    finally:
        store.close()
    assert "could not compact the embedded store" in caplog.text
    assert "No space left on device" in caplog.text
