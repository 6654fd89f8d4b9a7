"""Which fields of a loop hold secrets, and the one function that masks them.

`SECRET_FIELDS` is the table: where in a spec's JSON a secret sits, and whether it is the whole
value (a secret environment variable, a connector's token or password, `{secret: …}` or not) or
the credentials inside a URL (a connector's `url`, a `target:`, a `notify.webhook`). In a URL the
credentials are the password of `user:pass@`, the values of query parameters named like
credentials (`?token=`, `api_key`, `sig`, …) or that look like keys, and path segments that look
like keys (a Slack hook's `/services/T…/B…/XXXX`): long, or mixing letters and digits.

`mask_spec` applies the table with a replacement: `MASK` for everything shown (API answers, CLI
output, the web UI), a keyed digest for the version id (tsq.model), so both see the same fields.
`secret_values` lists the values themselves, which tsq.redaction removes from what runs leave.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tsq.connectors import SECRET_KEYS

__all__ = ["MASK", "SECRET_FIELDS", "mask_spec", "mask_url", "secret_values", "url_secrets"]

MASK = "********"
ANY = "*"  # any key of a mapping, any item of a list
SECRET_NAMES = "$secrets"  # the names a spec's `secrets` lists (its secret environment)
CONNECTOR_SECRETS = "$connector-secrets"  # tsq.connectors.SECRET_KEYS
WHOLE = "whole"
URL = "url"

SECRET_FIELDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("environment", SECRET_NAMES), WHOLE),
    (("connector", CONNECTOR_SECRETS), WHOLE),
    (("connectors", ANY, CONNECTOR_SECRETS), WHOLE),
    (("connector", "url"), URL),
    (("connectors", ANY, "url"), URL),
    (("target",), URL),
    (("events", ANY, "target"), URL),
    (("notify", "webhook"), URL),
)

CREDENTIAL_NAME = re.compile(r"token|key|secret|sig|pass|pwd|auth|code|credential|session",
                             re.IGNORECASE)
# 20 characters of a key's alphabet, or 12 mixing letters and digits
KEY_LIKE = re.compile(r"[A-Za-z0-9_\-+=.~%]{20,}|(?=.*\d)(?=.*[A-Za-z]).{12,}")

Replace = Callable[[str], str]


def _masked(_secret: str) -> str:
    return MASK


def mask_spec(data: Mapping[str, Any], replace: Replace = _masked) -> dict[str, Any]:
    """A copy of `data` (a spec's JSON, secrets revealed) with every secret of SECRET_FIELDS
    replaced by `replace(secret)`: a whole value as its text (`{secret: v}` as v)."""
    names = frozenset(data.get("secrets") or ())
    result: dict[str, Any] = _copy(data)
    for path, kind in SECRET_FIELDS:
        for holder, key in _places(result, path, names):
            value = holder[key]
            if kind == WHOLE:
                if value is not None:
                    holder[key] = replace(_text(value))
            elif isinstance(value, str):
                holder[key] = mask_url(value, replace)
    return result


def secret_values(data: Mapping[str, Any]) -> list[str]:
    """Every secret of SECRET_FIELDS in `data` (a spec's JSON, secrets revealed), as it is."""
    found: list[str] = []
    mask_spec(data, _collecting(found))
    return found


def mask_url(url: str, replace: Replace = _masked) -> str:
    """`url` with each of its `url_secrets` replaced by `replace(secret)`."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        user, _, host = netloc.rpartition("@")
        name = user.partition(":")[0]
        netloc = f"{name}:{replace(parts.password)}@{host}"
    path = "/".join(replace(segment) if _key_like(segment) else segment
                    for segment in parts.path.split("/"))
    query = "&".join(_masked_pair(pair, replace) for pair in parts.query.split("&")
                     ) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    found: list[str] = []
    mask_url(url, _collecting(found))
    return found


def _collecting(found: list[str]) -> Replace:
    """A replacement that notes each secret it is given in `found`."""
    def note(secret: str) -> str:
        found.append(secret)
        return MASK
    return note


def _masked_pair(pair: str, replace: Replace) -> str:
    name, equals, value = pair.partition("=")
    if equals and value and (CREDENTIAL_NAME.search(name) or _key_like(value)):
        return f"{name}={replace(value)}"
    return pair


def _key_like(text: str) -> bool:
    return bool(text) and KEY_LIKE.fullmatch(text) is not None


def _text(value: Any) -> str:
    if isinstance(value, Mapping) and "secret" in value:
        value = value["secret"]
    return str(value)


def _copy(value: Any) -> Any:
    """A copy of the mappings and lists of `value`, so that masking changes no caller's."""
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(item) for item in value]
    return value


def _places(value: Any, path: tuple[str, ...], names: frozenset[str]
            ) -> Iterator[tuple[Any, Any]]:
    """(container, key) of each place `path` names in `value`."""
    if not path:
        return
    step, rest = path[0], path[1:]
    for key in _keys(value, step, names):
        if not rest:
            yield value, key
        else:
            yield from _places(value[key], rest, names)


def _keys(value: Any, step: str, names: frozenset[str]) -> Iterable[Any]:
    if isinstance(value, list):
        return range(len(value)) if step == ANY else ()
    if not isinstance(value, dict):
        return ()
    if step == ANY:
        return list(value)
    if step == SECRET_NAMES:
        return [key for key in value if key in names]
    if step == CONNECTOR_SECRETS:
        return [key for key in value if key in SECRET_KEYS]
    return [step] if step in value else []

