"""numba's compiler as tsq uses it: machine code that lets go of the GIL, cached on disk.

numba keeps compiled code beside the module (`__pycache__`) or in its user cache, and refuses
to decorate a function at all when neither can be written (an install on a read-only image, run
by a user without a home). tsq then compiles in memory, once per process, rather than fail to
import: the first large read or write of each process waits a second or two longer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from numba import njit

__all__ = ["inlined_machine_code", "machine_code"]

log = logging.getLogger(__name__)


def machine_code(function: Callable[..., Any], **options: Any) -> Any:
    """`function` compiled by numba on its first call (nopython, nogil), cached if it can be."""
    try:
        return njit(nogil=True, cache=True, **options)(function)
    except RuntimeError as exc:  # "cannot cache function …: no locator available"
        log.warning("numba cannot cache %s (%s); compiling it in memory in each process",
                    function.__qualname__, exc)
        return njit(nogil=True, **options)(function)


def inlined_machine_code(function: Callable[..., Any]) -> Any:
    """`machine_code` for a small helper of a byte-by-byte loop: numba copies its code into
    each caller (which compiles it with its own options), where LLVM alone left a call for
    each token and number (the line scan: 0.77 -> 0.62 ms for 5,000 lines). It is never
    compiled on its own unless called from Python, so its `signatures` stay empty."""
    return machine_code(function, inline="always")
