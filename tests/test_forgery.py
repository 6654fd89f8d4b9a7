"""A web page cannot drive the API: requests naming another host (DNS rebinding), coming from
another origin, or changing state with a body a page may send without asking first are refused,
and change nothing. Clients that are not browsers are not affected."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import bearer, deploy, serving
from tsq.config import Settings
from tsq.forgery import allowed_host_names
from tsq.service import Service

LINE = "forged,host=a value=1 1700000000000000000"


def loops(api: httpx.Client) -> list[str]:
    return [loop["name"] for loop in api.get("/v1/loops").json()["loops"]]


def test_a_host_name_the_server_does_not_have_is_refused(api: httpx.Client) -> None:
    """What a page on a rebinding domain (evil.example resolving to 127.0.0.1) sends."""
    answer = api.post("/v1/loops", headers={"Host": "evil.example:8080"}, json={
        "content": "functions:\n  rebound:\n    handler: r.js\n",
        "files": {"r.js": "export default async () => 1"}})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "'evil.example:8080'" in error["message"] and "allowed_hosts" in error["message"]
    assert "rebound" not in loops(api)
    assert api.get("/healthz", headers={"Host": "localhost:8080"}).status_code == 200
    assert api.get("/healthz", headers={"Host": "[::1]:8080"}).status_code == 200


def test_a_request_from_another_origin_is_refused(api: httpx.Client) -> None:
    forged = api.post("/v1/loops", headers={"Origin": "http://evil.example"}, json={
        "content": "functions:\n  crossed:\n    handler: c.js\n",
        "files": {"c.js": "export default async () => 1"}})
    assert forged.status_code == 403
    assert "'http://evil.example'" in forged.json()["error"]["message"]
    written = api.post("/write", params={"db": "x"}, content=LINE,
                       headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
    assert written.status_code == 403
    assert api.post("/v1/query", json={"tsl": 'select("forged")'}).json()["series"] == []
    assert "crossed" not in loops(api)
    own = str(api.base_url).rstrip("/")
    assert deploy(api, "same-origin", "export default async () => 1").status_code == 201
    assert api.post("/v1/loops/same-origin/run", json={}, headers={"Origin": own}
                    ).json()["result"] == 1
    sandboxed = api.post("/v1/loops/same-origin/run", json={}, headers={"Origin": "null"})
    assert sandboxed.status_code == 403


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded",
                                  "multipart/form-data; boundary=x"])
def test_a_body_any_page_could_send_does_not_change_state(api: httpx.Client, kind: str) -> None:
    """Resume reads no body, so nothing but this check stops a cross-site form."""
    name = f"failing-{kind[:4]}"
    assert deploy(api, name, "export default async () => { throw new Error('no') }"
                  ).status_code == 201
    assert api.post(f"/v1/loops/{name}/run", json={}).status_code == 500
    [failed] = api.get("/v1/runs", params={"loop": name}).json()["runs"]
    assert failed["status"] == "failed"
    answer = api.post(f"/v1/runs/{failed['id']}/resume", content="x",
                      headers={"Content-Type": kind})
    assert answer.status_code == 415
    assert "application/json" in answer.json()["error"]["message"]
    assert len(api.get("/v1/runs", params={"loop": name}).json()["runs"]) == 1
    assert api.post(f"/v1/runs/{failed['id']}/resume").status_code == 200  # no body: as before


def test_clients_that_are_not_browsers_write_line_protocol_as_before(api: httpx.Client) -> None:
    """Telegraf and curl send text/plain and no Origin."""
    answer = api.post("/write", params={"db": "x"}, content=LINE,
                      headers={"Content-Type": "text/plain"})
    assert answer.status_code == 204
    assert api.post("/v1/write", content=LINE, headers={"Content-Type": "text/plain"}
                    ).status_code == 200


@pytest.fixture()
def named(tmp_path: Path) -> Iterator[httpx.Client]:
    settings = dataclasses.replace(Settings.load(tmp_path), allowed_hosts="tsq.example.com")
    service = Service(settings)
    try:
        with serving(service) as url, httpx.Client(base_url=url, timeout=30,
                                                    headers=bearer(service)) as client:
            yield client
    finally:
        service.close()


def test_allowed_hosts_adds_the_names_clients_use(named: httpx.Client) -> None:
    assert named.get("/healthz", headers={"Host": "tsq.example.com:8080"}).status_code == 200
    assert named.get("/healthz", headers={"Host": "TSQ.example.com"}).status_code == 200
    assert named.get("/healthz", headers={"Host": "other.example.com"}).status_code == 400
    assert named.get("/healthz", headers={"Origin": "https://tsq.example.com"}).status_code == 200


def test_the_allowed_names() -> None:
    assert allowed_host_names("127.0.0.1", "") == {"localhost", "127.0.0.1", "::1"}
    assert allowed_host_names("0.0.0.0", "a.example, [fd00::1]") == {
        "localhost", "127.0.0.1", "::1", "a.example", "fd00::1"}
    assert allowed_host_names("10.0.0.5", "") == {"localhost", "127.0.0.1", "::1", "10.0.0.5"}
    assert allowed_host_names("0.0.0.0", "*") is None
