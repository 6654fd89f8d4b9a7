"""`tsq serve` and `tsq stop`: one server per data directory.

A server first locks the data directory (`server.lock`, which holds its pid) and listens on its
port; only then does it start the service, which takes over the runs a stopped server left. So a
second server, or one whose port is taken, fails before it has touched a run. SIGTERM and SIGINT
both stop it through its `finally` blocks, so `server.json` never outlives it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

from tsq import datafiles, logs
from tsq.config import Settings
from tsq.errors import ConfigError, Conflict, NotFound

if TYPE_CHECKING:
    from tsq.service import Service

__all__ = ["listen", "serve", "stop"]

log = logging.getLogger(__name__)

BACKLOG = 2048  # uvicorn's default
STOP_POLL_S = 0.1
SCAN_LOAD_WAIT_S = 5.0  # from numba's cache, half a second; compiling it after an install, more


class _Stopped(BaseException):
    """Raised by the SIGTERM/SIGINT handler: unwinds `serve` through its finally blocks. A
    BaseException, so no `except Exception` on the way swallows it."""


def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT (ConfigError or Conflict if the server cannot start)."""
    logs.setup(settings.log_level, settings.log_format)
    datafiles.private_umask()  # what the server writes in the data directory is the user's
    try:
        with _signals_stop(), _locked(settings):
            if settings.cluster is not None and "api" not in settings.cluster.roles:
                _run_without_api(settings)
            else:
                with contextlib.closing(listen(settings.host, settings.port)) as sock:
                    _run(settings, sock)
    except _Stopped:
        log.info("stopped")


def _run(settings: Settings, sock: socket.socket) -> None:
    import uvicorn

    from tsq.api import create_server_app
    from tsq.service import Service

    url = _url(settings.host, int(sock.getsockname()[1]))
    service = Service(settings)
    warming: threading.Thread | None = None
    try:
        # The app is built before the threads that import (the compiled code's loading, which
        # the start begins, and the warm-up) start: FastAPI reads each route's signature as it
        # adds it, and a start in CI once found `name: str` of a route not a plain type while
        # they imported beside it (60 ms, alone)
        app = create_server_app(service)
        interrupted = service.start()
        # The first writes are as fast as the rest: the compiled line-protocol scan is loaded
        # before the server answers (a write meanwhile would be parsed by pandas' reader)
        if not service.line_parsers.compiled.wait(SCAN_LOAD_WAIT_S):
            log.warning("the compiled line-protocol scan is still loading (numba compiles it "
                        "once after an install); writes are parsed more slowly until then")
        # What the start built (every live loop's version, spec and jobs) lives as long as the
        # server: frozen, the cycle collector no longer walks it at each full collection (a
        # few percent of a core with 10,000 loops).
        gc.freeze()
        warming = threading.Thread(target=_warm_up, args=(service,), name="tsq-warm-up",
                                   daemon=True)
        warming.start()
        server = uvicorn.Server(uvicorn.Config(
            app, log_config=None, log_level=None, access_log=False,
            timeout_graceful_shutdown=5))
        settings.server_file.write_text(json.dumps({"url": url, "pid": os.getpid()}),
                                        encoding="utf-8")
        taken = f"; took over {interrupted} unfinished runs" if interrupted else ""
        # Which file the settings came from, if one: a tsq.toml found in the data directory is
        # otherwise read without a word.
        read = f"; settings from {settings.config_file}" if settings.config_file else ""
        log.info("tsq serving on %s (data in %s%s%s)", url, settings.data_dir, read, taken,
                 extra={"url": url, "data_dir": str(settings.data_dir),
                        "config_file": str(settings.config_file or ""),
                        "took_over": interrupted})
        server.run(sockets=[sock])
    finally:
        settings.server_file.unlink(missing_ok=True)  # first: a second signal may cut close()
        if warming is not None:  # not a store opened after close() closed the others
            warming.join()
        service.close()


def _warm_up(service: Service) -> None:
    """What a first write and a first deploy would load, loaded in a thread as the server
    starts answering: the writes' first, they come sooner."""
    _warm_writes(service)
    _warm_deploys()


def _warm_deploys() -> None:
    """Import the JavaScript runtime and run its compiler once, while the server answers: a
    deploy checks each handler with it, and the first paid for both (80 ms of a deploy that
    then takes 7; in a cluster, most of the time until the workers follow the first ones)."""
    try:
        from tsq.runtimes import get_runtime

        get_runtime("js").prepare("export default async () => 1", "warm.js")
    except Exception:  # the first deploy loads it, or says why it cannot
        log.debug("the JavaScript compiler could not be loaded ahead", exc_info=True)


def _warm_writes(service: Service) -> None:
    """Open the store writes go to (replaying its log) and load what the first write into it
    loads, while the server answers: the store hands DuckDB new series as a pyarrow table,
    and pyarrow's first table imports pandas. The first write paid for them, 0.4-0.5 s. (Not
    waited for before answering: it would put off every start by about as much.)"""
    try:
        import pyarrow

        pyarrow.table({"warm": [0]})
        service.store  # noqa: B018 - opened on first use
    except Exception:  # the first write opens it, or says why it cannot
        log.debug("the store could not be opened ahead", exc_info=True)


def _run_without_api(settings: Settings) -> None:
    """A cluster process that schedules or runs but serves no HTTP: it works until stopped."""
    from tsq.service import Service

    service = Service(settings)
    try:
        service.start()
        assert settings.cluster is not None
        log.info("tsq %s process working (data in %s)", ",".join(sorted(settings.cluster.roles)),
                 settings.data_dir, extra={"data_dir": str(settings.data_dir)})
        while True:
            time.sleep(3600)  # SIGTERM or SIGINT raise _Stopped here
    finally:
        service.close()


@contextlib.contextmanager
def _signals_stop() -> Iterator[None]:
    """SIGTERM and SIGINT raise _Stopped, until uvicorn takes them over while it serves (it
    raises them again once it has stopped, which lands here too)."""
    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise _Stopped

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """Hold the data directory's lock (Conflict if another server does); the kernel releases it
    when this process ends, however it ends, so a crash never leaves a stale lock."""
    fd = os.open(settings.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(_already_serving(settings)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _already_serving(settings: Settings) -> str:
    pid = running_pid(settings)
    where = _recorded_url(settings)
    at = f" at {where}" if where else ""
    return (f"tsq is already serving {settings.data_dir}{at} (pid {pid}); stop it with "
            f"`tsq stop` or use another --data-dir")


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port; ConfigError naming them and what to do if it cannot."""
    where = f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {where}: {exc.strerror}; give --host an address "
                          f"of this machine, like 127.0.0.1 or 0.0.0.0") from None
    sock = socket.socket(family, kind, proto)
    try:
        # Restarting at once must not wait for the last server's connections in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"cannot listen on {where}: the port is in use by another "
                              f"program; choose another with --port") from None
        raise ConfigError(f"cannot listen on {where}: {exc.strerror}; choose another --host "
                          f"or --port") from None
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def running_pid(settings: Settings) -> int | None:
    """The pid of the server holding the data directory's lock; None if none holds it."""
    try:
        fd = os.open(settings.lock_file, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode(errors="replace").strip()
            return int(text) if text.isdigit() else _recorded_pid(settings)
        return None
    finally:
        os.close(fd)  # and with it the shared lock, if this took one


def _recorded(settings: Settings) -> dict[str, object]:
    try:
        data = json.loads(settings.server_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _recorded_url(settings: Settings) -> str | None:
    url = _recorded(settings).get("url")
    return url if isinstance(url, str) else None


def _recorded_pid(settings: Settings) -> int | None:
    """server.json's pid: the lock holder had not written its own yet."""
    pid = _recorded(settings).get("pid")
    return pid if isinstance(pid, int) else None


def stop(settings: Settings, timeout_s: float) -> tuple[int, str | None]:
    """SIGTERM the data directory's server and wait until it has let go of the directory:
    (its pid, its URL). NotFound if none runs, Conflict if it did not stop in time."""
    pid = running_pid(settings)
    if pid is None:
        raise NotFound(f"no tsq server is running for {settings.data_dir}")
    url = _recorded_url(settings)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return pid, url  # it ended meanwhile
    except PermissionError:
        raise Conflict(f"the tsq server for {settings.data_dir} (pid {pid}) belongs to another "
                       f"user; stop it as that user") from None
    deadline = time.monotonic() + timeout_s
    while running_pid(settings) is not None:
        if time.monotonic() > deadline:
            raise Conflict(f"the tsq server (pid {pid}) did not stop within {timeout_s:g} s "
                           f"(it finishes its current requests and runs first); wait, or "
                           f"`kill -9 {pid}` stops it at once")
        time.sleep(STOP_POLL_S)
    return pid, url
