"""The service's one connection to NATS JetStream, for threads that are not asyncio.

nats-py is asyncio-only and tsq's service is threads (the scheduler's recorder, the dispatcher,
worker slots), so the connection lives on an event loop of its own, on thread `tsq-nats`, and
every method here runs a coroutine there and waits for it. What JetStream keeps:

- `TSQ_RUNS`, a work-queue stream on subject `tsq.runs`: one message per run attempt to start.
  Its `Nats-Msg-Id` is the run's key (or id), its id and attempt, so a second publish is dropped.
- `tsq-workers`, the durable pull consumer of `TSQ_RUNS` that every worker process shares;
  a message not acknowledged within `ack_wait` is delivered again.
- `tsq-loops`, a KV bucket: each live loop's version id, which every process watches for
  deploys, rollbacks and deletes.
- `TSQ_VERSIONS`, a stream on `tsq.versions.<project>.<loop>`: every deployed version's spec
  (the history that the KV keys point into).
- `tsq-leader`, a KV bucket with a TTL: the scheduler lease, which expires unless its holder
  renews it.

Core NATS subjects (not stored): `tsq.ended` tells processes that runs ended (their waiters wake),
`tsq.cancel` asks every worker process to stop a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    KeyValueConfig,
    RetentionPolicy,
    StreamConfig,
)

from tsq.errors import ConfigError

__all__ = ["Bus", "BusNames", "Delivery"]

log = logging.getLogger(__name__)

T = TypeVar("T")
CONNECT_S = 5.0  # how long a process tries to reach NATS at start before it says why it cannot
CALL_S = 10.0  # a JetStream call that takes longer than this has lost its server
RUNS_SUBJECT = "tsq.runs"
ENDED_SUBJECT = "tsq.ended"
CANCEL_SUBJECT = "tsq.cancel"
DUPLICATE_WINDOW_S = 600.0  # a run published again within this is dropped by the server
STREAM_EXISTS_OTHERWISE = 10058  # JetStream: "stream name already in use with a different …"


@dataclass(frozen=True)
class BusNames:
    """What the JetStream objects are called; tests give each cluster its own prefix."""

    prefix: str = "tsq"

    @property
    def runs_stream(self) -> str:
        return f"{self.prefix.upper()}_RUNS"

    @property
    def versions_stream(self) -> str:
        return f"{self.prefix.upper()}_VERSIONS"

    @property
    def runs_subject(self) -> str:
        return f"{self.prefix}.runs"

    @property
    def ended_subject(self) -> str:
        return f"{self.prefix}.ended"

    @property
    def cancel_subject(self) -> str:
        return f"{self.prefix}.cancel"

    def version_subject(self, project: str, loop: str) -> str:
        return f"{self.prefix}.versions.{_token(project)}.{_token(loop)}"

    @property
    def consumer(self) -> str:
        return f"{self.prefix}-workers"

    @property
    def loops_bucket(self) -> str:
        return f"{self.prefix}-loops"

    @property
    def leader_bucket(self) -> str:
        return f"{self.prefix}-leader"


def _token(name: str) -> str:
    """A loop or project name as one subject token (names are `[A-Za-z0-9_-]`, so this only
    guards against a future change of that rule)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "_"


@dataclass
class Delivery:
    """One message of `TSQ_RUNS` handed to this worker process: the run it names, how many times
    it has been delivered, and how to answer it (each from any thread)."""

    run_id: str
    attempt: int
    delivered: int
    record: dict[str, Any] | None  # the run as published (None: too large to carry)
    _msg: Msg
    _bus: Bus

    def ack(self) -> None:
        self._bus.ack_all([self])

    def nak(self, delay_s: float) -> None:
        self._bus.call(self._msg.nak(delay=delay_s), wait=False)

    def in_progress(self) -> None:
        """Tell the server the run goes on, so `ack_wait` starts again."""
        self._bus.call(self._msg.in_progress(), wait=False)


class Bus:
    def __init__(self, url: str, names: BusNames | None = None, *, ack_wait_s: float = 30.0,
                 max_deliver: int = 3, lease_ttl_s: float = 3.0) -> None:
        self.url = url
        self.names = names or BusNames()
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self.lease_ttl_s = lease_ttl_s
        self._loop = _event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="tsq-nats")
        self._thread.start()
        self._on_reconnect: list[Callable[[], None]] = []
        self._closing = False
        try:
            self.call(self._connect(), timeout=CONNECT_S + CALL_S)
        except BaseException:
            self._stop_loop()
            raise

    # -- plumbing --------------------------------------------------------------------------

    def call(self, work: Coroutine[Any, Any, T], *, wait: bool = True,
             timeout: float = CALL_S) -> T:
        """Run `work` on the bus's event loop; its result (or, without `wait`, None at once)."""
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        if not wait:
            future.add_done_callback(_log_failure)
            return None  # type: ignore[return-value]
        return future.result(timeout)

    async def _connect(self) -> None:
        async def said(exc: Exception) -> None:  # nats-py prints these otherwise
            log.debug("NATS at %s: %s", self.url, exc)

        async def disconnected() -> None:
            if not self._closing:
                log.warning("lost NATS at %s; reconnecting", self.url)

        async def reconnected() -> None:
            log.info("reconnected to NATS at %s", self.url)
            for listener in self._on_reconnect:
                self._loop.run_in_executor(None, listener)

        try:
            # reconnecting for ever is right once connected, but at start a wrong URL must
            # say so, not hang
            self._nc = await asyncio.wait_for(nats.connect(
                self.url, connect_timeout=2, allow_reconnect=True, max_reconnect_attempts=-1,
                reconnect_time_wait=0.25, error_cb=said, reconnected_cb=reconnected,
                disconnected_cb=disconnected), CONNECT_S)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            why = str(exc) or f"no answer within {CONNECT_S:g} s"
            raise ConfigError(f"cannot reach NATS at {self.url} (--cluster): {why}; start "
                              f"`nats-server -js` there or name another") from None
        self._js = self._nc.jetstream()
        names = self.names
        try:
            await self._ensure_stream(StreamConfig(
                name=names.runs_stream, subjects=[names.runs_subject],
                retention=RetentionPolicy.WORK_QUEUE, duplicate_window=DUPLICATE_WINDOW_S))
        except nats.js.errors.ServiceUnavailableError as exc:
            raise ConfigError(f"NATS at {self.url} has no JetStream (start the server with "
                              f"-js): {exc}") from None
        await self._ensure_stream(StreamConfig(name=names.versions_stream,
                                               subjects=[f"{names.prefix}.versions.>"]))
        self._consumer_config = ConsumerConfig(
            durable_name=names.consumer, ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s, max_deliver=self.max_deliver, max_ack_pending=-1)
        self._loops_kv = await self._bucket(KeyValueConfig(bucket=names.loops_bucket,
                                                           history=1))
        self._leader_kv = await self._bucket(KeyValueConfig(
            bucket=names.leader_bucket, history=1, ttl=self.lease_ttl_s))
        leader = await self._js.stream_info(f"KV_{names.leader_bucket}")
        # The first process made the bucket: its TTL is the one every process renews by.
        self.lease_ttl_s = float(leader.config.max_age or self.lease_ttl_s)
        self._pull: Any = None

    async def _ensure_stream(self, config: StreamConfig) -> None:
        """Make the stream, or use it as the first process of the cluster made it."""
        try:
            await self._js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != STREAM_EXISTS_OTHERWISE:
                raise

    async def _bucket(self, config: KeyValueConfig) -> Any:
        try:
            return await self._js.create_key_value(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != STREAM_EXISTS_OTHERWISE:
                raise
            return await self._js.key_value(config.bucket)

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        """Call `listener` (on a thread of its own) each time the connection comes back."""
        self._on_reconnect.append(listener)

    def close(self) -> None:
        self._closing = True
        try:  # what was acknowledged is sent by now; a drain would wait on pending fetches
            self.call(self._nc.close(), timeout=CALL_S)
        except Exception:  # already gone: stopping the loop is all that is left
            log.debug("closing the NATS connection failed", exc_info=True)
        self._stop_loop()

    def _stop_loop(self) -> None:
        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_the_rest(), self._loop).result(CALL_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    # -- runs ------------------------------------------------------------------------------

    def publish_runs(self, runs: list[tuple[str, str, int, bytes]]) -> None:
        """Publish `(run id, key or id, attempt, record)` each as a message to start; a message
        whose key, run and attempt the server has seen within its duplicate window is dropped
        there. `record` is the run's JSON (or empty when it is too large to carry)."""
        if runs:
            self.call(self._publish_runs(runs))

    async def _publish_runs(self, runs: list[tuple[str, str, int, bytes]]) -> None:
        subject = self.names.runs_subject
        await asyncio.gather(*(self._js.publish(
            subject, f"{run_id} {attempt}\n".encode() + record,
            headers={"Nats-Msg-Id": _message_id(run_id, key, attempt)})
            for run_id, key, attempt, record in runs))

    def pull(self, batch: int, timeout_s: float) -> list[Delivery]:
        """Up to `batch` runs to start, waiting at most `timeout_s` for the first."""
        return self.call(self._fetch(batch, timeout_s), timeout=timeout_s + CALL_S)

    async def _fetch(self, batch: int, timeout_s: float) -> list[Delivery]:
        if self._pull is None:
            self._pull = await self._js.pull_subscribe(
                self.names.runs_subject, durable=self.names.consumer,
                stream=self.names.runs_stream, config=self._consumer_config)
            # The first worker process made the consumer: its limits are the ones that hold.
            info = await self._js.consumer_info(self.names.runs_stream, self.names.consumer)
            self.ack_wait_s = float(info.config.ack_wait or self.ack_wait_s)
            self.max_deliver = int(info.config.max_deliver or self.max_deliver)
        try:
            messages = await self._pull.fetch(batch, timeout=timeout_s)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        deliveries = []
        for msg in messages:
            head, _, body = msg.data.partition(b"\n")
            run_id, _, attempt = head.decode().partition(" ")
            deliveries.append(Delivery(run_id, int(attempt or 1),
                                       msg.metadata.num_delivered or 1,
                                       orjson.loads(body) if body else None, msg, self))
        return deliveries

    def ack_all(self, deliveries: list[Delivery]) -> None:
        """Acknowledge the messages of `deliveries`, in one hop to the event loop."""
        async def ack() -> None:
            for delivery in deliveries:
                await delivery._msg.ack()

        if deliveries:
            self.call(ack(), wait=False)

    def nak_all(self, deliveries: list[Delivery], delay_s: float) -> None:
        """Give the messages back, to be delivered again after `delay_s`."""
        async def nak() -> None:
            for delivery in deliveries:
                await delivery._msg.nak(delay=delay_s)

        if deliveries:
            self.call(nak(), wait=False)

    def in_progress_all(self, deliveries: list[Delivery]) -> None:
        async def touch() -> None:
            for delivery in deliveries:
                await delivery._msg.in_progress()

        if deliveries:
            self.call(touch(), wait=False)

    # -- notices ---------------------------------------------------------------------------

    def tell(self, subject: str, items: list[Any]) -> None:
        """Publish a JSON list on a core subject (`tsq.ended`: runs as they ended, or their
        ids; `tsq.cancel`: run ids): nobody listening is fine, nothing is kept."""
        if items:
            self.call(self._nc.publish(subject, orjson.dumps(items)), wait=False)

    def listen(self, subject: str, listener: Callable[[list[Any]], None],
               wanted: Callable[[], bool] | None = None) -> None:
        """Call `listener` with the list of each notice on `subject`, off the event loop; with
        `wanted`, only while it says so (asked on the event loop, so it must be quick): a
        notice nobody here wants costs neither its parse nor a thread."""
        async def heard(msg: Msg) -> None:
            if wanted is None or wanted():
                self._loop.run_in_executor(None, listener, orjson.loads(msg.data))

        self.call(self._nc.subscribe(subject, cb=heard))

    # -- loops -----------------------------------------------------------------------------

    def loop_changed(self, project: str, loop: str, version: dict[str, Any] | None,
                     origin: str) -> None:
        """Say that `project/loop` now runs `version` (None: deleted): the version goes to the
        history stream, and the loop's KV key points at it, which every process watches."""
        self.call(self._loop_changed(project, loop, version, origin))

    async def _loop_changed(self, project: str, loop: str, version: dict[str, Any] | None,
                            origin: str) -> None:
        key = f"{_token(project)}.{_token(loop)}"
        value: dict[str, Any]
        if version is None:
            value = {"project": project, "loop": loop, "version": None, "origin": origin}
        else:
            ack = await self._js.publish(self.names.version_subject(project, loop),
                                         orjson.dumps(version))
            value = {"project": project, "loop": loop, "version": version.get("id"),
                     "seq": ack.seq, "origin": origin}
        await self._loops_kv.put(key, orjson.dumps(value))

    def watch_loops(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call `listener` with each change of a loop's KV key from now on (off the loop)."""
        self.call(self._watch_loops(listener))

    async def _watch_loops(self, listener: Callable[[dict[str, Any]], None]) -> None:
        watcher = await self._loops_kv.watchall(include_history=False)

        async def follow() -> None:
            seen_initial = False
            async for entry in watcher:
                if entry is None:  # the end of what the bucket held when watching began
                    seen_initial = True
                    continue
                if not seen_initial or not entry.value:
                    continue
                self._loop.run_in_executor(None, listener, orjson.loads(entry.value))

        self._watch_task = asyncio.ensure_future(follow())

    # -- the scheduler lease -----------------------------------------------------------------

    def take_lease(self, holder: str, revision: int | None) -> int | None:
        """Take the lease (`revision` None) or renew it (the revision this holder last wrote);
        the new revision, or None if another holder has it."""
        return self.call(self._take_lease(holder, revision))

    async def _take_lease(self, holder: str, revision: int | None) -> int | None:
        kv = self._leader_kv
        try:
            if revision is None:
                return int(await kv.create("scheduler", holder.encode()))
            return int(await kv.update("scheduler", holder.encode(), last=revision))
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.APIError):
            return None

    def give_up_lease(self, revision: int) -> None:
        """Let a standby take over at once rather than after the lease's TTL."""
        self.call(self._give_up(revision))

    async def _give_up(self, revision: int) -> None:
        with contextlib.suppress(nats.js.errors.APIError):  # it expired or moved on already
            await self._leader_kv.delete("scheduler", last=revision)


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (with uvicorn: every platform but Windows): nats-py's
    Python per message runs on it, and uvloop's transports, handles and futures took a fifth
    less of the thread's CPU a published run and a quarter less a pulled and acknowledged one
    (3,000 runs, pulled three at a time: 170 -> 139 and 300 -> 220 us)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _message_id(run_id: str, key: str, attempt: int) -> str:
    """What the server drops a second publish of within its duplicate window: a scheduled
    time's key, its run and its attempt. The key alone named a new run (of a database
    restored or made afresh, with the same NATS streams) as the one that had it before, and
    its messages were dropped for the window's ten minutes; in one database a key has one run,
    so the run's id takes no duplicate through."""
    return f"{key}#{attempt}" if key.endswith(f"/{run_id}") else f"{key}#{run_id}#{attempt}"


def _log_failure(future: Any) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("a NATS call failed: %s", exc)
