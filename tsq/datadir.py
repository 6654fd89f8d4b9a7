"""Which data directory a command means: `--data-dir`, else `TSQ_DATA_DIR`, else the nearest
`.tsq/` folder from the current directory up (as git finds `.git`, so that every command typed
in a project reaches that project's loops, runs and server), else the user's data directory."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["LOCAL_NAME", "locate"]

LOCAL_NAME = ".tsq"


def locate(given: str | Path | None = None, cwd: Path | None = None) -> Path:
    chosen = given or os.environ.get("TSQ_DATA_DIR")
    if chosen:
        return Path(chosen).expanduser()
    return _nearest_local(cwd or Path.cwd()) or Path(platformdirs.user_data_dir("tsq"))


def _nearest_local(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / LOCAL_NAME
        if candidate.is_dir():
            return candidate
    return None
