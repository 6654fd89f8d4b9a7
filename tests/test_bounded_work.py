"""Bounded work: a query has a deadline and a largest answer, runs by hand and writes have a
bounded queue past which they are refused with 429 and Retry-After, and the health check answers
at once whatever the load (docs/configuration.md, "Bounded work")."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import bearer, deploy, serving
from tsq.admission import Admission, Rates
from tsq.config import Settings
from tsq.errors import TooManyRequests
from tsq.runtimes.tsl import evaluate
from tsq.service import Service

HOUR_S = 3600
YEAR_S = 365 * 24 * HOUR_S
T0_S = 1_700_000_000


@contextmanager
def server(tmp_path: Path, *, start: bool = False, **flags: int) -> Iterator[
        tuple[Service, httpx.Client]]:
    service = Service(Settings.load(tmp_path, flags=flags))
    if start:
        service.start()
    try:
        with serving(service) as url, httpx.Client(base_url=url, timeout=60,
                                                    headers=bearer(service)) as client:
            yield service, client
    finally:
        service.close()


def write_span(client: httpx.Client, seconds: int) -> None:
    lines = f"big value=1 {T0_S * 10**9}\nbig value=2 {(T0_S + seconds) * 10**9}\n"
    assert client.post("/write", content=lines.encode()).status_code == 204


def sample_by(span: str, seconds: int, then: str = "") -> dict[str, str]:
    return {"tsl": f'select("big").from({T0_S * 1000}, {(T0_S + seconds) * 1000 + 1})'
                   f'.sampleBy({span}, mean, "previous"){then}'}


def test_an_answer_over_max_query_points_is_a_413_naming_the_limit(tmp_path: Path) -> None:
    with server(tmp_path, max_query_points=1000) as (_, client):
        write_span(client, HOUR_S)
        answer = client.post("/v1/query", json=sample_by("1s", HOUR_S))
        assert answer.status_code == 413, answer.text
        error = answer.json()["error"]
        assert error["type"] == "QueryTooLarge"
        assert error["details"] == {"limit": "max_query_points", "max_points": 1000,
                                    "points": HOUR_S + 1}
        assert "more than max_query_points (1000)" in error["message"]
        assert "a wider sampleBy span" in error["message"]
        within = client.post("/v1/query", json=sample_by("1m", HOUR_S))
        assert within.status_code == 200 and len(within.json()["series"][0]["values"]) == 61
        # a batch of statements is stopped once their series together pass the limit
        batch = client.post("/v1/query", json={"tsl": "\n".join(
            [sample_by("1m", HOUR_S)["tsl"]] * 1000)})
        assert batch.status_code == 413, batch.text
        assert batch.json()["error"]["message"].startswith(
            "the statements' series together would hold 1037 points")
        # WarpScript's answers are bounded the same way
        many = client.post("/v1/query", json={"warpscript": "NEWGTS 1 2000 <% 't' STORE $t "
                                                            "NaN NaN NaN 1 ADDVALUE %> FOR"})
        assert many.status_code == 413 and "2000 points" in many.json()["error"]["message"]


def test_a_filled_sample_by_over_a_year_is_refused_before_it_is_built(tmp_path: Path) -> None:
    with server(tmp_path) as (_, client):
        write_span(client, YEAR_S)
        started = time.monotonic()
        answer = client.post("/v1/query", json=sample_by("1s", YEAR_S))
        took = time.monotonic() - started
        assert answer.status_code == 413, answer.text[:300]
        assert answer.json()["error"]["details"]["points"] == YEAR_S + 1
        assert took < 5, took  # 31.5 million buckets were never made
        hourly = client.post("/v1/query", json=sample_by("1h", YEAR_S))
        assert hourly.status_code == 200, hourly.text[:300]


@pytest.fixture
def slow_fetch(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every sampled read of the store takes 2 s; the methods evaluated after it, by name."""
    fetch, method = evaluate.Evaluation.fetch_sampled, evaluate.Evaluation.method
    evaluated: list[str] = []

    def slow(self: evaluate.Evaluation, *args: Any) -> Any:
        time.sleep(2)
        return fetch(self, *args)

    def counted(self: evaluate.Evaluation, step: Any, *args: Any) -> Any:
        evaluated.append(step.op.text)
        return method(self, step, *args)

    monkeypatch.setattr(evaluate.Evaluation, "fetch_sampled", slow)
    monkeypatch.setattr(evaluate.Evaluation, "method", counted)
    return evaluated


def test_a_query_past_its_deadline_is_a_504_and_stops(tmp_path: Path,
                                                      slow_fetch: list[str]) -> None:
    with server(tmp_path, query_timeout_s=1) as (_, client):
        write_span(client, 60)
        started = time.monotonic()
        answer = client.post("/v1/query", json=sample_by("1s", 60, ".add(1)"))
        assert answer.status_code == 504, answer.text
        assert time.monotonic() - started < 1.9  # answered at the deadline, not after the read
        error = answer.json()["error"]
        assert error["type"] == "QueryTimeout" and error["details"]["limit"] == "query_timeout_s"
        assert "query_timeout_s (1 s)" in error["message"]
        time.sleep(2)
        assert slow_fetch == []  # the read ended past the deadline: no add() after it


def test_a_query_whose_client_went_away_stops(tmp_path: Path, slow_fetch: list[str]) -> None:
    with server(tmp_path) as (_, client):
        write_span(client, 60)
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/query", json=sample_by("1s", 60, ".add(1)"), timeout=0.5)
        time.sleep(2.5)
        assert slow_fetch == []
        assert client.get("/healthz").status_code == 200


def test_a_warpscript_whose_client_went_away_stops(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tsq.runtimes.ws import vm

    checks = [0]
    check = vm.Vm.check

    def counted(self: vm.Vm, *args: Any) -> None:
        checks[0] += 1
        check(self, *args)

    monkeypatch.setattr(vm.Vm, "check", counted)
    with server(tmp_path) as (_, client):
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/query", json={"warpscript": "<% true %> <% %> WHILE"},
                        timeout=0.5)
        time.sleep(1)
        seen = checks[0]
        time.sleep(1)
        assert seen and checks[0] == seen  # the VM stopped, 29 s before its deadline


def test_a_warpscript_stops_at_the_query_deadline(tmp_path: Path) -> None:
    with server(tmp_path, query_timeout_s=1) as (_, client):
        started = time.monotonic()
        answer = client.post("/v1/query", json={"warpscript": "<% true %> <% %> WHILE"})
        assert time.monotonic() - started < 5
        assert answer.status_code == 504, answer.text
        assert answer.json()["error"]["type"] == "QueryTimeout"


BUSY_HANDLER = """export default function () {
  const until = Date.now() + 300;
  while (Date.now() < until) {}
  return {ok: true};
}
"""


def test_runs_past_max_queued_runs_get_429_while_healthz_answers(tmp_path: Path) -> None:
    with server(tmp_path, start=True, workers=1, max_queued_runs=5) as (service, client):
        assert deploy(client, "busy", BUSY_HANDLER).status_code == 201
        stop = threading.Event()
        health: list[float] = []

        def probe() -> None:
            while not stop.is_set():
                started = time.monotonic()
                assert client.get("/healthz").status_code == 200
                health.append(time.monotonic() - started)
                time.sleep(0.02)

        def run(index: int) -> httpx.Response:
            return client.post("/v1/loops/busy/run", params={"async": index % 4 == 0},
                               json={"params": {"i": index}})

        prober = threading.Thread(target=probe)
        prober.start()
        with ThreadPoolExecutor(40) as fire:
            answers = list(fire.map(run, range(40)))
        stop.set()
        prober.join()
        refused = [a for a in answers if a.status_code == 429]
        assert refused, [a.status_code for a in answers]
        assert {a.status_code for a in answers} <= {200, 202, 429}
        for answer in refused:
            error = answer.json()["error"]
            assert error["type"] == "TooManyRequests"
            assert error["details"]["limit"] == "max_queued_runs"
            assert int(answer.headers["Retry-After"]) == error["details"]["retry_after_s"] >= 1
            assert "5 runs by hand waiting already, the limit (max_queued_runs)" in \
                error["message"]
        assert health and max(health) < 1, max(health)
        deadline = time.monotonic() + 30
        while service.run_admission.inside and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.run_admission.inside == 0  # every admitted run let go of its place
        assert client.post("/v1/loops/busy/run").status_code == 200


def test_writes_past_max_concurrent_writes_get_429(tmp_path: Path) -> None:
    with server(tmp_path, max_concurrent_writes=2) as (service, client):
        held = [service.write_admission.enter() for _ in range(2)]  # two writes in progress
        for path in ("/write", "/api/v2/write", "/v1/write"):
            refused = client.post(path, content=b"w value=1 1")
            assert refused.status_code == 429, (path, refused.text)
            assert refused.headers["Retry-After"] == "1"
            assert refused.json()["error"]["details"]["limit"] == "max_concurrent_writes"
        for ticket in held:
            ticket.release()
        assert client.post("/write", content=b"w value=1 1").status_code == 204


def test_queries_past_max_queued_queries_get_429(tmp_path: Path) -> None:
    with server(tmp_path, max_queued_queries=1) as (service, client):
        room = service.query_admission.room  # the query threads, and one waiting
        held = [service.query_admission.enter() for _ in range(room)]
        for body in ({"tsl": 'select("big").from(0, 1)'}, {"warpscript": "1 2 +"}):
            refused = client.post("/v1/query", json=body)
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"]["details"]["limit"] == "max_queued_queries"
        assert client.post("/api/v0/exec", content=b"1 2 +").status_code == 429
        held.pop().release()
        assert client.post("/v1/query", json={"warpscript": "1 2 +"}).status_code == 200
        assert service.query_admission.inside == room - 1  # the query let go of its place
        for ticket in held:
            ticket.release()


def test_admission_refuses_past_its_room_and_estimates_the_wait() -> None:
    now = [0.0]
    admission = Admission(waiting=2, running=1, what="runs by hand waiting",
                          setting="max_queued_runs", clock=lambda: now[0])
    tickets = [admission.enter() for _ in range(3)]
    now[0] = 10.0
    tickets[0].release()
    tickets[0].release()  # a second release changes nothing
    assert admission.inside == 2
    tickets.append(admission.enter())
    with pytest.raises(TooManyRequests) as refused:
        admission.enter()
    # the pace moved from 1 s towards the 10 s the first run took, to 2.8 s; two runs wait,
    # so this one would start after three more have finished
    assert refused.value.retry_after_s == 9
    now[0] = 11.0
    tickets[1].release()  # 1 s after the one before: the pace comes down to 2.44 s
    tickets.append(admission.enter())
    with pytest.raises(TooManyRequests) as refused:
        admission.enter()
    assert refused.value.retry_after_s == 8
    assert refused.value.details["limit"] == "max_queued_runs"


def test_the_openapi_documents_the_limits(tmp_path: Path) -> None:
    with server(tmp_path) as (_, client):
        spec = client.get("/openapi.json")
        assert spec.status_code == 200, spec.text[:300]
        paths = spec.json()["paths"]
    for path in ("/v1/loops/{name}/run", "/write", "/api/v2/write", "/v1/write",
                 "/api/v0/update"):
        busy = paths[path]["post"]["responses"]["429"]
        assert "Retry-After" in busy["headers"], path
        assert busy["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorAnswer"}
    for path in ("/v1/query", "/api/v0/exec"):
        assert {"413", "429", "504"} <= set(paths[path]["post"]["responses"]), path


def deploy_in(client: httpx.Client, project: str) -> None:
    answer = client.post("/v1/loops", json={
        "content": f"project: {project}\nfunctions:\n  busy:\n    handler: busy.js\n",
        "files": {"busy.js": BUSY_HANDLER}})
    assert answer.status_code == 201, answer.text


def test_a_project_past_max_project_runs_gets_429_and_the_others_go_on(tmp_path: Path) -> None:
    with server(tmp_path, start=True, workers=2, max_project_runs=2) as (_, client):
        deploy_in(client, "a")
        deploy_in(client, "b")

        def run(project: str) -> httpx.Response:
            return client.post("/v1/loops/busy/run", params={"project": project, "async": True})

        accepted = [run("a"), run("a")]
        assert [a.status_code for a in accepted] == [202, 202]
        refused = run("a")
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["details"]["limit"] == "max_project_runs"
        assert error["details"]["project"] == "a"
        assert "2 runs by hand of project 'a' in progress already" in error["message"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert run("b").status_code == 202  # another project's room is its own
        deadline = time.monotonic() + 30  # once a's runs have ended, it has room again
        while (again := client.post("/v1/loops/busy/run", params={"project": "a"})
               ).status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert again.status_code == 200, again.text
        assert all(client.get(f"/v1/runs/{a.json()['id']}").json()["status"] == "success"
                   for a in accepted)


# -- per-project rates -------------------------------------------------------------------------

def test_rates_refill_with_time_and_say_when_a_request_would_fit() -> None:
    now = [0.0]
    rates = Rates(10, burst_s=2, what="points of project {key!r}", setting="project_points_per_s",
                  clock=lambda: now[0])
    rates.take("a", 20)  # a whole burst at once
    with pytest.raises(TooManyRequests) as refused:
        rates.take("a", 5)
    assert refused.value.retry_after_s == 1 and refused.value.details["left"] == 0
    rates.take("b", 20)  # another project has its own bucket
    now[0] = 0.5
    rates.take("a", 5)  # refilled at 10 a second
    with pytest.raises(TooManyRequests) as never:
        rates.take("a", 21)  # more than a burst never fits: send less at once
    assert never.value.retry_after_s == 300
    Rates(0, burst_s=1, what="", setting="x").take("a", 10**9)  # 0: unbounded


@given(st.lists(st.tuples(st.floats(0, 5), st.integers(1, 30)), max_size=40))
def test_a_rate_never_lets_more_through_than_its_burst_and_refill(
        steps: list[tuple[float, int]]) -> None:
    now, taken = [0.0], 0
    rates = Rates(10, burst_s=3, what="{key}", setting="s", clock=lambda: now[0])
    for wait, amount in steps:
        now[0] += wait
        try:
            rates.take("p", amount)
            taken += amount
        except TooManyRequests:
            pass
        assert taken <= 30 + 10 * now[0] + 1e-6


def test_query_time_is_counted_when_it_ends_and_refuses_the_next_query() -> None:
    now = [0.0]
    rates = Rates(1, burst_s=2, what="query time of project {key!r} a minute",
                  setting="project_query_s_per_minute", clock=lambda: now[0])
    with rates.spending("a"):
        now[0] += 5.0  # a query of 5 s: allowed, as its cost was not known before
    with pytest.raises(TooManyRequests) as refused, rates.spending("a"):
        pytest.fail("a project that overdrew its seconds runs no query")
    # 2 s of burst less 5 s spent: 3 s overdrawn, so 4 s until a second is earned again
    assert refused.value.retry_after_s == 4
    assert "query time of project 'a' a minute" in refused.value.message
    with rates.spending("b"):  # another project has its own seconds
        pass
    now[0] += 3.5
    with rates.spending("a"):  # earned back past zero
        pass
    with Rates(0, burst_s=1, what="", setting="x").spending("a"):  # 0: unbounded
        pass


def test_a_project_past_its_query_time_gets_429(tmp_path: Path, slow_fetch: list[str]) -> None:
    with server(tmp_path, project_query_s_per_minute=1) as (service, client):
        write_span(client, 60)
        made = client.post("/v1/tokens", json={"name": "team", "roles": ["read"],
                                               "project": "team"}).json()["token"]
        team = {"Authorization": f"Bearer {made}"}
        first = client.post("/v1/query", headers=team, json=sample_by("1s", 60))
        assert first.status_code == 200, first.text  # 2 s, more than its minute's 1 s
        refused = client.post("/v1/query", headers=team, json=sample_by("1s", 60))
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["details"]["limit"] == "project_query_s_per_minute"
        assert int(refused.headers["Retry-After"]) >= 60
        ws = client.post("/api/v0/exec", headers=team, content=b"1 2 +")
        assert ws.status_code == 429  # WarpScript spends the same seconds
        assert client.post("/v1/query", json={"tsl": 'select("x").last(1m)'},
                           headers=bearer(service)).status_code == 200  # others still query
        scraped = client.get("/metrics").text
        assert ('tsq_requests_refused_total{limit="project_query_s_per_minute",status="429"} 2.0'
                in scraped)


def test_a_project_past_its_rates_gets_429_naming_the_setting(tmp_path: Path) -> None:
    with server(tmp_path, start=True, project_runs_per_minute=2,
                project_points_per_s=10) as (_service, client):
        made = client.post("/v1/tokens", json={"name": "team", "roles": ["write", "run",
                                                                          "deploy", "read"],
                                               "project": "team"}).json()["token"]
        team = {"Authorization": f"Bearer {made}"}
        deployed = client.post("/v1/loops", headers=team, json={
            "content": "project: team\nfunctions:\n  r:\n    handler: r.js\n",
            "files": {"r.js": "export default async () => 1"}})
        assert deployed.status_code == 201, deployed.text
        answers = [client.post("/v1/loops/r/run", headers=team, json={}) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        error = answers[-1].json()["error"]
        assert error["details"]["limit"] == "project_runs_per_minute"
        assert int(answers[-1].headers["Retry-After"]) >= 1
        lines = "\n".join(f"rate,host=h{i} value=1 1" for i in range(101)).encode()
        refused = client.post("/write", headers=team, content=lines)  # 101 > 10 s of 10/s
        assert refused.status_code == 429
        assert refused.json()["error"]["details"]["limit"] == "project_points_per_s"
        assert client.post("/v1/query", headers=team, json={
            "tsl": 'select("rate").from(0)'}).json()["series"] == []  # nothing stored
        within = "\n".join(f"rate,host=h{i} value=1 1" for i in range(100)).encode()
        assert client.post("/write", headers=team, content=within).status_code == 204
