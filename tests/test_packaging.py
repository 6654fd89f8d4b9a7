"""`make install` as a newcomer sees it: an editable install with no build warnings, as a plain
path entry, where tsq.runtimes, tsq.connectors and tsq.grammar (links) import."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import venv
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import ROOT

WARNINGS = re.compile(r"(?i)deprecat|BuildBackendWarning|SetuptoolsWarning|license")



@pytest.mark.slow
@pytest.mark.timeout(300)
def test_editable_install_is_quiet_and_a_path_entry(tmp_path: Path) -> None:
    venv.create(tmp_path / "venv")
    python = tmp_path / "venv" / "bin" / "python"
    # The test environment's pip (`make install` upgrades pip first: old ones hide what the
    # build backend warns), installing into the new venv.
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                                "--no-deps", "-e", str(ROOT)],
                               capture_output=True, text=True, timeout=240, check=False)
    assert installed.returncode == 0, installed.stderr
    said = installed.stdout + installed.stderr
    assert not WARNINGS.findall(said), said
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path("
                                "'purelib'))"], capture_output=True, text=True,
                               check=True).stdout.strip())
    [entry] = site.glob("__editable__.tsq-*.pth")
    assert entry.read_text().split() == [str(ROOT)]
    assert not list(site.glob("__editable__*finder*"))  # no import hook
    # The dependencies come from the test environment's own site-packages.
    (site / "zz-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    imported = subprocess.run(
        [python, "-c", "import tsq.runtimes.tsl, tsq.connectors.embedded, tsq.grammar, tsq; "
                       "print(tsq.runtimes.tsl.__file__, tsq.__version__)"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False)
    assert imported.returncode == 0, imported.stderr
    origin, version = imported.stdout.split()
    assert origin == str(ROOT / "tsq" / "runtimes" / "tsl" / "__init__.py")
    assert version == metadata.version("tsq")


def test_the_ui_assets_step_make_runs_warns_of_nothing() -> None:
    """`make` runs `python -m tsq.ui.assets`: while importing the package imported that module
    too, every new user's `make demo` printed runpy's RuntimeWarning about it."""
    ran = subprocess.run([sys.executable, "-W", "error", "-c",
                          "import sys, tsq.ui; assert 'tsq.ui.assets' not in sys.modules"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
