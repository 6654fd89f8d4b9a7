"""Failure notifications: a webhook POST with the run's record, retried, never in the way.

`Notifier.send` only queues; one background thread delivers, retrying a failed delivery with
exponential backoff. The queue is bounded: when a webhook is down for long enough that it fills,
new notifications are dropped and counted rather than holding up the runs that produce them.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any

from tsq import __version__, outbound
from tsq.errors import OutboundRefused
from tsq.masking import mask_url

if TYPE_CHECKING:
    import httpx

__all__ = ["Notifier"]


def httpx_errors() -> type[Exception]:
    import httpx

    return httpx.HTTPError

log = logging.getLogger("tsq.notify")

ATTEMPTS = 4
FIRST_BACKOFF_S = 1.0
TIMEOUT_S = 5.0
QUEUE_SIZE = 10_000


class Notifier:
    def __init__(self, *, attempts: int = ATTEMPTS, backoff_s: float = FIRST_BACKOFF_S) -> None:
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.dropped = 0
        self.delivered = 0
        self.failed = 0  # refused or unreachable on every attempt
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(QUEUE_SIZE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, url: str, record: dict[str, Any]) -> None:
        """Queue a notification about a finished run for `url`."""
        payload = {"type": f"run.{record['status']}", "project": record["project"],
                   "loop": record["loop"], "event": record["event"],
                   "message": (record.get("error") or {}).get("message", record["status"]),
                   "run": record}
        self._ensure_thread()
        try:
            self._queue.put_nowait((url, payload))
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout=TIMEOUT_S + 1)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver_all, daemon=True,
                                                name="tsq-notify")
                self._thread.start()

    def _deliver_all(self) -> None:
        headers = {"User-Agent": f"tsq/{__version__}"}
        with outbound.client(timeout=TIMEOUT_S, headers=headers) as client:
            while not self._stop.is_set():
                item = self._queue.get()
                if item is None:
                    return
                self._deliver(client, *item)

    def _deliver(self, client: httpx.Client, url: str, payload: dict[str, Any]) -> None:
        for attempt in range(self.attempts):
            try:
                if client.post(url, json=payload).is_success:
                    self.delivered += 1
                    return
            except OutboundRefused as exc:  # the same answer on every attempt
                self.failed += 1
                log.warning("webhook not called: %s", exc.message)
                return
            except httpx_errors() as exc:
                log.debug("webhook %s: %s", mask_url(url), exc)
            if self._stop.wait(self.backoff_s * 2 ** attempt):
                return
        self.failed += 1
        log.warning("webhook %s did not accept the %s notification of run %s after %d attempts",
                    mask_url(url), payload["type"], payload["run"]["id"], self.attempts)
