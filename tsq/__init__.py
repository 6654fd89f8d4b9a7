"""tsq: continuous queries over time series as small functions ("loops")."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    # The installed distribution's, so pyproject.toml is the one place the version is written.
    __version__ = version("tsq")
except PackageNotFoundError:  # a source tree run without installing it
    __version__ = "0+unknown"
__all__ = ["__version__"]
