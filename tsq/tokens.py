"""API tokens: who may do what, in which project.

A token is a random secret (`tsq_…`) given once, when it is made; the database keeps only its
sha256, so a stolen database does not give the tokens away (the secrets are 256 random bits:
a plain hash cannot be guessed back, and a lookup by hash stays one indexed read). Each token has
roles, and is scoped to one project or, for an operator's token, to every project:

- `read`: loops, runs, logs, artifacts and queries;
- `write`: points in (line protocol, GTS);
- `run`: run loops, resume and cancel runs, backfills;
- `deploy`: deploy, roll back and delete loops;
- `admin`: all of these, and tokens themselves.

The first start of a server makes an admin token for every project in the data directory
(`admin.token`, 0600), which the CLI and `tsq.Client` on the same machine send by themselves.
"""

from __future__ import annotations

import enum
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tsq import datafiles
from tsq.clock import Clock, now_ms, wall
from tsq.db import tokens, transaction
from tsq.errors import BadRequest, Forbidden, NotFound

__all__ = ["ANYONE", "Principal", "Role", "TokenStore"]

PREFIX = "tsq_"  # so a token pasted in the wrong place is recognisable (and secret scanners)
LOCAL_ADMIN = "local admin"  # the name of the token `admin.token` holds
CACHE_S = 1.0  # a token's lookup is remembered this long (a revoke elsewhere takes this long)


class Role(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    RUN = "run"
    DEPLOY = "deploy"
    ADMIN = "admin"


ROLE_NAMES = ", ".join(role.value for role in Role)


def roles_of(text: Iterable[str]) -> frozenset[Role]:
    """The roles named, each checked (BadRequest naming the wrong one and the right ones)."""
    found = set()
    for name in text:
        try:
            found.add(Role(name.strip().lower()))
        except ValueError:
            raise BadRequest(f"unknown role {name.strip()!r}; the roles are {ROLE_NAMES}"
                             ) from None
    if not found:
        raise BadRequest(f"a token needs at least one role: {ROLE_NAMES}")
    return frozenset(found)


@dataclass(frozen=True)
class Principal:
    """Who a request is: a token's name, its project (None: every project) and its roles."""

    name: str
    project: str | None
    roles: frozenset[Role]

    def may(self, role: Role) -> bool:
        return role in self.roles or Role.ADMIN in self.roles

    def require(self, role: Role, every_project: bool = False) -> None:
        if not self.may(role):
            raise Forbidden(f"the token {self.name!r} may not do this: it needs the "
                            f"{role.value!r} role (it has {self._roles()})",
                            details={"needs": role.value})
        if every_project and self.project is not None:
            raise Forbidden(f"the token {self.name!r} is for project {self.project!r}; this "
                            f"needs a token for every project", details={"needs": role.value})

    def project_of(self, asked: str | None) -> str | None:
        """The project a request works in: the one asked for (None: any), which a token for
        one project must name or leave out (Forbidden if it names another)."""
        if self.project is None or asked in (None, self.project):
            return asked if self.project is None else self.project
        raise Forbidden(f"the token {self.name!r} is for project {self.project!r}, not "
                        f"{asked!r}")

    def owns(self, project: str) -> bool:
        return self.project is None or self.project == project

    def _roles(self) -> str:
        return ", ".join(sorted(role.value for role in self.roles))


ANYONE = Principal("anyone", None, frozenset({Role.ADMIN}))  # tokens are off


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# one statement object, so SQLAlchemy compiles it once (each lookup after the cache's second)
_BY_HASH = sa.select(tokens).where(tokens.c.hash == sa.bindparam("b_hash"))


class TokenStore:
    def __init__(self, engine: Engine, clock: Clock = wall) -> None:
        self.engine = engine
        self.clock = clock
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def create(self, name: str, roles: Iterable[str], project: str | None = None
               ) -> tuple[dict[str, Any], str]:
        """A new token's record and its secret (shown once; only its hash is kept)."""
        chosen = roles_of(roles)
        if project is None and chosen != {Role.ADMIN} and not name:
            raise BadRequest("name the token")
        secret = PREFIX + secrets.token_urlsafe(32)
        row = {"id": secrets.token_hex(6), "hash": _hash(secret), "name": name or "token",
               "project": project, "roles": ",".join(sorted(r.value for r in chosen)),
               "created_ms": now_ms(self.clock), "revoked_ms": None}
        with transaction(self.engine) as db:
            db.execute(tokens.insert().values(**row))
        return _record(row), secret

    def list(self) -> list[dict[str, Any]]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(tokens).order_by(tokens.c.created_ms)).mappings()
            return [_record(row) for row in rows]

    def revoke(self, token_id: str) -> dict[str, Any]:
        with transaction(self.engine) as db:
            done = db.execute(tokens.update().where(
                tokens.c.id == token_id, tokens.c.revoked_ms.is_(None)).values(
                revoked_ms=now_ms(self.clock)))
            row = db.execute(sa.select(tokens).where(tokens.c.id == token_id)).mappings().first()
        if row is None:
            raise NotFound(f"no token {token_id!r}; `tsq token list` shows their ids")
        with self._lock:
            self._cache.clear()
        record = _record(row)
        record["was_active"] = done.rowcount == 1
        return record

    def principal(self, secret: str) -> Principal | None:
        """Who `secret` is, or None for a token tsq does not know or that was revoked."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(secret)
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[1]
        with self.engine.connect() as db:
            row = db.execute(_BY_HASH, {"b_hash": _hash(secret)}).mappings().first()
        found = None if row is None or row["revoked_ms"] is not None else Principal(
            row["name"], row["project"], roles_of(row["roles"].split(",")))
        with self._lock:
            if len(self._cache) > 10_000:  # guessed tokens must not fill the memory
                self._cache.clear()
            self._cache[secret] = (now, found)
        return found

    def local_admin(self, data_dir: Path) -> str:
        """The secret of the data directory's admin token (`admin.token`, 0600), made when there
        is none or the one there is no longer valid (revoked, or from another database)."""
        path = data_dir / datafiles.ADMIN_TOKEN_FILE
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError:
            secret = ""
        if secret and self.principal(secret) is not None:
            return secret
        _made, secret = self.create(LOCAL_ADMIN, [Role.ADMIN])
        datafiles.private_file(path)
        temporary = path.with_suffix(".tmp")
        datafiles.private_file(temporary)
        temporary.write_text(secret + "\n", encoding="utf-8")
        os.replace(temporary, path)
        return secret


def _record(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "project": row["project"],
            "roles": row["roles"].split(","), "created_ms": row["created_ms"],
            "revoked_ms": row["revoked_ms"]}
