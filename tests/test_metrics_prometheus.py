"""A real Prometheus 2.42 scrapes a tsq server's /metrics on 127.0.0.1 every second, and what it
stored is read back through its HTTP API: the values a loop's runs produced, as PromQL sees them."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import prometheus as prometheus_server
from tests.conftest import free_port, loop_file, serving
from tsq.config import Settings
from tsq.service import Service

needs_prometheus = pytest.mark.skipif(
    not prometheus_server.available(),
    reason="Prometheus 2.42 is not installed here (apt-get install prometheus; .ci/run installs it)")

SCRAPED = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: tsq
    static_configs:
      - targets: ["{target}"]
    authorization:
      credentials_file: {token_file}
"""
HANDLER = """export default async function (event) {
  if (event.params.fail) throw new Error("refused");
  await db.write("reconciled value=1 1000000000\\nreconciled value=2 2000000000");
  return {changes: event.params.changes};
}
"""
WAIT_S = 30.0


@pytest.fixture(scope="module")
def tsq_and_prometheus() -> Iterator[tuple[Service, str]]:
    """A tsq service served on 127.0.0.1, and a Prometheus scraping it; both stopped after."""
    with tempfile.TemporaryDirectory() as root:
        service = Service(Settings.load(Path(root) / "tsq"))
        try:
            with serving(service) as url:
                # a read token for every project, as docs/metrics.md tells operators to make
                _record, secret = service.tokens.create("prometheus", ["read"])
                token_file = Path(root) / "tsq.token"
                token_file.write_text(secret)
                config = Path(root) / "prometheus.yml"
                config.write_text(SCRAPED.format(target=url.removeprefix("http://"),
                                                 token_file=token_file))
                port = free_port()
                with prometheus_server.running(
                        ["prometheus", f"--config.file={config}",
                         f"--storage.tsdb.path={Path(root) / 'data'}",
                         f"--web.listen-address=127.0.0.1:{port}"],
                        f"http://127.0.0.1:{port}", "/-/ready",
                        Path(root) / "prometheus.log") as base:
                    yield service, base
        finally:
            service.close()


def scraped(base: str, promql: str, expected: float) -> float | None:
    """The value of `promql` once Prometheus has scraped it as `expected` (within WAIT_S), else
    the last value it had (None: no series)."""
    deadline, last = time.monotonic() + WAIT_S, None
    while time.monotonic() < deadline:
        found = prometheus_server.query(base, promql, time.time())
        last = float(found[0]["value"][1]) if found else None
        if last == expected:
            return last
        time.sleep(0.5)
    return last


@pytest.mark.slow
@needs_prometheus
def test_prometheus_scrapes_runs_by_status_and_the_change_count(
        tsq_and_prometheus: tuple[Service, str]) -> None:
    service, base = tsq_and_prometheus
    service.deploy(loop_file("x", "x.js"), "loops.yml", {"x.js": HANDLER}.get)
    for changes in (3, 1, 0):
        assert service.run("x", {"changes": changes}).status == "success"
    assert service.run("x", {"fail": True}).status == "failed"
    assert scraped(base, 'tsq_runs_total{loop="x",status="success"}', 3) == 3
    assert scraped(base, 'tsq_runs_total{loop="x",status="failed"}', 1) == 1
    assert scraped(base, 'tsq_loop_last_changes{loop="x"}', 0) == 0
    assert scraped(base, 'tsq_loop_changes_total{loop="x"}', 4) == 4
    assert scraped(base, 'tsq_run_duration_seconds_count{loop="x"}', 4) == 4
    assert scraped(base, 'tsq_points_stored_total{connector="embedded"}', 6) == 6
    assert scraped(base, 'sum(tsq_workers)', service.settings.workers) == service.settings.workers
    assert scraped(base, 'up{job="tsq"}', 1) == 1


@pytest.mark.slow
@needs_prometheus
def test_a_deleted_loop_leaves_the_scrape(tsq_and_prometheus: tuple[Service, str]) -> None:
    service, base = tsq_and_prometheus
    service.deploy(loop_file("gone", "gone.js"), "loops.yml", {"gone.js": HANDLER}.get)
    service.run("gone", {"changes": 2})
    assert scraped(base, 'tsq_loop_last_changes{loop="gone"}', 2) == 2
    service.delete_loop("gone")
    # Prometheus marks a series that left the scrape stale: an instant query no longer sees it.
    assert scraped(base, 'count(tsq_runs_total{loop="gone"}) or vector(0)', 0) == 0
