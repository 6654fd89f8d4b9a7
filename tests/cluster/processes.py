"""Cluster processes as a user starts them: `tsq serve --cluster … --role …`, each with a data
directory of its own, on 127.0.0.1. Every process started is stopped by `Cluster.close`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.conftest import free_port

STARTUP_S = 60.0
POLL_S = 0.05


class TsqProcess:
    def __init__(self, name: str, role: str, root: Path, env: dict[str, str],
                 store_url: str | None) -> None:
        self.name = name
        self.role = role
        self.data = root / name
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = root / f"{name}.log"
        # tokens off (on loopback): what runs here is of runs through faults and of speed,
        # with clients that talk to any of the processes
        self._env = {**env, "TSQ_AUTH": "off"}
        self._store_url = store_url
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TsqProcess:
        args = [sys.executable, "-m", "tsq", "serve", "--role", self.role,
                "--data-dir", str(self.data), "--port", str(self.port)]
        if self._store_url:
            args += ["--store-url", self._store_url]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                            env=self._env)
        self._wait_started()
        return self

    def _wait_started(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited at start:\n{self.log_text()[-3000:]}")
            if "api" in self.role.split(","):
                try:
                    if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            elif "joined the cluster" in self.log_text():
                return
            time.sleep(POLL_S)
        raise AssertionError(f"{self.name} did not start within {STARTUP_S} s:\n"
                             f"{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """kill -9: no goodbye, no lease given up, runs left running."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def wait_for_log(self, text: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log_text():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never logged {text!r}:\n"
                                     f"{self.log_text()[-3000:]}")
            time.sleep(POLL_S)


class Cluster:
    """Processes of one cluster: one NATS server, one run database, one name."""

    def __init__(self, root: Path, nats_url: str, name: str, database_url: str,
                 **settings: Any) -> None:
        self.root = root
        self.database_url = database_url
        self.processes: list[TsqProcess] = []
        self.env = {**os.environ, "TSQ_CLUSTER": nats_url, "TSQ_CLUSTER_NAME": name,
                    "TSQ_SECRET_KEY": Fernet.generate_key().decode(),
                    "TSQ_DATABASE_URL": database_url, "TSQ_WORKERS": "1",
                    "TSQ_CLUSTER_ACK_WAIT_S": "2", "TSQ_CLUSTER_LEASE_TTL_S": "1",
                    **{f"TSQ_{key.upper()}": str(value) for key, value in settings.items()}}
        self.env.pop("TSQ_URL", None)

    def start(self, name: str, role: str, store_url: str | None = None) -> TsqProcess:
        process = TsqProcess(name, role, self.root, self.env, store_url)
        self.processes.append(process)
        return process.start()

    def leader(self, candidates: list[TsqProcess], timeout_s: float = 15.0) -> TsqProcess:
        """The process that leads the schedulers now."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for process in candidates:
                log = process.log_text()
                if "leads the schedulers now" in log.rsplit("lost the scheduler lease", 1)[-1] \
                        and process.process is not None and process.process.poll() is None:
                    return process
            time.sleep(POLL_S)
        raise AssertionError("no scheduler leads")

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
