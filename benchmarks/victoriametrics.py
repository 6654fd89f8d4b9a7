"""A throwaway VictoriaMetrics 1.79 on 127.0.0.1 (`apt-get install victoria-metrics`): a temporary
data directory, retention of 100 years (its retention counts back from now, and tests write
history), and the rollup cache off so that a read sees the latest write."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.influxdb import free_port
from benchmarks.prometheus import _wait_ready

__all__ = ["available", "victoriametrics"]

COMMAND = "victoria-metrics"


def available() -> bool:
    return shutil.which(COMMAND) is not None


@contextmanager
def victoriametrics() -> Iterator[str]:
    """The base URL of a fresh, empty VictoriaMetrics; stopped afterwards."""
    with tempfile.TemporaryDirectory() as root:
        log = Path(root) / "victoria-metrics.log"
        port = free_port()
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [COMMAND, f"-storageDataPath={root}/data", f"-httpListenAddr=127.0.0.1:{port}",
                 "-retentionPeriod=100y", "-search.disableCache"],
                stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(process, f"{base}/health", log)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
