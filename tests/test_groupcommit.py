"""Group commit: concurrent writes share transactions, and each caller gets its own outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tsq import groupcommit
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


def test_a_write_handed_in_soon_rides_with_the_next_write(engine: Engine) -> None:
    group = GroupCommit(engine)
    soon = group.write_soon(insert(1))
    assert stored(engine) == []  # not yet: it waits for a batch
    assert group.write(insert(2)) == 2
    assert soon.done.is_set() and group.written(soon) == 1
    assert group.batches == 1 and stored(engine) == [1, 2]
    group.close()


def test_a_write_handed_in_soon_commits_by_itself_when_no_batch_comes(engine: Engine) -> None:
    group = GroupCommit(engine)
    soon = group.write_soon(insert(1))
    assert soon.done.wait(timeout=groupcommit.SOON_S * 20)
    assert group.written(soon) == 1 and stored(engine) == [1]
    group.close()


def test_closing_commits_what_was_handed_in_soon(engine: Engine,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(groupcommit, "SOON_S", 60.0)
    group = GroupCommit(engine)
    soon = group.write_soon(insert(1))
    group.close()
    assert soon.done.is_set() and stored(engine) == [1]
    with pytest.raises(RuntimeError, match="closed"):
        group.write_soon(insert(2))


def test_a_failing_write_handed_in_soon_reaches_whoever_asks(engine: Engine) -> None:
    group = GroupCommit(engine)
    group.write(insert(7))
    soon = group.write_soon(insert(7))
    assert group.write(insert(8)) == 8  # its batch failed, and each write ran again alone
    with pytest.raises(sa.exc.IntegrityError):
        group.written(soon)
    assert stored(engine) == [7, 8]
    group.close()


def test_a_write_handed_in_soon_during_a_batch_is_committed_after_it(engine: Engine) -> None:
    group = GroupCommit(engine)
    inside, release = threading.Event(), threading.Event()

    def slow(db: Connection) -> int:
        inside.set()
        release.wait(timeout=30)
        return insert(1)(db)

    leader = threading.Thread(target=group.write, args=(slow,))
    leader.start()
    assert inside.wait(timeout=30)
    soon = group.write_soon(insert(2))  # no thread waits for it to lead the next batch
    release.set()
    leader.join(timeout=30)
    assert soon.done.wait(timeout=groupcommit.SOON_S * 20)
    assert group.written(soon) == 2 and stored(engine) == [1, 2]
    group.close()
