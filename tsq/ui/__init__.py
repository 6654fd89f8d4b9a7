"""The web UI: loops, a loop's ledger, runs, an explorer for TSL and a deploy form, served by
`tsq serve` at `/` (docs/ui.md). `install(app, service)` puts it on the API's app."""

from __future__ import annotations

from tsq.ui.pages import install

__all__ = ["install"]
