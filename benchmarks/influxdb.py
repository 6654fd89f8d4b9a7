"""A throwaway InfluxDB 1.6 on 127.0.0.1 (`apt-get install influxdb`): temporary config and data
directory, reporting and continuous queries off, no body or row limits. Used by the ingest
benchmark and by the differential tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx

__all__ = ["available", "influxdb"]

CONFIG = """
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
{data_settings}
[coordinator]
  max-select-point = 0
[http]
  bind-address = "127.0.0.1:{http}"
  log-enabled = false
  max-body-size = 0
  max-row-limit = 0
[continuous_queries]
  enabled = false
[monitor]
  store-enabled = false
"""


def available() -> bool:
    return shutil.which("influxd") is not None


@contextmanager
def influxdb(database: str, *, root: Path | None = None,
             data_settings: str = "") -> Iterator[str]:
    """The base URL of a fresh InfluxDB with `database` created; stopped afterwards. Its files
    go in `root` when given (kept), else in a temporary directory; `data_settings` are lines
    added to the config's [data] section."""
    with nullcontext(str(root)) if root else tempfile.TemporaryDirectory() as top:
        http, rpc = free_port(), free_port()
        config = Path(top) / "influxdb.conf"
        config.write_text(CONFIG.format(root=top, http=http, rpc=rpc,
                                        data_settings=data_settings))
        process = subprocess.Popen(["influxd", "-config", str(config)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{http}"
            _wait_for(f"{base}/ping")
            httpx.post(f"{base}/query", params={"q": f"CREATE DATABASE {database}"}, timeout=30)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_for(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code in (200, 204):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s:g} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
