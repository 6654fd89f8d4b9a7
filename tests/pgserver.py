"""A PostgreSQL 15 server of the tests' own: Debian's binaries, a temporary directory, a free port
on 127.0.0.1 and its unix socket in that directory; stopped (and the directory removed) when the
context ends. One server serves a whole test session; each test gets a database of its own,
copied from a template the migrations have already brought to the newest revision.

initdb and postgres refuse to run as root, so as root the server runs as the `postgres` system
user (the Debian package creates it), in a directory chowned to it; otherwise as the current user.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "tsq"  # the server's superuser, the one every test connects as
PASSWORD = "tsq-test-password"  # TCP connections need it (scram-sha-256); the socket does not
TEMPLATE = "tsq_template"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def missing() -> str | None:
    """Why no server can be started here, or None if one can."""
    for name in ("initdb", "postgres"):
        if not (BIN / name).is_file():
            return (f"PostgreSQL 15 is not installed ({BIN / name} is missing): "
                    f"tests/install-servers installs it (apt-get install postgresql-15)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run PostgreSQL as"
    return None


class PostgresServer:
    """A running server: URLs for SQLAlchemy, and fresh databases."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self._numbers = itertools.count(1)
        self.command: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (again, after `stop`: same port, same data), ready on return."""
        log = self.directory / "server.log"
        with log.open("ab") as output:
            self.process = subprocess.Popen(self.command, stdout=output,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        _wait_ready(self, self.process, log)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None

    def url(self, database: str, password: str = PASSWORD) -> str:
        return f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """A connection to the maintenance database over the unix socket, in autocommit (what
        CREATE and DROP DATABASE need)."""
        return psycopg.connect(host=str(self.directory), port=self.port, user=USER,
                               dbname="postgres", autocommit=True)

    def create_database(self, template: str | None = TEMPLATE, name: str | None = None,
                        icu_locale: str | None = None) -> str:
        """A new database (a copy of `template`, or empty with None, collating by ICU's
        `icu_locale` if given, else by code point); its name."""
        name = name or f"test_{next(self._numbers)}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if icu_locale is not None:
            statement = sql.SQL("{} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE {}").format(
                statement, sql.Literal(icu_locale))
        elif template is not None:
            # FILE_COPY copies the template's files, faster than WAL_LOG's page by page for a
            # small database on a server that does not sync.
            statement = sql.SQL("{} TEMPLATE {} STRATEGY FILE_COPY").format(
                statement, sql.Identifier(template))
        with self.admin() as admin:
            admin.execute(statement)
        return name

    def drop_database(self, name: str) -> None:
        """Drop `name`, ending the sessions engines of the test still hold on it."""
        with self.admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    @contextmanager
    def own_database(self) -> Iterator[str]:
        """The URL of a new database (a copy of the template), dropped afterwards."""
        name = self.create_database()
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)


@contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A server started for the caller and stopped when the context ends; `durable` keeps
    PostgreSQL's own settings for commits (what a measurement needs), else each commit skips
    the disk (what a test needs)."""
    directory = Path(tempfile.mkdtemp(prefix="tsq-pg-"))
    server: PostgresServer | None = None
    try:
        as_user = _as_server_user(directory)
        data = directory / "data"
        password_file = directory / "password"
        password_file.write_text(PASSWORD)
        _run([*as_user, str(BIN / "initdb"), "-D", str(data), "-U", USER,
              f"--pwfile={password_file}", "--auth-local=trust", "--auth-host=scram-sha-256",
              "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"])
        port = _free_port()
        # Durability is no concern of a test server: fsync off makes each commit cheap.
        fast = ([] if durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                    "-c", "full_page_writes=off"])
        server = PostgresServer(directory, port)
        server.command = [*as_user, str(BIN / "postgres"), "-D", str(data), "-p", str(port),
                          "-h", "127.0.0.1", "-k", str(directory), *fast,
                          "-c", "max_connections=300", "-c", "shared_buffers=64MB"]
        server.start()
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _as_server_user(directory: Path) -> list[str]:
    """The command prefix that runs a program as the server's user; `directory` is made its."""
    if os.geteuid() != 0:
        return []
    user = pwd.getpwnam("postgres")
    os.chown(directory, user.pw_uid, user.pw_gid)
    # setpriv execs the program itself, so the pid the tests hold is the server's own and a
    # signal to it reaches the server (runuser would stand in between).
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
            "--reset-env", "--"]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: "
                           f"{done.stderr or done.stdout}")


def _free_port() -> int:
    """A free port; never 5432, where a cluster the Debian package started may listen."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != 5432:
            return port


def _wait_ready(server: PostgresServer, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            server.admin().close()
            return
        except psycopg.OperationalError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                state = ("exited " + str(process.returncode) if process.poll() is not None
                         else f"not ready after {START_TIMEOUT_S:.0f} s")
                raise RuntimeError(f"PostgreSQL on port {server.port} {state} ({exc}); its "
                                   f"log: {log.read_text(errors='replace')[-2000:]}") from None
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT: sessions are ended), then SIGKILL if it does not end in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)
