"""The web UI: loops, a loop's ledger, runs, an explorer for TSL and a deploy form, served by
`tsq serve` at `/` (docs/ui.md). `install(app, service)` puts it on the API's app."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tsq.service import Service

__all__ = ["install"]


def install(app: FastAPI, service: Service) -> None:
    """Put the UI's pages on `app`. Imported here, not with the package, so that
    `python -m tsq.ui.assets` (which `make` runs) runs a module the package has not loaded."""
    from tsq.ui.pages import install as install_pages

    install_pages(app, service)
