"""The service's Prometheus metrics (tsq.metrics), asserted on their values: runs by loop and
status, change counts, points, queries, the worker pool, webhooks; a deleted loop's series gone;
/metrics in the text format."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, bearer, loop_file, serving
from tsq.errors import TslError
from tsq.metrics import CONTENT_TYPE, Metrics, State, change_count, state
from tsq.notify import Notifier
from tsq.outcomes import RunError, RunStatus
from tsq.run import Run
from tsq.service import Service

RECONCILE = """export default async function (event) {
  if (event.params.fail) throw new Error("refused");
  return {changes: event.params.changes};
}
"""
WRITER = """export default async function (event) {
  await db.write("written,host=a value=1 1000000000\\nwritten,host=a value=2 2000000000\\n" +
                 "written,host=b value=3 1000000000");
  return {series: 2};
}
"""


def deploy(service: Service, name: str, source: str, extra: str = "") -> None:
    service.deploy(loop_file(name, f"{name}.js", extra), "loops.yml", {f"{name}.js": source}.get)


def value(service: Service, name: str, **labels: str) -> float | None:
    return service.metrics.registry.get_sample_value(name, labels)


def loop(name: str) -> dict[str, str]:
    return {"project": "default", "loop": name}


def test_runs_are_counted_by_loop_and_final_status(service: Service) -> None:
    deploy(service, "reconcile", RECONCILE)
    for changes in (5, 2, 0):
        assert service.run("reconcile", {"changes": changes}).status is RunStatus.SUCCESS
    assert service.run("reconcile", {"fail": True}).status is RunStatus.FAILED
    assert value(service, "tsq_runs_total", **loop("reconcile"), status="success") == 3
    assert value(service, "tsq_runs_total", **loop("reconcile"), status="failed") == 1
    assert value(service, "tsq_run_duration_seconds_count", **loop("reconcile")) == 4
    assert value(service, "tsq_run_queue_delay_seconds_count", **loop("reconcile")) == 4
    # The change count is the last successful run's (the failure does not touch it)...
    assert value(service, "tsq_loop_last_changes", **loop("reconcile")) == 0
    assert value(service, "tsq_loop_changes_total", **loop("reconcile")) == 7
    last = value(service, "tsq_loop_last_success_timestamp_seconds", **loop("reconcile"))
    assert last is not None and abs(last - time.time()) < 60
    # ... and manual runs have no scheduled time, so no fire lateness.
    assert value(service, "tsq_fire_lateness_seconds_count", **loop("reconcile")) is None


def test_without_changes_the_change_count_is_the_points_written(service: Service) -> None:
    stored = value(service, "tsq_points_stored_total", connector="embedded") or 0
    deploy(service, "writer", WRITER)
    assert service.run("writer").status is RunStatus.SUCCESS
    assert value(service, "tsq_loop_last_changes", **loop("writer")) == 3
    assert value(service, "tsq_points_stored_total", connector="embedded") == stored + 3


def test_a_deleted_loops_series_are_removed(service: Service) -> None:
    deploy(service, "doomed", RECONCILE)
    service.run("doomed", {"changes": 1})
    assert value(service, "tsq_runs_total", **loop("doomed"), status="success") == 1
    service.delete_loop("doomed")
    text = service.metrics.render().decode()
    assert 'loop="doomed"' not in text
    assert value(service, "tsq_runs_total", **loop("doomed"), status="success") is None


def test_points_ingested_and_queries_timed(service: Service) -> None:
    before = value(service, "tsq_points_ingested_total", protocol="line") or 0
    service.write_lines("ingested value=1 1000\ningested value=2 2000\n")
    assert value(service, "tsq_points_ingested_total", protocol="line") == before + 2
    service.query_tsl('select("ingested").from(0, 10000)')
    with pytest.raises(TslError):
        service.query_tsl("select(")
    service.query_ws("1 2 +")
    assert value(service, "tsq_query_duration_seconds_count", language="tsl", outcome="ok") == 1
    assert value(service, "tsq_query_duration_seconds_count", language="tsl",
                 outcome="error") == 1
    assert value(service, "tsq_query_duration_seconds_count", language="warpscript",
                 outcome="ok") == 1


def test_the_worker_pool_is_read_at_each_scrape(service: Service) -> None:
    deploy(service, "reconcile", RECONCILE)
    service.run("reconcile", {"changes": 0})
    assert value(service, "tsq_workers") == service.settings.workers
    # a slot starts its process on its first run
    assert 1 <= (value(service, "tsq_workers_alive") or 0) <= service.settings.workers
    assert value(service, "tsq_worker_slots_busy") == 0
    assert value(service, "tsq_scheduler_missed_total") == 0


def test_the_stores_kept_blocks_are_counted_at_each_scrape(service: Service) -> None:
    """A read of the past asks the table (a miss) and keeps its blocks; the same read again
    takes them from memory (a hit)."""
    def hits() -> tuple[float | None, float | None]:
        return (value(service, "tsq_store_cache_reads_total", outcome="hit"),
                value(service, "tsq_store_cache_reads_total", outcome="miss"))

    service.write_lines("\n".join(f"kept value={i} {i}" for i in range(200)), "s")  # 1970
    hit, miss = hits()
    query = 'select("kept").from(0, 200000)'
    for _ in range(2):
        assert len(service.query_tsl(query)["series"][0]["values"]) == 200
    assert (value(service, "tsq_store_cache_bytes") or 0) > 0
    assert hits() == ((hit or 0) + 1, (miss or 0) + 1)


@pytest.fixture
def notifier() -> Iterator[Notifier]:
    sender = Notifier(attempts=2, backoff_s=0.01)
    yield sender
    sender.close()


def test_webhook_failures_are_counted(notifier: Notifier) -> None:
    from tests.conftest import free_port

    metrics = Metrics(lambda: state(None, None, notifier))
    notifier.send(f"http://127.0.0.1:{free_port()}/hook", {
        "status": "failed", "project": "p", "loop": "l", "event": "e", "id": "r"})
    deadline = time.monotonic() + 10
    while notifier.failed == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    registry = metrics.registry
    assert registry.get_sample_value("tsq_webhook_notifications_total",
                                     {"outcome": "failed"}) == 1
    assert registry.get_sample_value("tsq_webhook_notifications_total",
                                     {"outcome": "delivered"}) == 0


def scheduled_run(**changes: object) -> Run:
    run = Run(id="r1", project="p", loop="l", event="e", version_id="v", trigger="schedule",
              status=RunStatus.SUCCESS, params={}, queued_ms=10_000, pipeline_id="r1",
              pipeline_ms=10_000, scheduled_ms=9_000, started_ms=10_500, finished_ms=12_500)
    return replace(run, **changes)  # type: ignore[arg-type]


def test_a_scheduled_run_is_observed_once_at_its_end() -> None:
    metrics = Metrics(State)
    metrics.run_finished(scheduled_run(result={"changes": 4}))
    metrics.run_finished(scheduled_run(id="r2", status=RunStatus.TIMEOUT, attempt=3,
                                       error=RunError("Timeout", "late")))
    get = metrics.registry.get_sample_value
    labels = {"project": "p", "loop": "l"}
    assert get("tsq_runs_total", {**labels, "status": "success"}) == 1
    assert get("tsq_runs_total", {**labels, "status": "timeout"}) == 1
    assert get("tsq_run_retries_total", labels) == 2  # attempts 1 and 2 were retried
    assert get("tsq_run_duration_seconds_sum", labels) == 4.0  # 2 s each
    assert get("tsq_run_queue_delay_seconds_sum", labels) == 1.0
    # 1.5 s from its scheduled time to its start; a third attempt's start says nothing of it
    assert get("tsq_fire_lateness_seconds_count", labels) == 1
    assert get("tsq_fire_lateness_seconds_sum", labels) == 1.5
    assert get("tsq_loop_last_changes", labels) == 4


def test_an_expired_run_has_no_duration() -> None:
    metrics = Metrics(State)
    metrics.run_finished(scheduled_run(status=RunStatus.EXPIRED, started_ms=None))
    get = metrics.registry.get_sample_value
    labels = {"project": "p", "loop": "l"}
    assert get("tsq_runs_total", {**labels, "status": "expired"}) == 1
    assert get("tsq_run_duration_seconds_count", labels) is None
    assert get("tsq_loop_last_changes", labels) is None


@pytest.mark.parametrize(("result", "written", "expected"), [
    ({"changes": 2}, 9, 2.0),
    ({"changes": 0.5}, 9, 0.5),
    ({"changes": True}, 9, 9.0),  # a flag is not a count
    ({"changes": "3"}, 9, 9.0),
    ({"series": 2}, 9, 9.0),
    (5, 9, 9.0),
    (None, 0, 0.0),
])
def test_change_count(result: object, written: int, expected: float) -> None:
    assert change_count(result, written) == expected


def test_metrics_are_served_in_the_text_format(service: Service) -> None:
    deploy(service, "reconcile", RECONCILE)
    service.run("reconcile", {"changes": 1})
    with serving(service) as url:
        answer = httpx.get(f"{url}/metrics", timeout=30, headers=bearer(service))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    assert families["tsq_runs"].type == "counter"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for s in families["tsq_runs"].samples}
    key = ("tsq_runs_total", (("loop", "reconcile"), ("project", "default"),
                              ("status", "success")))
    assert samples[key] >= 1
    assert "process_cpu_seconds_total" in answer.text
    assert "_created" not in answer.text


def test_each_service_has_a_registry_of_its_own() -> None:
    one, other = Metrics(State), Metrics(State)
    one.ingest("line", 3)
    assert one.registry.get_sample_value("tsq_points_ingested_total", {"protocol": "line"}) == 3
    assert other.registry.get_sample_value("tsq_points_ingested_total",
                                           {"protocol": "line"}) is None


DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def served_names(text: str) -> set[str]:
    """Every sample name the exposition `text` declares, samples or not (a loop's series appear
    with its first run, the family's TYPE line at once)."""
    return {family.name + suffix for family in text_string_to_metric_families(text)
            for suffix in SUFFIXES.get(family.type, ("",))}


def queries(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, item in node.items():
            if key in ("expr", "query", "definition") and isinstance(item, str):
                yield item
            else:
                yield from queries(item)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def test_every_metric_the_dashboard_queries_is_served(service: Service) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    asked = {name for query in queries(dashboard)
             for name in re.findall(r"\b(?:tsq|process)_[a-z0-9_]+", query)}
    assert len(asked) >= 20
    assert asked - served_names(service.metrics.render().decode()) == set()


def test_the_metrics_page_documents_every_metric(service: Service) -> None:
    documented = set(re.findall(r"^\| `(tsq_[a-z0-9_]+)`", METRICS_DOC.read_text(), re.M))
    families = {f.name + ("_total" if f.type == "counter" else "")
                for f in text_string_to_metric_families(service.metrics.render().decode())
                if f.name.startswith("tsq_")}
    assert documented == families
