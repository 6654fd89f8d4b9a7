"""The notebooks of notebooks/ run top to bottom in a real kernel (each in a temporary data
directory it removes), and are stored without outputs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT

NOTEBOOKS = ROOT / "notebooks"
NAMES = ("quickstart", "pipelines", "tsl")
CELL_TIMEOUT_S = 300


def notebook(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def test_the_notebooks_are_these() -> None:
    assert sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_stored_without_outputs(name: str) -> None:
    book = notebook(name)
    nbformat.validate(book)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{name}.ipynb cell {cell.id} is stored with outputs; clear them "
                f"(jupyter nbconvert --clear-output --inplace)")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", NAMES)
def test_runs_top_to_bottom(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    # The kernel is this interpreter's (where tsq is installed), with its bin first on PATH, and
    # nothing of the user's Jupyter set-up or tsq server.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TSQ_WORKERS", "1")
    monkeypatch.delenv("TSQ_URL", raising=False)
    book = notebook(name)
    NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [output for cell in book.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert errors == []
    assert list(tmp_path.glob("tmp*")) == []
