"""A clone stands alone: nothing reads outside the repository, and `make test` says what it
cannot install before it runs."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

from tests.conftest import ROOT

SOURCE_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".sh", ".js", ".lark", ".yml", ".yaml", ""}



def _tracked() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    return [ROOT / name for name in listed if (ROOT / name).suffix in SOURCE_SUFFIXES]


def test_nothing_reads_beside_the_clone() -> None:
    outside = re.compile(r"\.\./shared")  # a pattern, so this file does not name the path itself
    offenders = [str(path.relative_to(ROOT)) for path in _tracked()
                 if path.is_file() and outside.search(path.read_text(errors="replace"))]
    assert offenders == []


def test_the_conformance_cases_are_in_the_project() -> None:
    cases = ROOT / "tests" / "conformance"
    assert {p.name for p in cases.glob("*.jsonl")} >= {
        "tsl_warpscript.jsonl", "tsl_promql.jsonl", "metronome_schedules.jsonl"}
    assert (cases / "README.md").is_file()


def test_make_test_names_what_it_will_skip_where_it_cannot_install(tmp_path: Path) -> None:
    """No root (a stand-in `id` says uid 1000) and no servers on PATH: the script installs
    nothing, names the skipped tests and gives the one command that installs them."""
    fake_id = tmp_path / "id"
    fake_id.write_text("#!/bin/sh\necho 1000\n")
    fake_id.chmod(fake_id.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run(["/bin/bash", str(ROOT / "tests" / "install-servers")], env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "InfluxDB 1.6: tests/kernels/test_influx_differential.py" in done.stdout
    assert "Prometheus 2.42: tests/runtimes/tsl/test_prometheus_differential.py" in done.stdout
    assert "VictoriaMetrics 1.79: tests/connectors/test_prometheus.py" in done.stdout
    assert "sudo apt-get install influxdb prometheus victoria-metrics" in done.stdout
