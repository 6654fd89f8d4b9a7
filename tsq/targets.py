"""URL targets: an event that POSTs to an HTTP endpoint instead of running a handler.

This is what Metronome's own worker does with a task: `POST URL?time=<t>&epsilon=<e>&at=<now>`
(epoch seconds, as Metronome counts) with the event's params as the JSON body. A 2xx answer is
success, anything else a failure that quotes the answer; past the loop's timeout, a timeout.

The answer's body is kept in the run record up to MAX_BODY_KEPT bytes (more is marked
`truncated`, and never read): a target's answer is the run's result, not a way to copy a large
or internal document into tsq. The URL is shown masked (tsq.masking) in every message.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tsq import __version__
from tsq.errors import OutboundRefused
from tsq.masking import mask_url
from tsq.outcomes import FailureKind, RunResult, RunStatus

__all__ = ["MAX_BODY_KEPT", "call_target"]

MAX_BODY_SHOWN = 500  # of a failure's answer, in its message
MAX_BODY_KEPT = 4096  # of a success's answer, in its result


def call_target(client: httpx.Client, url: str, event: dict[str, Any],
                timeout_s: float, now_s: float) -> RunResult:
    query: dict[str, str | int] = {"time": event["scheduledMs"] // 1000, "at": int(now_s)}
    if event.get("epsilon") is not None:
        query["epsilon"] = int(event["epsilon"])
    headers = {"User-Agent": f"tsq/{__version__}", "X-Tsq-Run": event["runId"]}
    shown_url = mask_url(url)
    try:
        with client.stream("POST", url, params=query, json=event["params"], headers=headers,
                           timeout=timeout_s) as response:
            content, truncated = _read(response, MAX_BODY_KEPT)
    except OutboundRefused as exc:
        return RunResult.failed("OutboundRefused", f"POST not sent: {exc.message}")
    except httpx.TimeoutException:
        return RunResult.failure(
            FailureKind.TIMEOUT,
            f"POST {shown_url} did not answer within the loop's timeout of {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return RunResult.failed("TargetUnreachable", f"POST {shown_url} failed: {exc}")
    text = content.decode(response.encoding or "utf-8", errors="replace")
    if response.is_success:
        result: dict[str, Any] = {"status": response.status_code,
                                  "body": _body(content, text, truncated)}
        if truncated:
            result["truncated"] = True
        return RunResult(RunStatus.SUCCESS, result)
    return RunResult.failed("TargetFailed",
                            f"POST {shown_url} answered {response.status_code} "
                            f"{response.reason_phrase}: {text[:MAX_BODY_SHOWN]}")


def _read(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The first `limit` bytes of the answer's body, and whether there was more."""
    content = b""
    for chunk in response.iter_bytes():
        content += chunk
        if len(content) > limit:
            return content[:limit], True
    return content, False


def _body(content: bytes, text: str, truncated: bool) -> Any:
    """The answer as JSON if it is whole JSON, else as text."""
    if truncated:
        return text
    try:
        return orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        return text
