"""Deploying a loop file is one transaction: a failure part-way, or the process killed part-way,
leaves every loop as it was before the deploy, schedules included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tsq.config import Settings
from tsq.loopstore import LoopStore
from tsq.service import Service

LOOPS = 120


def loop_file(prefix: str, rate: str) -> str:
    lines = ["project: many", "functions:"]
    for i in range(LOOPS):
        lines += [f"  {prefix}-{i}:", "    handler: h.tsl", "    events:",
                  f"      - tick: {{rate: '{rate}'}}"]
    return "\n".join(lines) + "\n"


HANDLER = 'select("cpu").last(1m)\n'
FILES = {"h.tsl": HANDLER}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(Settings.load(tmp_path / "data"))
    yield svc
    svc.close()


def state(svc: Service) -> dict[str, Any]:
    loops = {loop["name"]: (loop["version"]["number"], loop["version"]["id"])
             for loop in svc.list_loops("many")["loops"]}
    return {"loops": loops, "schedules": svc.schedules.since_all(
        [("many", name, "tick", "R/2026-01-01T00:00:00Z/PT5M/ET1M") for name in sorted(loops)])}


def fail_after(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """The version write raises at every `count`-th loop: a fault in the middle of a deploy."""
    real = LoopStore._insert_version
    calls = {"n": 0}

    def insert(self: LoopStore, *args: Any) -> bool:
        calls["n"] += 1
        if calls["n"] % count == 0:
            raise RuntimeError("disk full")
        return real(self, *args)

    monkeypatch.setattr(LoopStore, "_insert_version", insert)


def test_a_fault_part_way_deploys_nothing_and_keeps_the_versions_before(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    service.deploy(loop_file("loop", "R/2026-01-01T00:00:00Z/PT5M/ET1M"), "loops.yml", FILES.get)
    before = state(service)
    assert len(before["loops"]) == LOOPS
    fail_after(monkeypatch, LOOPS // 2)
    changed = {"h.tsl": 'select("mem").last(1m)\n'}
    with pytest.raises(RuntimeError, match="disk full"):
        service.deploy(loop_file("loop", "R/2026-01-01T00:00:00Z/PT1M/ET1M"), "loops.yml",
                       changed.get)
    assert state(service) == before
    with pytest.raises(RuntimeError, match="disk full"):
        service.deploy(loop_file("fresh", "R/2026-01-01T00:00:00Z/PT5M/ET1M"), "loops.yml",
                       FILES.get)
    assert not any(loop["name"].startswith("fresh")
                   for loop in service.list_loops("many")["loops"])
    assert state(service) == before


CRASHING_DEPLOY = """
import os, signal, sys
from pathlib import Path
from tsq.config import Settings
from tsq.loopstore import LoopStore
from tsq.service import Service

real, calls = LoopStore._insert_version, [0]
def insert(self, *args):
    calls[0] += 1
    if calls[0] == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)   # no cleanup, no rollback: a crash
    return real(self, *args)
LoopStore._insert_version = insert
svc = Service(Settings.load(sys.argv[1]))
svc.deploy(Path(sys.argv[2]).read_text(), "loops.yml", {{"h.tsl": {handler!r}}}.get)
"""


def test_a_process_killed_mid_deploy_leaves_nothing_deployed(tmp_path: Path) -> None:
    data, file = tmp_path / "data", tmp_path / "loops.yml"
    file.write_text(loop_file("crash", "R/2026-01-01T00:00:00Z/PT5M/ET1M"))
    script = textwrap.dedent(CRASHING_DEPLOY).format(kill_at=LOOPS // 2, handler=HANDLER)
    env = {**os.environ, "TSQ_WORKERS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(data), str(file)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    svc = Service(Settings.load(data))
    try:
        assert svc.list_loops("many")["loops"] == []
        svc.deploy(file.read_text(), "loops.yml", FILES.get)  # and the store is usable after
        assert len(svc.list_loops("many")["loops"]) == LOOPS
    finally:
        svc.close()
