from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests import pgserver
from tsq import db
from tsq.api import create_server_app
from tsq.config import Settings
from tsq.service import Service

ROOT = Path(__file__).resolve().parents[1]
# The reference cases the tests check against, copied into the project (see its README.md).
CONFORMANCE = ROOT / "tests" / "conformance"
EXAMPLE = ROOT / "examples" / "hello" / "loops.yml"


# Counts the conformance and differential modules keep (passed / skipped / …), by suite, printed
# in the terminal summary: a line written while the tests run is lost in the progress output.
SUMMARY_COUNTS: dict[str, tuple[tuple[str, ...], Counter[str]]] = {}
DIFFERENTIAL = ("agree", "xfail", "skipped")


def summary_counts(name: str, kinds: tuple[str, ...] = DIFFERENTIAL) -> Counter[str]:
    """The counter of suite `name`, printed at the end of the run in the order of `kinds`."""
    return SUMMARY_COUNTS.setdefault(name, (kinds, Counter()))[1]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for name, (kinds, counts) in SUMMARY_COUNTS.items():
        if counts:
            terminalreporter.write_line(f"{name}: " + ", ".join(
                f"{counts[k]} {k}" for k in kinds))


@pytest.fixture(scope="session")
def postgres() -> Iterator[pgserver.PostgresServer]:
    """A PostgreSQL server for the session, with a template database at the newest revision
    (skipped, saying why, where PostgreSQL 15 is not installed)."""
    reason = pgserver.missing()
    if reason is not None:
        pytest.skip(reason)
    with pgserver.postgres_server() as server:
        server.create_database(template=None, name=pgserver.TEMPLATE)
        db.connect(server.url(pgserver.TEMPLATE)).dispose()  # a template must have no sessions
        yield server


# The backends the run store is tested on: SQLite (None: the data directory's default file) and
# PostgreSQL (a database of the test's, or the module's, own).
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    server: pgserver.PostgresServer = request.getfixturevalue("postgres")
    with server.own_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The database URL of a test run on each backend (None: SQLite in the data directory)."""
    with database(request) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """`database_url` for a module's tests that share one service."""
    with database(request) as url:
        yield url


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(Settings.load(tmp_path_factory.mktemp("data")))
    svc.start()
    yield svc
    svc.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(service: Service) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 around `service`; its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_server_app(service), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def tsq_server() -> Iterator[str]:
    """A tsq API server of its own (a fresh data directory, no scheduler): what the Warp 10
    connector's tests point at."""
    with tempfile.TemporaryDirectory() as data:
        # tokens off (loopback): the connector's tests are of Warp 10's protocol; the tokens
        # tsq asks of Warp 10 clients are tests/test_access.py's
        svc = Service(Settings.load(data, flags={"auth": "off"}))
        try:
            with serving(svc) as url:
                yield url
        finally:
            svc.close()


@pytest.fixture(scope="module")
def api(service: Service) -> Iterator[httpx.Client]:
    """A real uvicorn server on 127.0.0.1 around the module's service."""
    with serving(service) as url, httpx.Client(base_url=url, timeout=60,
                                                headers=bearer(service)) as client:
        yield client


def bearer(service: Service) -> dict[str, str]:
    """The headers that authenticate a test's requests with the service's admin token."""
    return {"Authorization": f"Bearer {service.admin_token}"} if service.admin_token else {}


def demo_reports(started: datetime, ended: datetime) -> set[int]:
    """How many daily reports `tsq demo` makes, run between `started` and `ended`: one for each
    whole day of its 9 days of points before the hour it starts in, so 9 when it starts in the
    hour after midnight (UTC) and 8 otherwise (a demo that crosses an hour may make either)."""
    return {9 if t.hour == 0 else 8 for t in (started, ended)}


def loop_file(name: str, handler: str, extra: str = "") -> str:
    return f"functions:\n  {name}:\n    handler: {handler}\n{extra}"


def deploy(api: httpx.Client, name: str, source: str, extra: str = "") -> httpx.Response:
    """Deploy a one-loop file whose handler is `source`, through the API."""
    return api.post("/v1/loops", json={"content": loop_file(name, f"{name}.js", extra),
                                       "files": {f"{name}.js": source}})


def run(api: httpx.Client, name: str, **body: Any) -> httpx.Response:
    return api.post(f"/v1/loops/{name}/run", json=body)


def tsq(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The `tsq` command on the data directory `data`, as a user types it."""
    env = {**os.environ, "TSQ_DATA_DIR": str(data), "TSQ_WORKERS": "1"}
    env.pop("TSQ_URL", None)
    return subprocess.run([sys.executable, "-m", "tsq", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
