"""tsq: continuous queries over time series as small functions ("loops")."""

from __future__ import annotations

import logging
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tsq.client import Client

__all__ = ["Client", "__version__"]

# As a library does: tsq's log lines go where `tsq serve` (tsq.logs) sends them, and nowhere
# by default, so a command working locally prints its answer, not the service's log lines.
logging.getLogger("tsq").addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    """`tsq.Client` and `tsq.__version__`, made when first asked for, so `import tsq` stays
    light (importlib.metadata alone takes a CLI call 40 ms)."""
    if name == "Client":
        from tsq.client import Client

        return Client
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
