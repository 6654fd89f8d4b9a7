"""tsq: continuous queries over time series as small functions ("loops")."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tsq.client import Client

try:
    # The installed distribution's, so pyproject.toml is the one place the version is written.
    __version__ = version("tsq")
except PackageNotFoundError:  # a source tree run without installing it
    __version__ = "0+unknown"
__all__ = ["Client", "__version__"]

# As a library does: tsq's log lines go where `tsq serve` (tsq.logs) sends them, and nowhere
# by default, so a command working locally prints its answer, not the service's log lines.
logging.getLogger("tsq").addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    """`tsq.Client`, imported when first asked for: `import tsq` stays light."""
    if name == "Client":
        from tsq.client import Client

        return Client
    raise AttributeError(f"module 'tsq' has no attribute {name!r}")
