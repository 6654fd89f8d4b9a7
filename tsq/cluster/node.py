"""One process of a cluster: its connection to NATS and the duties its roles give it.

- `api` serves the HTTP API. Without `store_url` it also owns the embedded store, which the
  other processes read and write through its Warp-10-compatible endpoints.
- `scheduler` stands for the scheduler lease: the leader fires schedules, catches up and sweeps
  the run history; the others wait.
- `worker` pulls runs from the work queue and runs them in its worker processes.

The service calls the node at the points where one process would act alone: a loop changed
here (tell the others), a loop changed elsewhere (follow it), leadership won or lost.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any, Protocol

from tsq.cluster.bus import Bus, BusNames
from tsq.cluster.leadership import Leadership
from tsq.cluster.workqueue import WorkQueue
from tsq.config import ClusterSettings
from tsq.dispatcher import Dispatcher
from tsq.errors import ConfigError
from tsq.runstore import RunStore

__all__ = ["ClusterNode", "Member", "check_cluster"]

log = logging.getLogger(__name__)


class Member(Protocol):
    """What the node asks of the service it belongs to."""

    dispatcher: Dispatcher

    def lead(self) -> None:
        """Start scheduling (this process won the lease)."""

    def follow(self) -> None:
        """Stop scheduling (this process lost the lease, or stops)."""

    def loop_changed_elsewhere(self, project: str, name: str) -> None: ...

    def reload_loops(self) -> None:
        """Read every loop again (after a reconnect, changes may have been missed)."""


def check_cluster(cluster: ClusterSettings, database_url: str) -> None:
    """ConfigError for a cluster process that could not work."""
    if not os.environ.get("TSQ_SECRET_KEY"):
        raise ConfigError(
            "the processes of a cluster must share the key that seals loop secrets (each has "
            "a data directory of its own): set TSQ_SECRET_KEY to the same key in every one; "
            "`python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'` makes one")
    if "api" not in cluster.roles and not cluster.store_url:
        raise ConfigError(
            f"a cluster process without the api role (role = {','.join(sorted(cluster.roles))})"
            f" has no time-series store of its own that anyone reads; give it --store-url, the "
            f"URL of the api process that owns the embedded store")
    if database_url.startswith("sqlite"):
        log.warning("the cluster keeps its runs in SQLite (%s): that works only while every "
                    "process runs on this machine; give --database postgresql://… for more",
                    database_url)


class ClusterNode:
    def __init__(self, settings: ClusterSettings, runs: RunStore) -> None:
        self.settings = settings
        self.id = f"{socket.gethostname()}:{os.getpid()}"
        self.bus = Bus(settings.url, BusNames(settings.name), ack_wait_s=settings.ack_wait_s,
                       max_deliver=settings.max_deliver, lease_ttl_s=settings.lease_ttl_s)
        self.queue = WorkQueue(self.bus, runs)
        self._leadership: Leadership | None = None

    def has(self, role: str) -> bool:
        return role in self.settings.roles

    @property
    def leading(self) -> bool:
        return self._leadership is not None and self._leadership.leading

    def start(self, member: Member, worker_capacity: int) -> None:
        self.queue.listen_for_ends(member.dispatcher)

        def changed(change: dict[str, Any]) -> None:
            if change.get("origin") != self.id:
                member.loop_changed_elsewhere(str(change["project"]), str(change["loop"]))

        self.bus.watch_loops(changed)
        self.bus.on_reconnect(_logged(member.reload_loops, "reload the loops"))
        if self.has("worker"):
            self.queue.feed(member.dispatcher, worker_capacity)
        if self.has("scheduler"):
            def lead() -> None:
                member.lead()
                self.queue.republishing(True)

            def follow() -> None:
                self.queue.republishing(False)
                member.follow()

            self._leadership = Leadership(self.bus, self.id, lead, follow)
            self._leadership.start()
        log.info("joined the cluster at %s as %s (%s)", self.settings.url, self.id,
                 ", ".join(sorted(self.settings.roles)),
                 extra={"cluster": self.settings.url, "node": self.id,
                        "roles": sorted(self.settings.roles)})

    def loops_changed(self, changes: list[tuple[str, str, dict[str, Any] | None]]) -> None:
        """Tell every process that these loops now run these versions (None: deleted)."""
        for project, name, version in changes:
            self.bus.loop_changed(project, name, version, self.id)

    def close(self) -> None:
        if self._leadership is not None:
            self._leadership.close()
        self.queue.close()
        self.bus.close()


def _logged(action: Callable[[], None], what: str) -> Callable[[], None]:
    def run() -> None:
        try:
            action()
        except Exception:
            log.exception("could not %s", what)
    return run
