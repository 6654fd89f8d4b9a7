"""What every connector to a server over HTTP shares: one pooled client, idempotent reads retried
with backoff, and a server's failures as ConnectorErrors that name the connector, its URL (never
a credential) and what was asked."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from tsq import outbound
from tsq.connectors import public_url
from tsq.errors import (
    ConnectorAuthError,
    ConnectorError,
    ConnectorQueryError,
    ConnectorUnavailable,
    ConnectorUnsupported,
)

__all__ = ["MASK", "HttpServer", "shown"]

READ_ATTEMPTS = 3  # reads are idempotent: a refused or failed one is tried again
FIRST_BACKOFF_S = 0.2
TIMEOUT_S = 30.0
MASK = "********"
# A hint is (words in the server's answer, what the user should do): a feature the server has
# turned off, whatever the status code says.
Hints = Sequence[tuple[str, str]]
_BY_STATUS: dict[int, Callable[[str], ConnectorError]] = {401: ConnectorAuthError,
                                                          403: ConnectorAuthError}


class HttpServer:
    def __init__(self, url: str, label: str, *, headers: dict[str, str] | None = None,
                 auth: httpx.Auth | None = None, timeout_s: float = TIMEOUT_S,
                 hints: Hints = (), secrets: Sequence[str] = ()) -> None:
        self.url = url.rstrip("/")
        self.label = label  # how errors name it: `influxdb connector "main"`
        self.hints = hints
        self.secrets = [secret for secret in secrets if secret]  # never in a message
        # every request checked against the outbound policy (OutboundRefused if refused)
        self.client = outbound.client(base_url=self.url, headers=headers or {}, auth=auth,
                                      timeout=timeout_s)

    @property
    def where(self) -> str:
        return f"{self.label} at {public_url(self.url)}"

    def request(self, method: str, path: str, *, what: str, retry: bool = False,
                **options: Any) -> httpx.Response:
        """The server's successful answer; a ConnectorError otherwise. With `retry`, an
        unreachable server or a 5xx is asked again, with backoff."""
        attempts = READ_ATTEMPTS if retry else 1
        for attempt in range(attempts):
            try:
                answer = self.client.request(method, path, **options)
            except httpx.TimeoutException:
                error: ConnectorError = ConnectorUnavailable(
                    f"{self.where} did not answer {shown(what)} in time")
            except httpx.HTTPError as exc:
                error = ConnectorUnavailable(f"{self.where} could not be reached for "
                                             f"{shown(what)}: {self.scrub(str(exc))}")
            else:
                if answer.is_success:
                    return answer
                error = self.status_error(answer, f"{self.where} answered {shown(what)}")
                if not isinstance(error, ConnectorUnavailable):
                    raise error
            if attempt + 1 < attempts:
                time.sleep(FIRST_BACKOFF_S * 2**attempt)
        raise error

    def status_error(self, answer: httpx.Response, what: str) -> ConnectorError:
        """The ConnectorError of a failed answer: a hint's fix, 401/403 refused credentials,
        5xx a server that may come back, any other a refused request."""
        detail = self.scrub(_detail(answer))
        hint = next((hint for words, hint in self.hints if words in detail), None)
        if hint is not None:
            return ConnectorUnsupported(f"{what} with HTTP {answer.status_code}: {detail} "
                                        f"({hint})")
        kind = _BY_STATUS.get(answer.status_code)
        if kind is None:
            kind = ConnectorUnavailable if answer.status_code >= 500 else ConnectorQueryError
        return kind(f"{what} with HTTP {answer.status_code}: {detail}")

    def scrub(self, text: str) -> str:
        """`text` without the secrets, as they are and percent-encoded."""
        for secret in self.secrets:
            text = text.replace(secret, MASK).replace(quote(secret, safe=""), MASK)
        return text

    def close(self) -> None:
        self.client.close()


def shown(what: str, limit: int = 300) -> str:
    """A query or request as an error message quotes it: at most `limit` characters."""
    return repr(what if len(what) <= limit else what[:limit] + "…")


def _detail(answer: httpx.Response) -> str:
    """The server's own words: its JSON `error`, else its text."""
    try:
        body = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        return answer.text.strip()[:500]
    return str(body.get("error") or answer.text) if isinstance(body, dict) else answer.text
