"""The `tsq` commands around a server: --version, stop, and the config file."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from tests.test_cli import tsq


def test_version(tmp_path: Path) -> None:
    shown = tsq(tmp_path, "--version")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"tsq {version('tsq')}\n"
