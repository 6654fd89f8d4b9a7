"""Which data directory a command means, and that `make demo`'s `.tsq/` is found from the clone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest

from tests.conftest import EXAMPLE
from tsq import datadir


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TSQ_DATA_DIR", raising=False)


def test_nearest_local_folder_from_below(tmp_path: Path, no_env: None) -> None:
    (tmp_path / ".tsq").mkdir()
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    assert datadir.locate(cwd=below) == tmp_path / ".tsq"


def test_flag_then_environment_before_the_local_folder(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".tsq").mkdir()
    monkeypatch.setenv("TSQ_DATA_DIR", str(tmp_path / "env"))
    assert datadir.locate(cwd=tmp_path) == tmp_path / "env"
    assert datadir.locate(tmp_path / "flag", cwd=tmp_path) == tmp_path / "flag"


def test_user_data_dir_without_a_local_folder(tmp_path: Path, no_env: None) -> None:
    assert datadir.locate(cwd=tmp_path) == Path(platformdirs.user_data_dir("tsq"))


def test_a_file_named_like_the_folder_is_not_taken(tmp_path: Path, no_env: None) -> None:
    (tmp_path / ".tsq").write_text("not a directory")
    assert datadir.locate(cwd=tmp_path) == Path(platformdirs.user_data_dir("tsq"))


@pytest.mark.slow
def test_commands_typed_in_the_clone_reach_its_data(tmp_path: Path) -> None:
    """What `make demo` leaves (`.tsq/` in the clone) is what the next README line acts on."""
    (tmp_path / ".tsq").mkdir()
    (tmp_path / "sub").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("TSQ_DATA_DIR", "TSQ_URL")}
    env["HOME"] = str(tmp_path / "home")
    deployed = subprocess.run([sys.executable, "-m", "tsq", "deploy", str(EXAMPLE)],
                              cwd=tmp_path / "sub", env=env, capture_output=True, text=True,
                              timeout=120, check=False)
    assert deployed.returncode == 0, deployed.stderr
    assert (tmp_path / ".tsq" / "tsq.db").exists()
    assert not (tmp_path / "home").exists()
