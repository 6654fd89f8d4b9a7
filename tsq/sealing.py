"""Secrets at rest: the secret-bearing fields of a stored spec (tsq.masking's table) are sealed
with Fernet (AES-128-CBC and HMAC-SHA256, from `cryptography`) before they reach the database,
and opened again as a version is read.

A copy of `tsq.db`, a database dump or a PostgreSQL replica then holds no secret in the clear:
each sealed value is `{sealed:TOKEN}` in place of the value (inside a URL, in place of the
credential only). The key is `TSQ_SECRET_KEY` (a Fernet key), else `secret.key` in the data
directory, made 0600 on first use (tsq.datafiles). Specs stored before sealing existed are read
as they are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from tsq.datafiles import key_file
from tsq.errors import ConfigError
from tsq.masking import mask_spec

__all__ = ["KEY_FILE", "Sealer"]

SEALED = re.compile(r"\{sealed:([A-Za-z0-9_\-=]+)\}")
KEY_FILE = "secret.key"
KEY_ENV = "TSQ_SECRET_KEY"
FERNET_KEY_BYTES = 44  # 32 bytes, url-safe base64


class Sealer:
    def __init__(self, key: bytes, where: str) -> None:
        """`where` says where the key came from, for errors."""
        try:
            self.fernet = Fernet(key)
        except ValueError:
            raise ConfigError(f"{where} is not a key tsq can seal secrets with; expected 32 "
                              f"url-safe base64-encoded bytes, as `python -c 'from "
                              f"cryptography.fernet import Fernet; print(Fernet.generate_key()"
                              f".decode())'` prints") from None
        self.where = where

    @classmethod
    def of(cls, data_dir: Path) -> Sealer:
        """The sealer of `TSQ_SECRET_KEY`, else of the data directory's key file."""
        given = os.environ.get(KEY_ENV)
        if given:
            return cls(given.encode(), KEY_ENV)
        path = data_dir / KEY_FILE
        return cls(key_file(path, Fernet.generate_key, FERNET_KEY_BYTES).strip(), str(path))

    def seal(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """`spec` (a spec's JSON, secrets revealed) with each secret sealed."""
        return mask_spec(spec, self._sealed)

    def unseal(self, stored: Any) -> Any:
        """A stored spec with its sealed secrets opened (`stored` itself if it holds none).

        Most specs hold no secret, and every live loop's spec is read as a service starts:
        one look at the spec's JSON text costs a seventh of walking every value of it."""
        if b"{sealed:" not in orjson.dumps(stored):
            return stored
        return self._opened_in(stored)

    def _opened_in(self, stored: Any) -> Any:
        if isinstance(stored, str):
            return SEALED.sub(self._opened, stored) if "{sealed:" in stored else stored
        if isinstance(stored, dict):
            return {key: self._opened_in(value) for key, value in stored.items()}
        if isinstance(stored, list):
            return [self._opened_in(value) for value in stored]
        return stored

    def _sealed(self, secret: str) -> str:
        return "{sealed:" + self.fernet.encrypt(secret.encode()).decode() + "}"

    def _opened(self, match: re.Match[str]) -> str:
        try:
            return self.fernet.decrypt(match.group(1).encode()).decode()
        except InvalidToken:
            raise ConfigError(f"a loop's secrets were sealed with another key than {self.where}; "
                              f"set TSQ_SECRET_KEY to that key, or put its secret.key back in "
                              f"the data directory") from None
