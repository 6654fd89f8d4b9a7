"""Who may call what: every route of the API with the role it needs, and the credentials a
request may carry (docs/security.md).

The table below names every route; `tests/test_access.py` fails on a route it does not name, so
a new endpoint cannot be open by omission. Credentials are read as each kind of client sends
them: `Authorization: Bearer …` (tsq's CLI and client), `Token …` (influxdb-client 2.x,
Telegraf's `outputs.influxdb_v2`), basic auth or the `u`/`p` parameters with the token as the
password (InfluxDB 1.x clients), `X-Warp10-Token` (Warp 10 tooling), and the web UI's cookie.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request

from tsq.errors import Unauthorized
from tsq.tokens import Principal, Role

__all__ = ["ACCESS", "COOKIE", "Need", "credentials", "need_of", "who"]

COOKIE = "tsq_token"  # the web UI's: HttpOnly, SameSite=Strict, set by /login


@dataclass(frozen=True)
class Need:
    role: Role
    every_project: bool = False  # what the route shows or changes spans projects


READ, RUN, DEPLOY = Need(Role.READ), Need(Role.RUN), Need(Role.DEPLOY)
OPERATOR = Need(Role.READ, every_project=True)
# A token for one project reads its project's points and the shared ones, and writes its
# project's (tsq.projectview); a token for every project, the whole store.
POINTS_IN, POINTS_OUT = Need(Role.WRITE), READ
ADMIN = Need(Role.ADMIN, every_project=True)
# None: open to anyone. Health checks (load balancers, Telegraf and influxdb-client probe them
# without credentials), the API's own description, the UI's static files and its login page.
ACCESS: dict[tuple[str, str], Need | None] = {
    ("GET", "/healthz"): None,
    ("GET", "/ping"): None,
    ("HEAD", "/ping"): None,
    ("GET", "/health"): None,
    ("GET", "/openapi.json"): None,
    ("GET", "/docs"): None,
    ("GET", "/docs/oauth2-redirect"): None,
    ("GET", "/redoc"): None,
    ("GET", "/ui/static/vendor/{name}"): None,
    ("GET", "/login"): None,
    ("POST", "/api/v0/exec"): POINTS_OUT,
    ("POST", "/api/v0/update"): POINTS_IN,
    ("GET", "/api/v0/delete"): POINTS_IN,
    ("POST", "/v1/loops"): DEPLOY,
    ("GET", "/v1/loops"): READ,
    ("GET", "/v1/loops/{name}"): READ,
    ("GET", "/v1/loops/{name}/ledger"): READ,
    ("POST", "/v1/loops/{name}/rollback"): DEPLOY,
    ("DELETE", "/v1/loops/{name}"): DEPLOY,
    ("POST", "/v1/loops/{name}/run"): RUN,
    ("GET", "/v1/runs"): READ,
    ("GET", "/v1/history"): OPERATOR,
    ("GET", "/v1/runs/{run_id}"): READ,
    ("GET", "/v1/runs/{run_id}/logs"): READ,
    ("GET", "/v1/runs/{run_id}/artifacts"): READ,
    ("GET", "/v1/runs/{run_id}/artifacts/{name}"): READ,
    ("POST", "/v1/runs/{run_id}/resume"): RUN,
    ("POST", "/v1/runs/{run_id}/cancel"): RUN,
    ("POST", "/v1/write"): POINTS_IN,
    ("POST", "/write"): POINTS_IN,
    ("POST", "/api/v2/write"): POINTS_IN,
    ("POST", "/v1/backfill"): RUN,
    ("GET", "/v1/backfill/{job_id}"): READ,
    ("POST", "/v1/query"): POINTS_OUT,
    ("GET", "/v1/tokens"): ADMIN,
    ("POST", "/v1/tokens"): ADMIN,
    ("DELETE", "/v1/tokens/{token_id}"): ADMIN,
    ("GET", "/metrics"): OPERATOR,  # every loop's series, of every project
    # The UI's pages show what the token may read: one project's loops and runs, or all.
    ("GET", "/"): READ,
    ("GET", "/ui/loops/{name}"): READ,
    ("GET", "/ui/runs"): READ,
    ("GET", "/ui/runs/{run_id}"): READ,
    ("GET", "/ui/explore"): READ,
    ("GET", "/ui/deploy"): READ,
    ("POST", "/ui/api/compile"): READ,
}
# Bodies a web page could send with a visitor's cookie if it were taken for them: these
# endpoints take a token only as their clients send it, never the UI's cookie.
TEXT_BODIES = frozenset({"/v1/write", "/write", "/api/v2/write", "/api/v0/update",
                         "/api/v0/exec"})


def who(request: Request) -> Principal:
    """The principal the app-wide dependency found for `request` (tsq.api)."""
    principal: Principal = request.state.principal
    return principal


def need_of(method: str, path: str) -> Need | None:
    """What a route needs; a route the table does not name needs an admin (closed by
    default, and the test of the table says which)."""
    return ACCESS.get((method, path), ADMIN)


def credentials(headers: Mapping[str, str], query: Mapping[str, str],
                cookies: Mapping[str, str], path: str) -> str | None:
    """The token a request carries, in any form its kind of client sends it; None if none."""
    given = headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    scheme = scheme.lower()
    if scheme in ("bearer", "token") and value.strip():
        return value.strip()
    if scheme == "basic":
        try:
            _user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("the basic credentials are not base64 of user:password; give "
                               "the token as the password") from None
        return password or None
    if given:
        raise Unauthorized(f"unknown authorization scheme {scheme!r}; send "
                           f"'Authorization: Bearer TOKEN'")
    for found in (headers.get("x-warp10-token"), query.get("p")):
        if found:
            return found
    return cookies.get(COOKIE) if path not in TEXT_BODIES else None


def unknown(given: str | None) -> Unauthorized:
    """Why a request's token, `given` (None: none), is not taken."""
    if given is None:
        return Unauthorized("this request needs a token: send 'Authorization: Bearer TOKEN' "
                            "(on this machine, `tsq token create` makes one, and the CLI uses "
                            "the data directory's admin.token by itself)")
    return Unauthorized("the token is not valid: it is unknown or was revoked "
                        "(`tsq token list` shows the tokens)")


def check(principal: Principal | None, given: str | None, need: Need) -> Principal:
    """The principal, allowed what `need` says; Unauthorized or Forbidden if not."""
    if principal is None:
        raise unknown(given)
    principal.require(need.role, need.every_project)
    return principal
