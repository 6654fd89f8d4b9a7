"""A real `nats-server -js` (Debian's `nats-server`) on 127.0.0.1, in a temporary directory.

The server can be stopped and started again on the same port and store, as an outage would
leave it; every server started is stopped by the fixture that made it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

STARTUP_S = 10.0


def nats_server_binary() -> str:
    found = shutil.which("nats-server") or ("/usr/sbin/nats-server"
                                            if Path("/usr/sbin/nats-server").exists() else None)
    if found is None:
        pytest.skip("nats-server is not installed (apt-get install nats-server; `make test` "
                    "installs it as root)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    def __init__(self) -> None:
        self.binary = nats_server_binary()
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="tsq-nats-")
        self._process: subprocess.Popen[bytes] | None = None
        self._log = Path(self._dir.name) / "nats.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
             "-sd", str(Path(self._dir.name) / "store"), "-l", str(self._log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited at start: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not listen within {STARTUP_S} s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def log_tail(self) -> str:
        try:
            return self._log.read_text()[-2000:]
        except OSError:
            return ""
