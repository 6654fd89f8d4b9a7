"""The store's kept DuckDB cursors: reused when they ended well, closed when not, and never left
inside a transaction or with another read's view."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from tsq.connectors import embedded
from tsq.connectors.duckcursors import KEPT, Cursors
from tsq.connectors.embedded import WANTED, EmbeddedStore
from tsq.selector import parse_selector
from tsq.series import SeriesSet


@pytest.fixture
def attached(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    db = duckdb.connect()
    db.execute(f"ATTACH '{tmp_path / 'x.duckdb'}' AS store")
    db.execute("CREATE TABLE store.t (a INTEGER)")
    yield db
    db.close()


def test_a_cursor_that_ended_well_is_used_again_on_the_store(
        attached: duckdb.DuckDBPyConnection) -> None:
    cursors = Cursors(attached, "store")
    with cursors.borrowed() as first:
        first.execute("INSERT INTO t VALUES (1)")  # on the store's database, unqualified
    with cursors.borrowed() as again:
        assert again is first
        assert again.execute("SELECT count(*) FROM t").fetchone() == (1,)
    cursors.close()


def test_a_cursor_whose_use_raised_is_closed_and_its_transaction_rolled_back(
        attached: duckdb.DuckDBPyConnection) -> None:
    cursors = Cursors(attached, "store")
    with pytest.raises(RuntimeError), cursors.borrowed() as failed:
        failed.begin()
        failed.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("a read went wrong")
    with cursors.borrowed() as fresh:
        assert fresh is not failed
        assert fresh.execute("SELECT count(*) FROM t").fetchone() == (0,)
    with pytest.raises(duckdb.Error):
        failed.execute("SELECT 1")  # closed


def test_at_most_kept_cursors_wait_and_none_after_close(
        attached: duckdb.DuckDBPyConnection) -> None:
    cursors = Cursors(attached, "store")
    borrowed = [cursors.borrowed() for _ in range(KEPT + 2)]
    used = [b.__enter__() for b in borrowed]
    for b in borrowed:
        b.__exit__(None, None, None)
    assert len(cursors._idle) == KEPT
    cursors.close()
    assert cursors._idle == []
    assert all(_closed(cursor) for cursor in used)


def test_a_read_of_scattered_series_leaves_no_view_on_its_kept_cursor(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "points.duckdb", past_points=0)
    try:
        names = [f"m{i}" for i in range(embedded.FEW_SERIES * 8)]
        store.write(SeriesSet.from_series(
            (name, {}, np.array([10**9]), np.array([float(i)]))
            for i, name in enumerate(names)))
        picked = names[::7]  # many series, scattered among the ids: read through the view
        found = store.select(parse_selector('{__name__=~"' + "|".join(picked) + '"}'))
        assert sorted(found.names) == sorted(picked)
        for cursor in store._cursors._idle:
            with pytest.raises(duckdb.Error):
                cursor.execute(f"SELECT * FROM {WANTED}")
    finally:
        store.close()


def _closed(cursor: duckdb.DuckDBPyConnection) -> bool:
    try:
        cursor.execute("SELECT 1")
    except duckdb.Error:
        return True
    return False
