"""A throwaway VictoriaMetrics 1.79 on 127.0.0.1 (`apt-get install victoria-metrics`): a temporary
data directory, retention of 100 years (its retention counts back from now, and tests write
history), and the rollup cache off so that a read sees the latest write."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from benchmarks.influxdb import free_port
from benchmarks.prometheus import running

__all__ = ["available", "victoriametrics"]

COMMAND = "victoria-metrics"


def available() -> bool:
    return shutil.which(COMMAND) is not None


@contextmanager
def victoriametrics(*, root: Path | None = None) -> Iterator[str]:
    """The base URL of a fresh, empty VictoriaMetrics; stopped afterwards. Its files go in
    `root` (its data in `root`/data) when given, else in a temporary directory."""
    with nullcontext(str(root)) if root else tempfile.TemporaryDirectory() as top:
        log = Path(top) / "victoria-metrics.log"
        port = free_port()
        with running([COMMAND, f"-storageDataPath={top}/data",
                      f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=100y",
                      "-search.disableCache"], f"http://127.0.0.1:{port}", "/health",
                     log) as base:
            yield base
