"""The worker supervisor keeps one process per slot for as long as it is healthy: a run stopped
by V8's watchdog leaves it serving, and a process that grew too much is renewed between runs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import psutil
import pytest

from tsq import worker_pool, worker_process
from tsq.hostcalls import HostAnswer
from tsq.outcomes import RunResult, RunStatus
from tsq.runtimes.base import Limits
from tsq.worker_pool import JobListener, WorkerPool
from tsq.worker_process import Job, WorkerOptions

pytestmark = pytest.mark.slow


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    made = WorkerPool(1, WorkerOptions(memory_mb=2048, max_result_bytes=1 << 20))
    yield made
    made.close()


def run(pool: WorkerPool, source: str, timeout_s: float = 5.0) -> RunResult:
    job = Job(run_id="r", runtime="js", version_id=source, source=source, file_name="h.js",
              event={}, env={}, limits=Limits(timeout_s=timeout_s, memory_mb=256))
    listener = JobListener(started=lambda job: None, logs=lambda job, lines: None)
    return pool.submit(job, listener).result(timeout=60)


def test_a_global_set_by_one_run_is_not_seen_by_the_next_in_the_same_worker(
        pool: WorkerPool) -> None:
    setter = "export default async () => { globalThis.kept = 'x'; return typeof kept }"
    probe = "export default async () => typeof kept"
    assert run(pool, setter).result == "string"
    (pid,) = pool.pids()
    assert run(pool, setter).result == "string"  # the same loop again
    assert run(pool, probe).result == "undefined"  # another loop
    assert pool.pids() == [pid]


def test_a_run_stopped_at_its_deadline_leaves_the_worker_serving(pool: WorkerPool) -> None:
    assert run(pool, "export default async () => 1").result == 1
    (pid,) = pool.pids()
    stopped = run(pool, "export default async () => { await null; while (true) {} }", 0.3)
    assert stopped.status == RunStatus.TIMEOUT
    assert run(pool, "export default async () => 2").result == 2
    assert pool.pids() == [pid]


def test_a_worker_that_grew_too_much_is_renewed_between_runs(
        pool: WorkerPool, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(pool, "export default async () => 1").result == 1
    (first,) = pool.pids()
    monkeypatch.setattr(worker_pool, "RENEW_GROWTH_MB", 16)
    monkeypatch.setattr(worker_pool, "RENEW_CHECK_S", 0.0)  # look after every run
    grow = "export default async () => { globalThis.kept = new Float64Array(8 << 20).fill(1); return 3 }"
    assert run(pool, grow).result == 3  # the run itself is unaffected
    (second,) = pool.pids()
    assert second != first
    assert run(pool, "export default async () => 4").result == 4
    assert pool.pids() == [second]


SUPERVISOR = """
import sys, threading
from tsq.runtimes.base import Limits
from tsq.worker_pool import JobListener, WorkerPool
from tsq.worker_process import Job, WorkerOptions

if __name__ == "__main__":
    pool = WorkerPool(1, WorkerOptions(memory_mb=2048, max_result_bytes=1 << 20))
    spin = "export default async () => { await null; while (true) {} }"
    job = Job(run_id="r", runtime="js", version_id="v", source=spin, file_name="h.js",
              event={}, env={}, limits=Limits(timeout_s=600, memory_mb=256))
    started = threading.Event()
    pool.submit(job, JobListener(started=lambda job: started.set(), logs=lambda job, lines: None))
    started.wait(60)
    print(pool.pids()[0], flush=True)
    threading.Event().wait()
"""


def test_workers_die_with_their_supervisor_even_on_kill_9(tmp_path: Path) -> None:
    script = tmp_path / "supervisor.py"
    script.write_text(SUPERVISOR)
    supervisor = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                  text=True)
    try:
        assert supervisor.stdout is not None
        worker = psutil.Process(int(supervisor.stdout.readline()))
        time.sleep(0.5)
        assert worker.cpu_percent(interval=0.5) > 20  # the handler spins (on a busy machine too)
    finally:
        supervisor.kill()
        supervisor.wait(timeout=10)
        if supervisor.stdout is not None:
            supervisor.stdout.close()
    gone, alive = psutil.wait_procs([worker], timeout=10)
    assert gone and not alive


def test_run_now_runs_in_an_idle_worker_and_declines_when_none_is(pool: WorkerPool) -> None:
    def job(source: str) -> Job:
        return Job(run_id="r", runtime="js", version_id=source, source=source, file_name="h.js",
                   event={}, env={}, limits=Limits(timeout_s=5, memory_mb=256))

    listener = JobListener(started=lambda job: None, logs=lambda job, lines: None)
    assert run(pool, "export default async () => 0").result == 0
    (pid,) = pool.pids()
    slow = pool.submit(job("export default () => new Promise(r => setTimeout(() => r(1), 500))"),
                       listener)
    time.sleep(0.2)  # the only slot is busy with it
    assert pool.run_now(job("export default async () => 2"), listener) is None
    assert slow.result(timeout=10).result == 1
    now = pool.run_now(job("export default async () => 3"), listener)
    assert now is not None and now.result == 3
    assert pool.pids() == [pid]  # the same worker, driven from this thread


def test_run_now_never_starts_a_worker_on_the_callers_thread() -> None:
    """A worker dies with the thread that started it (PR_SET_PDEATHSIG); a caller's thread may
    end any time, so only a slot's own thread starts one."""
    pool = WorkerPool(1, WorkerOptions(memory_mb=2048, max_result_bytes=1 << 20))
    try:
        job = Job(run_id="r", runtime="js", version_id="v", source="export default async () => 1",
                  file_name="h.js", event={}, env={}, limits=Limits(timeout_s=5, memory_mb=256))
        listener = JobListener(started=lambda job: None, logs=lambda job, lines: None)
        assert pool.run_now(job, listener) is None
        assert pool.pids() == []
        assert pool.submit(job, listener).result(timeout=60).result == 1
        done = threading.Event()
        answers: list[RunResult | None] = []
        borrower = threading.Thread(target=lambda: (answers.append(pool.run_now(job, listener)),
                                                    done.set()))
        borrower.start()
        borrower.join(timeout=60)
        assert answers and answers[0] is not None and answers[0].result == 1
        (pid,) = pool.pids()
        time.sleep(0.3)  # the borrowing thread has ended: the worker must not have died with it
        assert pool.pids() == [pid]
        assert pool.submit(job, listener).result(timeout=60).result == 1
    finally:
        pool.close()


def test_a_version_s_source_crosses_the_pipe_once_per_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_process, "KNOWN_VERSIONS", 2)
    supervisor, worker = worker_process.KnownVersions(), worker_process.KnownVersions()

    def job(version: str) -> Job:
        return Job(f"run-{version}", "js", version, f"source of {version}", "h.js", {}, {},
                   Limits(1.0, 64))

    sent = [supervisor.sent(job(v)) for v in ("a", "a", "b", "a", "c", "b")]
    # "b" was the least recently used when "c" came: forgotten by both ends, so sent again
    assert [wire[3] for wire in sent] == ["source of a", None, "source of b", None,
                                          "source of c", "source of b"]
    assert [worker.received(wire).source for wire in sent] == [
        f"source of {v}" for v in ("a", "a", "b", "a", "c", "b")]
    assert list(worker.sources) == list(supervisor.sources) == ["c", "b"]


def _submit(pool: WorkerPool, run_id: str, source: str, timeout_s: float = 5.0,
            host: object = None) -> Future[RunResult]:
    job = Job(run_id=run_id, runtime="js", version_id=source, source=source, file_name="h.js",
              event={}, env={}, limits=Limits(timeout_s=timeout_s, memory_mb=256))
    listener = JobListener(started=lambda job: None, logs=lambda job, lines: None,
                           host=host)  # type: ignore[arg-type]
    return pool.submit(job, listener)


PAUSE = "export default async () => { await new Promise(r => setTimeout(r, 300)); return 'paused' }"


def _behind(pool: WorkerPool, first: str, second: str, *, host: object = None
            ) -> tuple[Future[RunResult], Future[RunResult]]:
    """`first` and `second` queued while the slot's process runs a pause, so the slot sends
    `second` behind `first`; waits until `first` runs."""
    paused = _submit(pool, "pause", PAUSE)
    time.sleep(0.05)  # the pause is sent (with nothing queued behind it)
    ahead = _submit(pool, "ahead", first, host=host)
    behind = _submit(pool, "behind", second, host=host)
    assert paused.result(timeout=30).result == "paused"
    deadline = time.monotonic() + 10
    while pool._slots[0].behind is None:  # what the test is about
        assert time.monotonic() < deadline, "the second job was not sent behind the first"
        time.sleep(0.005)
    return ahead, behind


def test_a_job_sent_behind_one_that_calls_the_host_waits_for_its_turn(pool: WorkerPool) -> None:
    calls: list[str] = []

    def host(op: str, args: dict[str, object], arrays: list[object]) -> HostAnswer:
        time.sleep(0.05)  # the job behind is in the pipe before this answer
        calls.append(op)
        return HostAnswer({"written": 1})

    writer = "export default async () => (await db.write('cpu value=1 1')).written + 10"
    ahead, behind = _behind(pool, writer, "export default async () => 2", host=host)
    assert ahead.result(timeout=30).result == 11
    assert behind.result(timeout=30).result == 2
    assert calls == ["db.write"]


def test_cancelling_the_job_behind_leaves_the_one_ahead_running(
        pool: WorkerPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_pool, "BEHIND_WAIT_S", 60.0)  # it stays behind
    ahead, behind = _behind(pool, PAUSE, "export default async () => 2")
    assert pool.cancel("behind")
    assert ahead.result(timeout=30).result == "paused"
    assert behind.result(timeout=30).status == RunStatus.CANCELLED
    assert run(pool, "export default async () => 3").result == 3


def test_the_job_behind_a_killed_one_runs_in_the_replacement(
        pool: WorkerPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_pool, "BEHIND_WAIT_S", 60.0)  # it stays behind
    spin = "export default async () => { globalThis.ran = (globalThis.ran || 0) + 1; while (true) {} }"
    ahead, behind = _behind(pool, spin, "export default async () => typeof ran")
    (pid,) = pool.pids()
    time.sleep(0.1)
    assert pool.cancel("ahead")  # its process is killed, with the job behind in its pipe
    assert ahead.result(timeout=30).status == RunStatus.CANCELLED
    assert behind.result(timeout=30).result == "undefined"
    assert pool.pids() != [pid]


LONG = "export default async () => { await new Promise(r => setTimeout(r, 20000)); return 'long' }"


def test_a_job_behind_a_long_run_is_taken_back_for_a_free_slot(pool: WorkerPool) -> None:
    # As in a pipeline: the one base slot runs a long step with another job sent behind it,
    # while a caller waiting on a step lends its place to an extra slot, which is free.
    ahead, behind = _behind(pool, LONG, "export default async () => 'quick'")
    with pool.lending():
        assert behind.result(timeout=15).result == "quick"
        assert not ahead.done()  # it did not wait out the long run
    assert pool.cancel("ahead")
    assert ahead.result(timeout=30).status == RunStatus.CANCELLED


def test_a_job_taken_back_can_be_cancelled_while_it_waits_again(pool: WorkerPool) -> None:
    ahead, behind = _behind(pool, LONG, "export default async () => 'quick'")
    deadline = time.monotonic() + 10
    while pool._slots[0].behind is not None:  # taken back: no other slot is free to run it
        assert time.monotonic() < deadline, "the job behind was not taken back"
        time.sleep(0.01)
    assert pool.cancel("behind")
    cancelled = behind.result(timeout=5)
    assert cancelled.status == RunStatus.CANCELLED
    assert cancelled.error is not None and "it never started" in cancelled.error.message
    assert not ahead.done()
    assert pool.cancel("ahead")
    assert ahead.result(timeout=30).status == RunStatus.CANCELLED
    assert run(pool, "export default async () => 3").result == 3  # the queue is sound
