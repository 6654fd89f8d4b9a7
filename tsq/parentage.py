"""A child process that dies with its parent, kill -9 included.

Linux sends a child a signal of its choice when the thread that started it ends
(`PR_SET_PDEATHSIG`, prctl(2)); a process the supervisor started must not outlive it, even one
spinning in V8 (a worker)."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys

__all__ = ["die_with_parent"]

PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent() -> None:
    """Be killed when the parent's thread that started this process ends, however it ends."""
    parent = multiprocessing.parent_process()
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent.pid:  # it died before prctl took effect
        os._exit(1)
