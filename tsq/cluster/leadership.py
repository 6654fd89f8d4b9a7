"""One active scheduler in a cluster: whoever holds the lease in the `tsq-leader` KV bucket.

A candidate creates the key (compare-and-set: only if it does not exist) and then renews it by
revision every third of the TTL; the bucket's TTL drops a key nobody renews, so a standby takes
over within the TTL plus one poll of a leader that died. A leader that cannot renew (another
holder, or NATS gone for longer than the TTL) stops scheduling at once. Two schedulers that
briefly overlap still never run a time twice: each scheduled run has a unique key in the run
store, and its message a de-duplicated id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tsq.cluster.bus import Bus

__all__ = ["Leadership"]

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often a standby tries to take the lease


class Leadership:
    def __init__(self, bus: Bus, holder: str, on_elected: Callable[[], None],
                 on_deposed: Callable[[], None]) -> None:
        self.bus = bus
        self.holder = holder
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._revision: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tsq-lease")

    @property
    def leading(self) -> bool:
        return self._revision is not None

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._revision is not None:
            revision, self._revision = self._revision, None
            self._on_deposed()
            try:
                self.bus.give_up_lease(revision)
            except Exception:  # NATS is gone: the lease expires by itself
                log.debug("could not give up the scheduler lease", exc_info=True)

    def _run(self) -> None:
        renew_s = self.bus.lease_ttl_s / 3
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                revision = self.bus.take_lease(self.holder, self._revision)
            except Exception as exc:  # NATS unreachable: a leader cannot tell it still leads
                log.warning("could not reach the scheduler lease: %s", exc)
                revision = None
            if revision is not None and self._revision is None:
                log.info("%s leads the schedulers now", self.holder)
                self._revision = revision
                self._safely(self._on_elected)
            elif revision is None and self._revision is not None:
                log.warning("%s lost the scheduler lease; it stops scheduling", self.holder)
                self._revision = None
                self._safely(self._on_deposed)
            else:
                self._revision = revision
            wait = renew_s if self._revision is not None else POLL_S
            self._stop.wait(max(0.0, wait - (time.monotonic() - started)))

    def _safely(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception:
            log.exception("the scheduler could not change role")
