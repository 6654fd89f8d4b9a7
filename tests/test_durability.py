"""Every write `/write` acknowledged survives `kill -9` of the server: a client streams batches of
line protocol, the server is killed mid-stream, started again on the same data directory, and
every acknowledged point must be read back with its value. A batch is one transaction, so an
unacknowledged one is there whole or not at all. A torn tail of the store's write-ahead log (a
crash in the middle of a write) must not keep the store from opening either."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import free_port
from tests.test_restart import serve
from tsq.connectors.embedded import HEAD_SUFFIX, PAST_SUFFIX, STORE_FILE, WAL_SUFFIX

pytestmark = pytest.mark.slow

HOSTS = 4
PER_HOST = 500  # points of each host in a batch: 2,000 lines a batch
START_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z: behind the head, into the table
# An hour ago: inside the head of a fresh store (its newest two hours, connectors/head.py);
# batches of HEAD_PER_HOST points a host then stay in the past (the query reads up to now)
HEAD_START_NS = (time.time_ns() // 10**9 - 3600) * 10**9
HEAD_PER_HOST = 100
STEP_NS = 10**9
SELECT = 'select("dur").from(0)'


def batch(number: int, per_host: int = PER_HOST, start_ns: int = START_NS,
          hosts: int = HOSTS) -> bytes:
    """Batch `number`: each host's next `per_host` seconds, the value naming batch and line."""
    lines = [f"dur,host=h{host} value={number * 100_000 + i} "
             f"{start_ns + (number * per_host + i) * STEP_NS}"
             for host in range(hosts) for i in range(per_host)]
    return "\n".join(lines).encode()


@dataclass
class Client:
    """Posts batches 0, 1, 2, … until the server stops answering; keeps which got a 204."""
    port: int
    acknowledged: list[int] = field(default_factory=list)
    sent: int = 0
    per_host: int = PER_HOST
    start_ns: int = START_NS
    hosts: int = HOSTS
    failure: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)  # no batch after this

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                body = batch(self.sent, self.per_host, self.start_ns, self.hosts)
                self.sent += 1
                try:
                    answer = client.post(f"http://127.0.0.1:{self.port}/write", content=body)
                except httpx.HTTPError:
                    return  # killed: this batch was not acknowledged
                if answer.status_code != 204:
                    self.failure = f"{answer.status_code}: {answer.text[:200]}"
                    return
                self.acknowledged.append(self.sent - 1)


def stream_and_kill(data: Path, port: int, acknowledged_before_kill: int,
                    per_host: int = PER_HOST, client: Client | None = None,
                    start_ns: int = START_NS, hosts: int = HOSTS,
                    at_once: bool = False, idle: bool = False) -> Client:
    """Start the server, stream batches into it (`client`'s next ones) and SIGKILL it once
    that many are in. `at_once`: each batch into the past goes into DuckDB as it comes (a
    transaction each, in DuckDB's log) instead of waiting in the store's buffer of the past
    (its own log). `idle`: the client stops and its last batch is answered before the kill, so
    no write is cut short in the middle of its log record."""
    client = client or Client(port, per_host=per_host, start_ns=start_ns, hosts=hosts)
    data.mkdir(parents=True, exist_ok=True)
    # Reading every point back is one query larger than a query may be by default.
    (data / "tsq.toml").write_text("max_query_points = 100000000\n" +
                                   ("store_past_points = 0\n" if at_once else ""))
    with serve(data, port) as process:
        sender = threading.Thread(target=client.run, daemon=True)
        sender.start()
        deadline = time.monotonic() + 120
        while len(client.acknowledged) < acknowledged_before_kill:
            assert client.failure is None, client.failure
            assert time.monotonic() < deadline, "the writes did not go through in time"
            time.sleep(0.01)
        if idle:
            client.stop.set()
            sender.join(timeout=30)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        sender.join(timeout=30)
    assert client.failure is None, client.failure
    return client


def stored(port: int) -> tuple[np.ndarray, np.ndarray]:
    """Every point of `dur` (all hosts), as timestamps and values sorted by time then value."""
    answer = httpx.post(f"http://127.0.0.1:{port}/v1/query", json={"tsl": SELECT}, timeout=60)
    assert answer.status_code == 200, answer.text
    series = answer.json()["series"]
    ts = np.concatenate([np.asarray(s["timestamps"], np.int64) for s in series] or [[]])
    values = np.concatenate([np.asarray(s["values"], np.float64) for s in series] or [[]])
    order = np.lexsort((values, ts))
    return ts[order], values[order]


def expected(batches: list[int], client: Client) -> tuple[np.ndarray, np.ndarray]:
    """The points of `batches`, as `stored` gives them (the query answers in ms)."""
    per_host, start_ns = client.per_host, client.start_ns
    numbers = np.asarray(batches, np.int64)[:, None, None]
    line = np.arange(per_host, dtype=np.int64)[None, None, :]
    hosts = np.zeros((1, client.hosts, 1), np.int64)  # every host has the same points
    ts = (start_ns + (numbers * per_host + line + hosts) * STEP_NS) // 10**6
    values = (numbers * 100_000 + line + hosts).astype(np.float64)
    order = np.lexsort((values.ravel(), ts.ravel()))
    return ts.ravel()[order], values.ravel()[order]


def whole_batches(ts: np.ndarray, client: Client) -> list[int]:
    """The batches present, each checked to be there whole (one transaction each)."""
    numbers = (ts * 10**6 - client.start_ns) // STEP_NS // client.per_host
    found, counts = np.unique(numbers, return_counts=True)
    assert np.all(counts == client.hosts * client.per_host), "a batch was stored in part"
    assert found.size == 0 or int(found.max()) < client.sent, "points that were never sent"
    return [int(n) for n in found]


def assert_acknowledged_survived(port: int, client: Client) -> list[int]:
    ts, values = stored(port)
    present = whole_batches(ts, client)
    assert set(client.acknowledged) <= set(present), \
        f"acknowledged batches lost: {sorted(set(client.acknowledged) - set(present))}"
    # Beyond the acknowledged ones, at most the batch in flight at the kill
    assert set(present) - set(client.acknowledged) <= {client.sent - 1}
    want_ts, want_values = expected(present, client)
    np.testing.assert_array_equal(ts, want_ts)
    np.testing.assert_array_equal(values, want_values)
    return present


@pytest.mark.timeout(240)
@pytest.mark.parametrize("round_", range(3))
def test_every_acknowledged_write_survives_kill_9(tmp_path: Path, round_: int) -> None:
    data, port = tmp_path / "data", free_port()
    # Primes: an acknowledgement given before an N-write buffer is flushed loses writes at
    # any kill count N does not divide (a 5-write buffer slipped through at 10)
    client = stream_and_kill(data, port, acknowledged_before_kill=(11, 17, 23)[round_])
    with serve(data, port):
        assert_acknowledged_survived(port, client)


@pytest.mark.timeout(240)
def test_a_kill_after_the_log_was_checkpointed_loses_nothing(tmp_path: Path) -> None:
    """Enough writes that the store checkpoints DuckDB's log into the store file (once a
    transaction leaves more than 1 MB of log, `CHECKPOINT_AFTER`) and starts a new one before
    the kill: what moved and what is in the new log both stay.
    The batches bring a few points of many series, as time-major /write batches do: rows
    (a long stretch of a series would make a block, a few bytes a point in the log)."""
    data, port = tmp_path / "data", free_port()
    client = stream_and_kill(data, port, acknowledged_before_kill=61, per_host=50, hosts=400,
                             at_once=True)
    store, wal = data / STORE_FILE, data / (STORE_FILE + WAL_SUFFIX)
    assert store.stat().st_size > 2**20, "no checkpoint before the kill"
    assert wal.exists() and wal.stat().st_size > 0, "nothing logged since the checkpoint"
    with serve(data, port):
        assert_acknowledged_survived(port, client)


@pytest.mark.timeout(240)
def test_a_second_kill_after_restart_loses_nothing_either(tmp_path: Path) -> None:
    """The log replayed at the first restart is not replayed twice or lost at the second."""
    data, port = tmp_path / "data", free_port()
    first = stream_and_kill(data, port, acknowledged_before_kill=8)
    with serve(data, port):
        kept = assert_acknowledged_survived(port, first)
    second = stream_and_kill(data, port, acknowledged_before_kill=8,
                             client=Client(port, sent=first.sent))
    merged = Client(port, acknowledged=kept + second.acknowledged, sent=second.sent)
    with serve(data, port):
        assert_acknowledged_survived(port, merged)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("torn_bytes", [1, 17, 4096])
def test_a_torn_log_tail_still_opens_and_keeps_the_acknowledged_writes(
        tmp_path: Path, torn_bytes: int) -> None:
    """A crash mid-write leaves a partial record at the end of the log: here the log of the
    acknowledged batches is followed by a record that is cut short (`torn_bytes` of garbage,
    as a half-written batch leaves). The server must start and keep every acknowledged point."""
    data, port = tmp_path / "data", free_port()
    client = stream_and_kill(data, port, acknowledged_before_kill=5, at_once=True)
    wal = data / (STORE_FILE + WAL_SUFFIX)
    assert wal.exists() and wal.stat().st_size > 0, "the kill left no log to tear"
    with wal.open("ab") as log:
        log.write(np.random.default_rng(torn_bytes).bytes(torn_bytes))
    with serve(data, port):
        assert_acknowledged_survived(port, client)


def tear(wal: Path, how: str) -> None:
    """Damage the last record of the log: cut it short, or overwrite its last bytes."""
    size = wal.stat().st_size
    with wal.open("r+b") as log:
        if how == "cut":
            log.truncate(size - 100)
        else:
            log.seek(size - 100)
            log.write(b"\xff" * 8)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", ["cut", "garbled"])
def test_a_damaged_last_record_loses_that_batch_at_most(tmp_path: Path, how: str) -> None:
    """The log's last record damaged (a batch the crash interrupted, written in part or with
    garbage where its end should be): the server starts and keeps every batch before it. A
    garbled record fails its checksum, which DuckDB refuses to open past: the store keeps a copy
    of the log and cuts it back to the last whole record."""
    data, port = tmp_path / "data", free_port()
    # killed idle: a kill in the middle of a batch's record would leave a torn tail, which
    # DuckDB drops as it opens whatever the tear does to it
    client = stream_and_kill(data, port, acknowledged_before_kill=6, at_once=True, idle=True)
    wal = data / (STORE_FILE + WAL_SUFFIX)
    tear(wal, how)
    with serve(data, port):
        ts, _ = stored(port)
        present = whole_batches(ts, client)
    # The damaged record is the last batch committed: the last acknowledged one, or the one in
    # flight if it was committed before the kill
    assert set(client.acknowledged) - set(present) <= {client.acknowledged[-1]}
    copies = list(data.glob(f"{STORE_FILE}{WAL_SUFFIX}.damaged-*"))
    assert len(copies) == (1 if how == "garbled" else 0)


def head_segments(data: Path, suffix: str = HEAD_SUFFIX) -> list[Path]:
    """The head log's segments that hold records (or the past's: `suffix`), oldest first."""
    return [p for p in sorted((data / f"{STORE_FILE}{suffix}").glob("*.log"))
            if p.stat().st_size]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("round_", range(2))
def test_every_acknowledged_write_to_the_head_survives_kill_9(tmp_path: Path,
                                                               round_: int) -> None:
    """The newest points go to the head (memory, and its own log) instead of DuckDB: what was
    acknowledged there survives too, replayed from the log."""
    data, port = tmp_path / "data", free_port()
    client = stream_and_kill(data, port, acknowledged_before_kill=(13, 19)[round_],
                             per_host=HEAD_PER_HOST, start_ns=HEAD_START_NS)
    assert head_segments(data), "nothing was written to the head"
    with serve(data, port):
        assert_acknowledged_survived(port, client)


# Where a batch waits in a log of the store's own: the head (the newest points), or the buffer
# of the past (points behind the head, before they go into the table together)
OWN_LOGS = {"head": (HEAD_SUFFIX, HEAD_PER_HOST, HEAD_START_NS),
            "past": (PAST_SUFFIX, PER_HOST, START_NS)}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", ["cut", "garbled"])
@pytest.mark.parametrize("log", sorted(OWN_LOGS))
def test_a_damaged_tail_of_the_stores_own_log_loses_that_batch_at_most(
        tmp_path: Path, how: str, log: str) -> None:
    """The last record of the head's log, or of the past's, cut short or garbled (its
    checksum fails): the server starts, keeps every batch before it (the past's written into
    the table as it opens) and a copy of the damaged segment."""
    suffix, per_host, start_ns = OWN_LOGS[log]
    data, port = tmp_path / "data", free_port()
    client = stream_and_kill(data, port, acknowledged_before_kill=6, per_host=per_host,
                             start_ns=start_ns)
    duckdb_log = data / (STORE_FILE + WAL_SUFFIX)
    assert not duckdb_log.exists() or duckdb_log.stat().st_size < 2**16, \
        "the batches went into DuckDB"
    last = head_segments(data, suffix)[-1]
    tear(last, how)
    with serve(data, port):
        ts, _ = stored(port)
        present = whole_batches(ts, client)
    assert set(client.acknowledged) - set(present) <= {client.acknowledged[-1]}
    assert len(list(last.parent.glob(f"{last.name}.damaged-*"))) == 1
