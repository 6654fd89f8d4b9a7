"""The service's threads are batch work for the OS (tsq/osthreads.py): every thread of the
process once the service starts, and the threads and worker processes it starts afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="no SCHED_BATCH here")

# In a process of its own: the policy sticks to the threads of the process that sets it.
# Each probe starts as normal work: the test process may be batch work already (a service
# started in it by another test), and its children inherit that.
NORMAL = "os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))"

PROBE = textwrap.dedent("""
    import os, threading, sys
    from tsq.osthreads import batch_threads
    %s

    before = threading.Event(); stop = threading.Event()
    earlier = threading.Thread(target=lambda: (before.set(), stop.wait()), daemon=True)
    earlier.start(); before.wait()
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    changed = batch_threads()
    later = []
    thread = threading.Thread(target=lambda: later.append(os.sched_getscheduler(0)))
    thread.start(); thread.join()
    child = os.fork()
    if child == 0:
        os._exit(0 if os.sched_getscheduler(0) == os.SCHED_BATCH else 1)
    _, status = os.waitpid(child, 0)
    policies = {os.sched_getscheduler(int(t)) for t in os.listdir("/proc/self/task")}
    stop.set(); earlier.join()
    print(changed, policies == {os.SCHED_BATCH}, later == [os.SCHED_BATCH], status == 0,
          batch_threads())
""") % NORMAL


def test_every_thread_becomes_batch_work_and_what_it_starts_too() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    # two threads changed (the main one and the one started before); every thread is batch;
    # a thread and a process started later inherit it; a second call finds nothing to change
    assert out == ["2", "True", "True", "True", "0"]


SERVICE = textwrap.dedent("""
    import os, sys, tempfile
    from tsq.config import Settings
    from tsq.service import Service
    %s

    with tempfile.TemporaryDirectory() as data:
        service = Service(Settings.load(data))
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # a service not started changes nothing
        service.start()
        try:
            service.deploy("functions:\\n  p:\\n    handler: p.js\\n", "loops.yml",
                           {"p.js": "export default async () => 1"}.get)
            assert service.run("p").result == 1
            workers = service.pool.pids()
            threads = {os.sched_getscheduler(int(t)) for t in os.listdir("/proc/self/task")}
            print(threads == {os.SCHED_BATCH}, len(workers) > 0,
                  all(os.sched_getscheduler(pid) == os.SCHED_BATCH for pid in workers))
        finally:
            service.close()
""") % NORMAL


@pytest.mark.slow
def test_a_started_service_runs_as_batch_work_with_its_workers() -> None:
    out = subprocess.run([sys.executable, "-c", SERVICE], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["True", "True", "True"]
