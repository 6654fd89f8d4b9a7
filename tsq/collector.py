"""Python's cycle collector, held off while a burst of objects that make no cycles is built.

Each few hundred new containers set the collector off, and every so often it walks every object
the process holds: building ten thousand small dicts (an answer of 10,000 series, a store's
index of a million series) set it off again and again, and took five to seven times as long as
the building itself. Such objects hold no cycles, so nothing is lost by waiting."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
