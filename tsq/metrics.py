"""Prometheus metrics of one service, served at `/metrics` ([docs/metrics.md](../docs/metrics.md)
lists them).

Each Service has a registry of its own, not prometheus_client's global one, so several services
in one process (tests, a notebook) never share a series. Metrics are observed where the data
passes already: a run's end (the dispatcher's `on_finished` listeners), a handler's host calls
(the points a run writes), the connectors' writes, the write endpoints and the ad-hoc queries.
What the worker pool, the scheduler and the notifier count is read when scraped.

Labels stay bounded: per loop (and project) and a few fixed values, never per run; a deleted
loop's series are removed.

A loop's *change count* is what its last successful run changed: its result's numeric `changes`
when the handler returns an object with one, else the points the run wrote. A reconcile loop whose
change count never falls to zero is not converging; `tsq_loop_last_changes` lets its owner see it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tsq.errors import TsqError
from tsq.hostcalls import Host, HostAnswer
from tsq.labelled import LabelledCounter, LabelledGauge, LabelledHistogram
from tsq.outcomes import RunStatus
from tsq.run import Run
from tsq.series import SeriesSet

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tsq.notify import Notifier
    from tsq.scheduler import Scheduler
    from tsq.service import Service

__all__ = ["CONTENT_TYPE", "Metrics", "State", "install", "state"]

# The Prometheus text format (0.0.4), which every Prometheus scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LOOP = ("project", "loop")
# Seconds, from a no-op handler's few milliseconds to an hour-long backfill step.
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
               300.0, 900.0, 3600.0)
REFUSALS = frozenset({413, 429, 504})
QUERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                 30.0)


@dataclass(frozen=True)
class State:
    """What the service's parts count themselves, read at each scrape."""

    workers: int = 0  # worker processes the pool keeps
    workers_alive: int = 0
    slots_busy: int = 0  # runs in a worker now, each in a fresh V8 context
    slots_extra: int = 0  # extra slots serving while runs wait on their steps (Loop.run)
    fired: int = 0  # scheduled times fired since start
    missed: int = 0  # times missed while stopped, caught up at start (queued or expired)
    webhooks: Mapping[str, int] = field(default_factory=dict)  # outcome → notifications
    # the embedded store's blocks of recent reads: bytes kept, reads that took them (hits)
    # and reads that asked its table (misses)
    store_cache: Mapping[str, int] = field(default_factory=dict)


@runtime_checkable
class _Gauged(Protocol):
    def gauges(self) -> Mapping[str, int]: ...


@runtime_checkable
class _Cached(Protocol):
    def cache_counts(self) -> Mapping[str, int]: ...


def state(pool: object, scheduler: Scheduler | None, notifier: Notifier,
          connectors: Iterable[object] = ()) -> State:
    """The State of a service's worker pool (None before it starts; a test's stand-in has no
    gauges), scheduler (None unless it serves), notifier and open connectors (the embedded
    store's, if open, count its cache)."""
    gauges = pool.gauges() if isinstance(pool, _Gauged) else {}
    cached: dict[str, int] = {"bytes": 0, "hits": 0, "misses": 0}
    for connector in connectors:
        if isinstance(connector, _Cached):
            for key, count in connector.cache_counts().items():
                cached[key] = cached.get(key, 0) + count
    return State(
        workers=gauges.get("size", 0), workers_alive=gauges.get("alive", 0),
        slots_busy=gauges.get("busy", 0), slots_extra=gauges.get("extra", 0),
        fired=scheduler.fired if scheduler else 0, missed=scheduler.missed if scheduler else 0,
        webhooks={"delivered": notifier.delivered, "failed": notifier.failed,
                  "dropped": notifier.dropped},
        store_cache=cached)


class Metrics:
    """The metrics of one service and the calls that observe them."""

    def __init__(self, read: Callable[[], State] = State) -> None:
        # a `_created` series per counter would double what is stored (the library is untyped here)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=False)
        self._define(self.registry)
        self.registry.register(_StateCollector(read))
        ProcessCollector(registry=self.registry)
        self._lock = threading.Lock()
        self._written: dict[str, int] = {}  # run id → points its current attempt wrote
        # Per loop, its series: (metric, labels after project and loop) → the series to
        # update. `forget` removes a deleted loop's series by it, and a run's end (up to eight
        # updates) finds each here rather than building its label tuple under a lock.
        self._series: dict[tuple[str, str], dict[tuple[Any, tuple[str, ...]], Any]] = {}

    def _define(self, registry: CollectorRegistry) -> None:
        def loop_histogram(name: str, what: str) -> LabelledHistogram:
            return LabelledHistogram(name, what, LOOP, RUN_BUCKETS, registry)

        # Per loop: tsq.labelled's metrics, whose series cost a loop's first run little
        self.runs = LabelledCounter("tsq_runs", "Runs that ended, by final status (after "
                                    "retries)", [*LOOP, "status"], registry)
        self.retries = LabelledCounter("tsq_run_retries", "Attempts run again after a failure "
                                       "or timeout (counted when the run ends)", LOOP, registry)
        self.duration = loop_histogram("tsq_run_duration_seconds",
                                       "From start to end of a run's last attempt")
        self.queue_delay = loop_histogram("tsq_run_queue_delay_seconds",
                                          "From queued to started, of a run's last attempt")
        self.lateness = loop_histogram("tsq_fire_lateness_seconds", "From a scheduled time to "
                                       "the start of its run (first attempts of scheduled runs)")
        self.last_changes = LabelledGauge("tsq_loop_last_changes", "The change count of the "
                                          "loop's last successful run: its result's `changes`, "
                                          "else the points it wrote", LOOP, registry)
        self.changes = LabelledCounter("tsq_loop_changes", "Change counts of successful runs, "
                                       "added up", LOOP, registry)
        self.last_success = LabelledGauge("tsq_loop_last_success_timestamp_seconds",
                                          "When the loop's last successful run ended", LOOP,
                                          registry)
        self.ingested = Counter("tsq_points_ingested", "Points received by the write endpoints",
                                ["protocol"], registry=registry)
        self.stored = Counter("tsq_points_stored", "Points written to a connector, by the "
                              "write endpoints and by loops", ["connector"], registry=registry)
        self.refusals = Counter("tsq_requests_refused", "Requests refused to bound the work: "
                                "429 (a queue or a project's rate), 413 (too large), 504 (past "
                                "the deadline), by the setting that refused them",
                                ["status", "limit"], registry=registry)
        self.queries = Histogram("tsq_query_duration_seconds", "Ad-hoc queries (/v1/query, "
                                 "/api/v0/exec)", ["language", "outcome"], buckets=QUERY_BUCKETS,
                                 registry=registry)

    # -- runs ------------------------------------------------------------------------------

    def run_finished(self, run: Run) -> None:
        """A run's final record (a dispatcher `on_finished` listener)."""
        with self._lock:
            written = self._written.pop(run.id, 0)
        child = partial(self._loop_child, project=run.project, loop=run.loop)
        child(self.runs, run.status.value).inc()
        if run.attempt > 1:
            child(self.retries).inc(run.attempt - 1)
        if run.duration_ms is not None:
            child(self.duration).observe(run.duration_ms / 1000)
        if run.queue_delay_ms is not None:
            child(self.queue_delay).observe(run.queue_delay_ms / 1000)
        if (run.trigger == "schedule" and run.attempt == 1 and run.started_ms is not None
                and run.scheduled_ms is not None):
            child(self.lateness).observe(max(0, run.started_ms - run.scheduled_ms) / 1000)
        if run.status is RunStatus.SUCCESS:
            count = change_count(run.result, written)
            child(self.last_changes).set(count)
            child(self.changes).inc(count)
            child(self.last_success).set((run.finished_ms or 0) / 1000)

    def counting(self, run: Run, host: Host) -> Host:
        """`host`, counting the points this attempt of `run` writes through it."""
        with self._lock:
            self._written[run.id] = 0

        def counted(op: str, args: dict[str, Any], arrays: list[Any]) -> HostAnswer:
            answer = host(op, args, arrays)
            written = answer.meta.get("written")
            if isinstance(written, int):
                with self._lock:
                    self._written[run.id] = self._written.get(run.id, 0) + written
            return answer

        return counted

    def forget(self, project: str, loop: str) -> None:
        """Remove every series of a deleted loop."""
        with self._lock:
            children = self._series.pop((project, loop), {})
        for metric, more in children:
            with suppress(KeyError):
                metric.remove(project, loop, *more)

    def _loop_child(self, metric: Any, *more: str, project: str, loop: str) -> Any:
        labels = (project, loop, *more)
        children = self._series.get((project, loop))
        child = None if children is None else children.get((metric, more))
        if child is None:
            with self._lock:
                child = self._series.setdefault((project, loop), {}).setdefault(
                    (metric, more), metric.labels(*labels))
        return child

    # -- points and queries ----------------------------------------------------------------

    def refused(self, error: TsqError) -> None:
        """Count `error` if it refused work to bound it (429, 413 or 504), by the limit that
        did (the setting its details name)."""
        if error.http_status in REFUSALS:
            limit = str(error.details.get("limit") or type(error).__name__)
            self.refusals.labels(str(error.http_status), limit).inc()

    def ingest(self, protocol: str, points: int) -> None:
        self.ingested.labels(protocol).inc(points)

    def counting_writes(self, listener: Callable[[tuple[Any, ...], SeriesSet], None]
                        ) -> Callable[[tuple[Any, ...], SeriesSet], None]:
        """A connector write listener (tsq.connections) that counts the points, then calls
        `listener`; the connector's type (the instance key's first item) is the label."""
        def written(key: tuple[Any, ...], series: SeriesSet) -> None:
            self.stored.labels(str(key[0])).inc(series.points)
            listener(key, series)

        return written

    @contextmanager
    def timed(self, language: str) -> Iterator[None]:
        """Time an ad-hoc query in `language` (tsl, warpscript), failed or not."""
        started, outcome = time.perf_counter(), "error"
        try:
            yield
            outcome = "ok"
        finally:
            self.queries.labels(language, outcome).observe(time.perf_counter() - started)

    def render(self) -> bytes:
        """Every metric in the Prometheus text format (CONTENT_TYPE)."""
        return generate_latest(self.registry)


def change_count(result: Any, written: int) -> float:
    """A result's numeric `changes` (not a bool), else the points the run wrote."""
    changes = result.get("changes") if isinstance(result, dict) else None
    if isinstance(changes, int | float) and not isinstance(changes, bool):
        return float(changes)
    return float(written)


class _StateCollector(Collector):
    """The counts the service's parts keep themselves, as metrics at each scrape."""

    def __init__(self, read: Callable[[], State]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        now = self.read()
        yield GaugeMetricFamily("tsq_workers", "Worker processes the pool keeps", now.workers)
        yield GaugeMetricFamily("tsq_workers_alive", "Worker processes alive now",
                                now.workers_alive)
        yield GaugeMetricFamily("tsq_worker_slots_busy", "Runs in a worker now, each in a "
                                "fresh V8 context", now.slots_busy)
        yield GaugeMetricFamily("tsq_worker_slots_extra", "Extra worker slots serving while "
                                "runs wait on their steps (Loop.run)", now.slots_extra)
        yield CounterMetricFamily("tsq_scheduler_fired", "Scheduled times fired", now.fired)
        yield CounterMetricFamily("tsq_scheduler_missed", "Scheduled times missed while tsq "
                                  "was stopped, caught up at start per `catchup` (queued or "
                                  "recorded expired)", now.missed)
        webhooks = CounterMetricFamily("tsq_webhook_notifications", "Failure notifications, by "
                                       "outcome: delivered, failed (after every attempt), "
                                       "dropped (the queue was full)", labels=["outcome"])
        for outcome, count in now.webhooks.items():
            webhooks.add_metric([outcome], count)
        yield webhooks
        yield GaugeMetricFamily("tsq_store_cache_bytes", "Bytes of the embedded store's blocks "
                                "of recent reads kept in memory (store_cache_mb)",
                                now.store_cache.get("bytes", 0))
        reads = CounterMetricFamily("tsq_store_cache_reads", "Reads of the embedded store's "
                                    "past: from the blocks kept in memory (hit) or from its "
                                    "table (miss)", labels=["outcome"])
        reads.add_metric(["hit"], now.store_cache.get("hits", 0))
        reads.add_metric(["miss"], now.store_cache.get("misses", 0))
        yield reads


def install(app: FastAPI, service: Service) -> None:
    """Serve `service`'s metrics at GET /metrics."""
    from fastapi.responses import Response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)
