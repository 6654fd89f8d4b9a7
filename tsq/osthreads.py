"""How the OS schedules the service's threads: as batch work (SCHED_BATCH), not as interactive
tasks that preempt each other.

The service's threads hand runs to each other (a caller to a worker slot, the slot to the
settler, the settler back to the caller), and each hand-off wakes a thread. Linux lets a woken
thread of the normal policy preempt the thread that woke it, on its core, and the waker, a
Python thread, is then off the core with the GIL in hand: no thread of the process runs until
it is back. With 8 callers and 2 workers, a fifth of the time the GIL was held it was held so
(in `Condition.notify`, by the settler waking the callers whose runs had ended), and 1,450 runs
a second went through; as batch threads, 1,700. A batch thread that wakes never preempts: it
runs on an idle core at once, or when the running thread waits, or at the next tick.

Threads and processes started later inherit the policy from the thread that starts them, so
the worker processes are batch work too. `Service.start` sets it once for the process's life:
a `tsq serve` process is the service's; a program that starts a service in itself (a test, a
notebook) has its own threads made batch work as well. A thread with another policy (an
administrator's `chrt`) keeps it. A no-op where the OS has no SCHED_BATCH.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["batch_threads"]


def batch_threads() -> int:
    """Make every thread of this process that has the normal policy a batch one; how many
    were changed."""
    batch = getattr(os, "SCHED_BATCH", None)
    normal = getattr(os, "SCHED_OTHER", None)
    if batch is None or normal is None:
        return 0
    try:
        threads = [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: this thread, and those it starts
        threads = [0]
    changed = 0
    for thread in threads:
        with contextlib.suppress(OSError):  # it ended meanwhile
            if os.sched_getscheduler(thread) == normal:
                os.sched_setscheduler(thread, batch, os.sched_param(0))
                changed += 1
    return changed
