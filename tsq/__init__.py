"""tsq: continuous queries over time series as small functions ("loops")."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

try:
    # The installed distribution's, so pyproject.toml is the one place the version is written.
    __version__ = version("tsq")
except PackageNotFoundError:  # a source tree run without installing it
    __version__ = "0+unknown"
__all__ = ["__version__"]

# As a library does: tsq's log lines go where `tsq serve` (tsq.logs) sends them, and nowhere
# by default, so a command working locally prints its answer, not the service's log lines.
logging.getLogger("tsq").addHandler(logging.NullHandler())
