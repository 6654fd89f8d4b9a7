"""Cancelling runs on a real service with one real worker: a queued run never starts, a running
one is stopped in its worker (which is replaced), the run ends `cancelled`; over HTTP and with
`tsq runs cancel`, and in a pipeline that `resume` starts again."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from queue import Queue
from typing import Any

import httpx
import pytest

from tests.conftest import bearer, serving
from tests.test_cli_runs import tsq
from tsq.config import Settings
from tsq.errors import Conflict
from tsq.service import Service

SPIN = "export default async () => { await null; while (true) {} }"
NAP = "export default async () => { await new Promise(r => setTimeout(r, %d)); return 'slept'; }"
DAILY = '    events: [{daily: {rate: "R/2026-01-01T00:00:00Z/P1D/ET1H"}}]\n'
D0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = 86_400_000


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = dataclasses.replace(Settings.load(tmp_path_factory.mktemp("cancel")), workers=1)
    service = Service(settings)
    service.start()
    yield service
    service.close()


@pytest.fixture(scope="module")
def url(svc: Service) -> Iterator[str]:
    with serving(svc) as base:
        yield base


@pytest.fixture(scope="module")
def api(url: str, svc: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60, headers=bearer(svc)) as client:
        yield client


def deploy(svc: Service, loops: dict[str, tuple[str, str]]) -> None:
    """Loops by name: (handler source, more lines of the loop's body)."""
    text = "functions:\n" + "".join(f"  {name}:\n    handler: {name}.js\n    timeout: 60\n"
                                    f"{extra}" for name, (_, extra) in loops.items())
    files = {f"{name}.js": source for name, (source, _) in loops.items()}
    svc.deploy(text, "loops.yml", files.get)


def start(api: httpx.Client, loop: str) -> dict[str, Any]:
    answer = api.post(f"/v1/loops/{loop}/run", params={"async": "true"}, json={})
    assert answer.status_code == 202, answer.text
    record: dict[str, Any] = answer.json()
    return record


def until(svc: Service, run_id: str, *statuses: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (record := svc.get_run(run_id))["status"] not in statuses:
        assert time.monotonic() < deadline, record
        time.sleep(0.02)
    return record


def runs_of(svc: Service, loop: str) -> list[dict[str, Any]]:
    from tsq.runstore import RunFilter

    return sorted(svc.list_runs(RunFilter(loop=loop))["runs"],
                  key=lambda r: (r["scheduled_ms"] or 0, r["queued_ms"]))


def statuses(records: list[dict[str, Any]]) -> list[str]:
    return [record["status"] for record in records]


def logged(svc: Service, run_id: str) -> list[str]:
    return [line["message"] for line in svc.run_logs(run_id)["logs"]]


def test_a_spinning_handler_is_stopped_within_a_second_and_its_slot_runs_the_next(
        svc: Service, api: httpx.Client) -> None:
    deploy(svc, {"c-spin": (SPIN, ""), "c-quick": ("export default () => 'quick'", "")})
    assert svc.run("c-quick").status == "success"  # the one worker is up
    [worker] = svc.pool.pids()  # type: ignore[attr-defined]
    spinning = start(api, "c-spin")
    until(svc, spinning["id"], "running")
    time.sleep(0.3)  # inside `while (true) {}`

    began = time.monotonic()
    answer = api.post(f"/v1/runs/{spinning['id'][:12]}/cancel")
    took = time.monotonic() - began
    assert answer.status_code == 200, answer.text
    record = answer.json()
    assert record["status"] == "cancelled" and took < 1.0, (record, took)
    assert record["error"]["type"] == "Cancelled"
    assert "while it ran; its worker process was stopped" in record["error"]["message"]
    assert svc.get_run(spinning["id"])["status"] == "cancelled"

    after = svc.run("c-quick")
    assert (after.status, after.result) == ("success", "quick")
    assert svc.pool.pids() != [worker]  # type: ignore[attr-defined]  # it was replaced
    assert svc.run("c-quick").status == "success"
    # Not retried, and cancelling it again says it has ended.
    again = api.post(f"/v1/runs/{spinning['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["message"] == (
        f"run {spinning['id']} (c-spin) has ended already (cancelled); only a queued or "
        f"running run can be cancelled")


def test_a_run_waiting_for_the_worker_never_starts(svc: Service, api: httpx.Client) -> None:
    # The one worker spins; a manual run behind it is claimed but waits for the worker.
    deploy(svc, {"c-spin": (SPIN, ""), "c-quick": ("export default () => 'quick'", "")})
    spinning = start(api, "c-spin")
    until(svc, spinning["id"], "running")
    waiting = start(api, "c-quick")
    answer = api.post(f"/v1/runs/{waiting['id']}/cancel")
    assert answer.json()["status"] == "cancelled", answer.text
    assert "before a worker took it; it never started" in answer.json()["error"]["message"]
    assert api.post(f"/v1/runs/{spinning['id']}/cancel").json()["status"] == "cancelled"
    assert svc.run("c-quick").status == "success"
    assert svc.get_run(waiting["id"])["status"] == "cancelled"
    assert svc.get_run(waiting["id"])["result"] is None


def test_a_queued_run_in_its_loops_lane_is_never_started(svc: Service) -> None:
    # max_concurrency 1: a backfill of two days runs one day while the other waits, queued.
    deploy(svc, {"c-lane": (NAP % 1500, DAILY + "    max_concurrency: 1\n")})
    job = svc.backfill("c-lane", D0, datetime.fromtimestamp((D0.timestamp() * 1000 + 2 * DAY)
                                                            / 1000, UTC))
    deadline = time.monotonic() + 30
    while statuses(found := runs_of(svc, "c-lane")) != ["running", "queued"]:
        assert time.monotonic() < deadline, found
        time.sleep(0.02)
    first, second = found
    cancelled = svc.cancel(second["id"])
    assert cancelled["status"] == "cancelled" and cancelled["started_ms"] is None
    assert cancelled["error"]["message"] == ("cancelled by request while it was queued; it "
                                             "never started")

    assert until(svc, first["id"], "success")["result"] == "slept"
    time.sleep(0.5)  # the lane hands its slot on; the cancelled run is not claimed
    assert svc.get_run(second["id"])["status"] == "cancelled"
    assert svc.get_run(second["id"])["started_ms"] is None
    assert svc.backfill_status(job["id"])["cancelled"] == 1
    # The lane is free: the next run of the loop starts at once.
    assert svc.run("c-lane").status == "success"


def test_tsq_runs_cancel_takes_a_short_id_and_says_when_a_run_has_ended(
        svc: Service, api: httpx.Client, url: str, tmp_path: Any) -> None:
    deploy(svc, {"c-spin": (SPIN, "")})
    spinning = start(api, "c-spin")
    until(svc, spinning["id"], "running")
    short = svc.runs.short_ids([spinning["id"]])[spinning["id"]]

    shown = tsq(tmp_path, "runs", "cancel", short, url=url, token=svc.admin_token)
    assert shown.returncode == 0, shown.stderr
    assert f"run {spinning['id']} cancelled" in shown.stdout
    assert "Cancelled: cancelled by request while it ran" in shown.stderr

    again = tsq(tmp_path, "runs", "cancel", short, url=url, token=svc.admin_token)
    assert again.returncode == 1
    assert f"run {spinning['id']} (c-spin) has ended already (cancelled)" in again.stderr
    unknown = tsq(tmp_path, "runs", "cancel", "0000ffff", url=url, token=svc.admin_token)
    assert unknown.returncode == 1
    assert "no run with id or id prefix '0000ffff'" in unknown.stderr
    assert api.post("/v1/runs/0000ffff/cancel").status_code == 404


def test_a_cancelled_pipeline_step_stops_its_pipeline_until_resumed(svc: Service) -> None:
    # c-first → c-second (spins on its first attempt) → c-third
    deploy(svc, {
        "c-first": ("export default () => 'first'", DAILY),
        "c-second": ("export default async (event) => { await null; "
                     "if (event.attempt === 1) { while (true) {} } return 'second'; }",
                     "    events: [{after-first: {after: c-first}}]\n"),
        "c-third": ("export default () => 'third'",
                    "    events: [{after-second: {after: c-second}}]\n"),
    })
    svc.backfill("c-first", D0, datetime.fromtimestamp(D0.timestamp() + 86_400, UTC))
    deadline = time.monotonic() + 30
    while not (second := runs_of(svc, "c-second")) or second[0]["status"] != "running":
        assert time.monotonic() < deadline, second
        time.sleep(0.02)
    time.sleep(0.3)
    assert svc.cancel(second[0]["id"])["status"] == "cancelled"
    time.sleep(0.5)
    assert runs_of(svc, "c-third") == []  # a cancelled step is not followed

    resumed = svc.resume(second[0]["id"])
    assert resumed["resumed"] == [second[0]["id"]]
    assert until(svc, second[0]["id"], "success")["attempt"] == 2
    deadline = time.monotonic() + 30
    while not (third := runs_of(svc, "c-third")) or third[0]["status"] != "success":
        assert time.monotonic() < deadline, third
        time.sleep(0.05)
    assert third[0]["pipeline_id"] == second[0]["pipeline_id"]
    assert any("resumed: this step had cancelled" in line
               for line in logged(svc, second[0]["id"]))


def test_a_run_waited_for_over_http_answers_409_once_cancelled(svc: Service, url: str) -> None:
    deploy(svc, {"c-spin": (SPIN, "")})
    answers: Queue[httpx.Response] = Queue()
    waiting = threading.Thread(target=lambda: answers.put(
        httpx.post(f"{url}/v1/loops/c-spin/run", json={}, timeout=60, headers=bearer(svc))))
    waiting.start()
    deadline = time.monotonic() + 30
    while not (running := [r for r in runs_of(svc, "c-spin") if r["status"] == "running"]):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    svc.cancel(running[0]["id"])
    answer = answers.get(timeout=10)
    waiting.join()
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["type"] == "RunCancelled"
    assert error["details"]["run"]["status"] == "cancelled"
    assert error["message"].startswith("cancelled by request while it ran")


class _Slow(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(1.5)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def test_a_url_target_running_in_the_service_cannot_be_cancelled(svc: Service) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        svc.deploy(f"functions:\n  c-target:\n    target: http://127.0.0.1:"
                   f"{server.server_address[1]}/\n", "loops.yml", lambda name: None)
        submitted = svc.submit("c-target")
        until(svc, submitted.record.id, "running")
        with pytest.raises(Conflict) as caught:
            svc.cancel(submitted.record.id)
        assert caught.value.message == (
            f"run {submitted.record.id} (c-target) runs in the service itself (a URL target or a "
            f"retention step), which cannot be stopped part-way; it ends within its loop's "
            f"timeout")
        assert submitted.done.result(timeout=30).status == "success"
    finally:
        server.shutdown()
        server.server_close()
