"""Runs in PostgreSQL beside SQLite, for the capacity model: keyed runs created in batches as the
scheduler creates them (RunStore.create_new, 500 a transaction) and runs claimed as the
dispatcher claims them (RunStore.claim_many: one run a claim, as a worker frees up, and 50 a
claim, as a burst starts), each backend on one connection at a time.

SQLite is a file in a temporary directory in WAL mode (tsq's settings); PostgreSQL 15 is a
server of the benchmark's own (tests/pgserver.py) with PostgreSQL's default durability (fsync
and synchronous commit on), on 127.0.0.1 over TCP as tsq would reach it; then the same with
`synchronous_commit = off` for tsq's connections.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.report import Report
from tests import pgserver
from tsq import db
from tsq.runstore import NewRun, RunStore, run_key

BENCH = "postgres_runs"
INSERT_BATCH = 500  # the scheduler's batch of fires
CLAIM_BATCH = 50


def run(report: Report, *, quick: bool) -> None:
    runs = 2_000 if quick else 50_000
    single_claims = 200 if quick else 5_000
    with tempfile.TemporaryDirectory() as data:
        _measure(report, "SQLite", f"sqlite:///{Path(data) / 'tsq.db'}", runs, single_claims)
    reason = pgserver.missing()
    if reason is not None:
        report.note(BENCH, "PostgreSQL", {"skipped": reason})
        return
    with pgserver.postgres_server(durable=True) as server:
        _measure(report, "PostgreSQL", server.url(server.create_database(template=None)),
                 runs, single_claims)
        # The same server, with commits that do not wait for the disk (set per connection in
        # the URL, as a deployment could): what is left is the network and the work.
        url = server.url(server.create_database(template=None))
        _measure(report, "PostgreSQL async commit",
                 f"{url}?options=-csynchronous_commit%3Doff", runs, single_claims)


def _measure(report: Report, backend: str, url: str, runs: int, single_claims: int) -> None:
    store = RunStore(db.connect(url))
    try:
        fires = [NewRun(project="default", loop=f"loop-{i % 1000}", event="tick",
                        version_id="v1", trigger="schedule", params={"cell": "gra"},
                        key=run_key(f"loop-{i % 1000}", "tick", i), scheduled_ms=i,
                        window=(i - 10_000, i)) for i in range(runs)]
        created: list[str] = []
        insert_s: list[float] = []
        for at in range(0, runs, INSERT_BATCH):
            start = time.perf_counter()
            created += [run.id for run in store.create_new(fires[at:at + INSERT_BATCH])]
            insert_s.append(time.perf_counter() - start)
        assert len(created) == runs, f"{backend}: {len(created)} of {runs} runs created"
        one_s = _claims(store, created[:single_claims], 1)
        many_s = _claims(store, created[single_claims:], CLAIM_BATCH)
        report.add(BENCH, f"{backend} create_new x{INSERT_BATCH}", insert_s)
        report.add(BENCH, f"{backend} claim_many x1", one_s)
        report.add(BENCH, f"{backend} claim_many x{CLAIM_BATCH}", many_s)
        report.note(BENCH, backend, {
            "runs": runs,
            "inserts_per_s": round(runs / sum(insert_s)),
            "claims_per_s_one_at_a_time": round(len(one_s) / sum(one_s)),
            "claims_per_s_in_batches": round(len(many_s) * CLAIM_BATCH / sum(many_s))})
    finally:
        store.close()


def _claims(store: RunStore, ids: list[str], batch: int) -> list[float]:
    """Seconds each claim of `batch` runs took; every run must be claimed."""
    samples = []
    for at in range(0, len(ids), batch):
        chunk = ids[at:at + batch]
        start = time.perf_counter()
        claimed = store.claim_many(chunk)
        samples.append(time.perf_counter() - start)
        assert claimed == set(chunk), f"claimed {len(claimed)} of {len(chunk)}"
    return samples
