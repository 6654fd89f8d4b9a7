"""The embedded store opens after a crash that damaged the end of its write-ahead log: DuckDB
skips a record that is only cut short, and refuses a record whose checksum fails; the store then
keeps a copy of the log, cuts it back to its last whole record and says so in the log."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tsq.connectors.embedded import WAL_SUFFIX, EmbeddedStore
from tsq.errors import ConfigError
from tsq.selector import parse_selector

BATCHES, POINTS = 5, 2000
# Writes BATCHES transactions of POINTS points and dies without closing: the log is left whole
WRITER = """
import os, sys
import numpy as np
from tsq.connectors.embedded import EmbeddedStore
from tsq.series import SeriesSet
store = EmbeddedStore(sys.argv[1], past_points=0)  # a transaction a write
for number in range({batches}):
    ts = (number * {points} + np.arange({points}, dtype=np.int64)) * 10**9
    store.write(SeriesSet(("wal",), ({{}},), ts, ts.astype(np.float64), np.array([0, {points}])))
os._exit(0)
"""


@pytest.fixture
def crashed(tmp_path: Path) -> Path:
    """A store whose writer died with its BATCHES writes in the log only."""
    path = tmp_path / "points.duckdb"
    subprocess.run([sys.executable, "-c", WRITER.format(batches=BATCHES, points=POINTS),
                    str(path)], check=True, timeout=120)
    assert Path(f"{path}{WAL_SUFFIX}").stat().st_size > 0
    return path


def points(path: Path) -> np.ndarray:
    store = EmbeddedStore(path)
    try:
        return store.select(parse_selector("wal")).timestamps
    finally:
        store.close()


def test_a_cut_short_last_record_loses_that_write_only(crashed: Path) -> None:
    wal = Path(f"{crashed}{WAL_SUFFIX}")
    with wal.open("r+b") as log:
        log.truncate(wal.stat().st_size - 100)
    found = points(crashed)
    np.testing.assert_array_equal(found, np.arange((BATCHES - 1) * POINTS) * 10**9)


def test_a_garbled_last_record_is_cut_away_and_a_copy_kept(
        crashed: Path, caplog: pytest.LogCaptureFixture) -> None:
    wal = Path(f"{crashed}{WAL_SUFFIX}")
    original = wal.read_bytes()
    with wal.open("r+b") as log:
        log.seek(len(original) - 100)
        log.write(b"\xff" * 8)
    with caplog.at_level(logging.ERROR, logger="tsq.connectors.embedded"):
        found = points(crashed)
    np.testing.assert_array_equal(found, np.arange((BATCHES - 1) * POINTS) * 10**9)
    copies = list(crashed.parent.glob(f"{wal.name}.damaged-*"))
    assert len(copies) == 1 and copies[0].read_bytes()[:-200] == original[:-200]
    assert str(wal) in caplog.text and str(copies[0]) in caplog.text
    assert points(crashed).size == (BATCHES - 1) * POINTS  # and it opens again as it is


def test_garbage_after_the_last_record_is_ignored(crashed: Path) -> None:
    with Path(f"{crashed}{WAL_SUFFIX}").open("ab") as log:
        log.write(b"\x07" * 333)
    np.testing.assert_array_equal(points(crashed), np.arange(BATCHES * POINTS) * 10**9)


def test_a_store_file_that_is_not_duckdb_is_still_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "points.duckdb"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match="cannot open the embedded store"):
        EmbeddedStore(path)
