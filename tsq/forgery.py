"""Requests a web page could forge: the API answers only to its own host names and origins.

A page on any site can make a visitor's browser send requests to `http://127.0.0.1:8080`:
simple ones (a form, or `fetch` with a text/plain body) without asking first, and, through DNS
rebinding, any request under a name the attacker controls that resolves to 127.0.0.1. So:

- the `Host` header must name the server: a loopback name, the address it listens on, or one
  of `allowed_hosts` (`*` allows any, for a server behind a proxy that checks it);
- a request with an `Origin` (browsers send one with every cross-site request and every
  POST) must come from such a host too;
- a state-changing `/v1/` request with a body must say `application/json`: the content types a
  page may send without asking first (text/plain, forms) are refused. The write endpoints that
  take line protocol or GTS text as InfluxDB and Warp 10 clients send it are the exception; the
  Host and Origin checks guard them.
Clients that are not browsers (curl, the CLI, Telegraf, influxdb-client) send a matching Host
and no Origin, and are not affected.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ForgeryGuard", "allowed_host_names"]

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})  # listening everywhere names no host
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SIMPLE_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
# Paths whose bodies are line protocol or GTS text, as InfluxDB and Warp 10 clients send them.
TEXT_BODIES = frozenset({"/v1/write", "/write", "/api/v2/write", "/api/v0/update",
                         "/api/v0/exec"})


def allowed_host_names(listen_host: str, allowed: str) -> frozenset[str] | None:
    """The host names the API answers to (None: any), from the address it listens on and the
    `allowed_hosts` setting (comma-separated)."""
    extra = {name.strip().lower().strip("[]") for name in allowed.split(",") if name.strip()}
    if "*" in extra:
        return None
    listen = listen_host.lower().strip("[]")
    return frozenset(LOOPBACK | extra | ({listen} - ANY_ADDRESS))


class ForgeryGuard:
    def __init__(self, app: ASGIApp, hosts: Iterable[str] | None) -> None:
        self.app = app
        self.hosts = None if hosts is None else frozenset(hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, kind, message = refusal
        body = orjson.dumps({"error": {"type": kind, "message": message, "details": {}}})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """(status, error type, message) of a request to refuse; None to serve it."""
        headers = {key.decode("latin-1"): value.decode("latin-1")
                   for key, value in scope.get("headers") or []}
        host = headers.get("host")
        if host is not None and not self.allowed(_name_of(host)):
            return 400, "BadRequest", (
                f"this server does not answer to host {host!r} (a page using DNS rebinding "
                f"would send its own name); if that is how clients reach it, add the name to "
                f"allowed_hosts (--allowed-hosts, TSQ_ALLOWED_HOSTS), or '*' for any")
        origin = headers.get("origin")
        method = scope.get("method", "GET")
        if origin is not None and ((origin == "null" and method in CHANGES) or (origin != "null"
                                   and not self.allowed(urlsplit(origin).hostname or ""))):
            return 403, "Forbidden", (
                f"requests from web pages at {origin!r} are refused: tsq answers only to its "
                f"own origins; add the host to allowed_hosts if it is one of them")
        path = scope.get("path", "")
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if (method in CHANGES and path.startswith("/v1/") and path not in TEXT_BODIES
                and kind in SIMPLE_TYPES):
            return 415, "BadRequest", (
                f"{method} {path} takes JSON: send the body with content-type: "
                f"application/json, not {kind} (which any web page could send)")
        return None

    def allowed(self, name: str) -> bool:
        return self.hosts is None or name.lower().strip("[]") in self.hosts


def _name_of(host: str) -> str:
    """The name of a Host header: without its port, IPv6 brackets kept off."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
