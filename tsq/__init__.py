"""tsq: continuous queries over time series as small functions ("loops")."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
