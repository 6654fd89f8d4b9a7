"""Whether a module of compiled code (tsq.jit: numba) is loaded in this process, asked without
importing it: the import loads numba, a second or so that a CLI call or a small write should
not wait for. Such a module says so itself with a `loaded()` of its own."""

from __future__ import annotations

import sys

__all__ = ["loaded"]


def loaded(module: str) -> bool:
    """Whether `module` is imported and its compiled code ready (never importing it)."""
    found = sys.modules.get(module)
    # None also while another thread is still importing it: a module is in sys.modules from
    # the start of its import, before the code that defines `loaded` has run
    ready = getattr(found, "loaded", None)
    return ready is not None and bool(ready())
