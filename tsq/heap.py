"""The C heap of a process that works on large arrays: freed blocks kept for the next ones.

glibc serves a block above its mmap threshold with fresh pages from the kernel and gives them
back when it is freed, so every large numpy array pays a page fault per 4 KiB page, again and
again. The threshold starts at 128 KiB and moves with what is freed, so a query's arrays of
some megabytes (a column of a million points is 8 MB) come and go through the kernel; in a
virtual machine a fault costs several microseconds. Reading the newest hour of 10,000 series
(3.6 M points) took 80-100 ms this way and 33 ms with the threshold at its ceiling, 32 MiB,
where the blocks come from the heap and are reused. Freed memory at the heap's top is kept up
to `TRIM_BYTES` before it is returned. And one arena for every thread: a thread's own arena
gives its large blocks back to the kernel whatever the thresholds say, and the queries run on
threads (the same read took 127 ms on a thread with its own arena, 76 ms with the main one).

A no-op where the C library is not glibc."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["keep_large_blocks"]

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # mallopt's parameters (malloc.h)
MMAP_BYTES = 32 * 1024 * 1024  # the most glibc takes (half its 64 MiB heap size)
TRIM_BYTES = 128 * 1024 * 1024


def keep_large_blocks() -> bool:
    """Raise the process's mmap and trim thresholds and keep one arena; whether the C
    library took them. Call it before threads start: a thread keeps the arena it has."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    taken = all([mallopt(M_MMAP_THRESHOLD, MMAP_BYTES), mallopt(M_TRIM_THRESHOLD, TRIM_BYTES),
                 mallopt(M_ARENA_MAX, 1)])
    if not taken:
        log.debug("the C library refused the heap thresholds")
    return taken
