"""The API against its own OpenAPI description, as schemathesis probes it: requests generated from
the schema (valid ones and malformed ones), sent in process to a real service with the admin
token. No answer may be a server error, and every answer must be one the description declares,
in the shape it declares."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import bearer, serving
from tsq.api import create_app
from tsq.config import Settings
from tsq.service import Service

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# The routes whose bodies are not JSON (line protocol, GTS, WarpScript): fuzzed with bytes their
# parsers refuse, which their own tests (test_lineprotocol, test_parser_fuzz) cover better.
EXAMPLES = 25  # per operation and mode (valid, malformed): about 30 operations, 1,500 requests


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # the in-process client sends Host: testserver
    made = Service(Settings.load(Path(tmp_path_factory.mktemp("schema")),
                                 flags={"allowed_hosts": "testserver"}))
    made.start()
    made.deploy("functions:\n  hello:\n    handler: hello.js\n", "loops.yml",
                {"hello.js": "export default async (e) => ({hi: e.params.who ?? 'you'})"}.get)
    yield made
    made.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_answer_is_declared_and_none_is_a_server_error(service: Service) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(service))
    token = {"Authorization": f"Bearer {service.admin_token}"}
    failures: dict[str, str] = {}
    sent: Counter[int] = Counter()
    for found, mode in itertools.product(schema.get_all_operations(), GenerationMode):
        operation = found.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def probe(case: schemathesis.Case) -> None:
            sent[case.call_and_validate(headers=token, checks=CHECKS).status_code] += 1

        try:
            probe()
        except Unsatisfiable:  # nothing to get wrong: an operation without parameters or body
            assert mode is GenerationMode.NEGATIVE, operation.label
        # every operation is probed, and all their failures reported (schemathesis raises a
        # BaseExceptionGroup of them)
        except (Exception, BaseExceptionGroup) as failure:
            failures[f"{operation.label} ({mode.value})"] = "; ".join(
                str(one).splitlines()[0] + " " + str(one)[:600].replace("\n", " ")
                for one in getattr(failure, "exceptions", [failure]))
    assert failures == {}
    print(f"{sum(sent.values())} requests: {dict(sorted(sent.items()))}")
    assert sum(sent.values()) > 500 and sent[200] + sent[201] + sent[204] > 50


def test_a_method_a_route_does_not_take_is_405_naming_those_it_does(service: Service) -> None:
    with serving(service) as url, httpx.Client(base_url=url, headers=bearer(service)) as client:
        answer = client.put("/v1/loops")
        assert answer.status_code == 405
        assert set(answer.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}
        assert answer.json()["error"]["type"] == "MethodNotAllowed"
        assert client.patch("/v1/runs/abc").headers["Allow"] == "GET"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sequences_along_the_links_deploy_run_and_read_without_an_undeclared_answer(
        service: Service) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(service))
    token = {"Authorization": f"Bearer {service.admin_token}"}
    steps: list[tuple[str, int]] = []

    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": token}

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            steps.append((f"{case.method} {case.path}", response.status_code))

        def validate_response(self, response: schemathesis.Response, case: schemathesis.Case,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    def read_a_run() -> bool:  # a run's id comes only from a run's answer: random ones 404
        return any(step.startswith("GET /v1/runs/{run_id}") and status == 200
                   for step, status in steps)

    # Which links a round follows is random: up to four rounds, until one has read a run
    # (every answer of every round is checked all the same)
    for _round in range(4):
        Sequences.run(settings=settings(max_examples=250, stateful_step_count=10,
                                        deadline=None, database=None,
                                        suppress_health_check=list(HealthCheck)))
        if read_a_run():
            break
    followed = set(steps)
    assert ("POST /v1/loops", 201) in followed
    assert ("POST /v1/loops/{name}/run", 200) in followed
    assert read_a_run(), sorted(followed)
