"""Group commit: concurrent writes share transactions, and each caller gets its own outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tsq.db import connect
from tsq.groupcommit import GroupCommit

ITEMS = sa.table("items", sa.column("id", sa.Integer), sa.column("name", sa.String))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = connect(f"sqlite:///{tmp_path / 'tsq.db'}")
    with engine.begin() as db:
        db.execute(sa.text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)"))
    return engine


def insert(item: int) -> Callable[[Connection], int]:
    def write(db: Connection) -> int:
        db.execute(ITEMS.insert(), {"id": item, "name": f"n{item}"})
        return item
    return write


def stored(engine: Engine) -> list[int]:
    with engine.connect() as db:
        return sorted(db.execute(sa.select(ITEMS.c.id)).scalars())


def test_a_lone_write_is_one_transaction_at_once(engine: Engine) -> None:
    group = GroupCommit(engine)
    assert group.write(insert(1)) == 1
    assert group.batches == 1 and stored(engine) == [1]


def test_concurrent_writes_share_transactions_and_all_land(engine: Engine) -> None:
    group = GroupCommit(engine)
    results: dict[int, object] = {}
    start = threading.Barrier(16)

    def writer(first: int) -> None:
        start.wait()
        for item in range(first, first + 50):
            results[item] = group.write(insert(item))

    threads = [threading.Thread(target=writer, args=(n * 50,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert stored(engine) == list(range(800))
    assert results == {item: item for item in range(800)}
    assert group.batches < 800  # some writes were committed together


def test_a_failing_write_fails_only_its_caller(engine: Engine) -> None:
    group = GroupCommit(engine)
    group.write(insert(7))
    outcomes: dict[int, str] = {}
    start = threading.Barrier(8)

    def writer(item: int) -> None:
        start.wait()
        try:
            group.write(insert(item))
            outcomes[item] = "ok"
        except sa.exc.IntegrityError:
            outcomes[item] = "duplicate"

    threads = [threading.Thread(target=writer, args=(item,)) for item in range(3, 11)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes == {**dict.fromkeys(range(3, 11), "ok"), 7: "duplicate"}
    assert stored(engine) == list(range(3, 11))
