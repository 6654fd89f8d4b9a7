"""tsq: continuous queries over time series as small functions ("loops")."""

from __future__ import annotations

import logging
from functools import cache

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """`tsq.__version__`, read when first asked for: importlib.metadata takes a CLI call 40 ms."""
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'tsq' has no attribute {name!r}")


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        # The installed distribution's, so pyproject.toml is the one place it is written.
        return version("tsq")
    except PackageNotFoundError:  # a source tree run without installing it
        return "0+unknown"

# As a library does: tsq's log lines go where `tsq serve` (tsq.logs) sends them, and nowhere
# by default, so a command working locally prints its answer, not the service's log lines.
logging.getLogger("tsq").addHandler(logging.NullHandler())
