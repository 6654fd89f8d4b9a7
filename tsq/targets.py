"""URL targets: an event that POSTs to an HTTP endpoint instead of running a handler.

This is what Metronome's own worker does with a task: `POST URL?time=<t>&epsilon=<e>&at=<now>`
(epoch seconds, as Metronome counts) with the event's params as the JSON body. A 2xx answer is
success, anything else a failure that quotes the answer; past the loop's timeout, a timeout.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tsq import __version__
from tsq.outcomes import FailureKind, RunResult, RunStatus

__all__ = ["call_target"]

MAX_BODY_SHOWN = 500


def call_target(client: httpx.Client, url: str, event: dict[str, Any],
                timeout_s: float, now_s: float) -> RunResult:
    query: dict[str, str | int] = {"time": event["scheduledMs"] // 1000, "at": int(now_s)}
    if event.get("epsilon") is not None:
        query["epsilon"] = int(event["epsilon"])
    headers = {"User-Agent": f"tsq/{__version__}", "X-Tsq-Run": event["runId"]}
    try:
        response = client.post(url, params=query, json=event["params"], headers=headers,
                               timeout=timeout_s)
    except httpx.TimeoutException:
        return RunResult.failure(
            FailureKind.TIMEOUT,
            f"POST {url} did not answer within the loop's timeout of {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return RunResult.failed("TargetUnreachable", f"POST {url} failed: {exc}")
    body = _body(response)
    if response.is_success:
        return RunResult(RunStatus.SUCCESS, {"status": response.status_code, "body": body})
    shown = response.text[:MAX_BODY_SHOWN]
    return RunResult.failed("TargetFailed",
                            f"POST {url} answered {response.status_code} "
                            f"{response.reason_phrase}: {shown}")


def _body(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return response.text[:MAX_BODY_SHOWN]
