"""The data directory's own files are the user's alone: the directory is 0700 and the files tsq
creates in it (the database and its WAL, the store, the key files) are 0600.

The database holds the loops' secrets and every run's results, so another account on the
machine must read none of it. SQLite creates its -wal and -shm files with the mode of the
database file, so creating that file 0600 before SQLite opens it covers them; `tsq serve` also
sets its umask to 077 (`private_umask`), for the files its store and artifacts make later.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from tsq.errors import ConfigError

__all__ = ["ADMIN_TOKEN_FILE", "VERSION_KEY_FILE", "key_file", "local_token",
           "private_database", "private_directory", "private_file", "private_umask", "version_key"]

ADMIN_TOKEN_FILE = "admin.token"  # the data directory's admin token (tsq.tokens), 0600
VERSION_KEY_FILE = "version.key"  # HMAC key of the secrets in version ids (tsq.model)
KEY_BYTES = 32


def private_directory(path: Path) -> None:
    """Create `path` (and its parents) if needed, and make it the owner's alone."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(PermissionError):  # a directory another account owns stays as is
        path.chmod(0o700)


def private_file(path: Path) -> None:
    """Create `path` empty and 0600 if it does not exist; make it 0600 if it does."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    with contextlib.suppress(PermissionError):
        path.chmod(0o600)


def private_database(database: str | None) -> None:
    """Create an SQLite database file (its path, from its URL) 0600 before SQLite does, so
    that its WAL and shared-memory files are 0600 too. In-memory databases have no file."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.parent.is_dir():
        private_file(path)


def private_umask() -> None:
    """Files this process creates from now on are the owner's alone."""
    os.umask(0o077)


def version_key(data_dir: Path) -> bytes:
    """The key for version ids: derived from `TSQ_SECRET_KEY` when it is set (so every process
    of a cluster, each with a data directory of its own, gives the same content the same id);
    else the data directory's, made (random, 0600) the first time, then read, so the ids of the
    same content stay the same across restarts."""
    shared = os.environ.get("TSQ_SECRET_KEY")
    if shared:
        return hmac.new(shared.encode(), b"tsq version ids", hashlib.sha256).digest()
    return key_file(data_dir / VERSION_KEY_FILE, lambda: secrets.token_bytes(KEY_BYTES),
                    KEY_BYTES)


def key_file(path: Path, make: Callable[[], bytes], size: int) -> bytes:
    """The key in `path`, made by `make` (`size` bytes) and written 0600 if there is none. Two
    processes starting at once agree: one creates the file, the other waits to read it."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return _whole_key(path, size)
    key = make()
    with os.fdopen(descriptor, "wb") as out:
        out.write(key)
    return key


def _whole_key(path: Path, size: int, attempts: int = 50) -> bytes:
    """The key in `path` once it is whole (the process making it may be writing it now)."""
    key = b""
    for _ in range(attempts):
        key = path.read_bytes()
        if len(key) >= size:
            return key
        time.sleep(0.01)
    raise ConfigError(f"{path} holds {len(key)} bytes, not a key of {size}; delete it, and tsq "
                      f"makes a new one")


def local_token(data_dir: Path) -> str | None:
    """The token a client on this machine sends: `TSQ_TOKEN`, else the data directory's admin
    token, else none."""
    given = os.environ.get("TSQ_TOKEN", "").strip()
    if given:
        return given
    try:
        return (data_dir / ADMIN_TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
