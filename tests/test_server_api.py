"""The server's own endpoints beside /v1's loops and runs: tsq's write, InfluxDB's health
checks and the offline API docs, on a real server."""

from __future__ import annotations

import re

import httpx
import pytest

from tsq import __version__
from tsq.client import HttpClient
from tsq.service import Service


def test_both_clients_answer_a_write_alike(api: httpx.Client, service: Service) -> None:
    body = "srv_write,host=a value=1 1\nsrv_write,host=b value=2 1"
    over_http = HttpClient(str(api.base_url), service.admin_token)
    try:
        answer = over_http.write(body, "s")
    finally:
        over_http.close()
    assert answer == {"written": 2}
    assert service.write_lines(body, "s") == answer  # what LocalClient.write answers


def test_tsq_write_endpoint_counts_and_influx_write_stays_204(api: httpx.Client) -> None:
    counted = api.post("/v1/write", params={"precision": "s"}, content=b"srv_w2 value=1 1")
    assert counted.status_code == 200 and counted.json() == {"written": 1}
    influx = api.post("/write", params={"precision": "s"}, content=b"srv_w2 value=1 2")
    assert influx.status_code == 204 and influx.content == b""


def test_influxdb_1x_ping(api: httpx.Client) -> None:
    for method in ("GET", "HEAD"):
        answer = api.request(method, "/ping")
        assert answer.status_code == 204 and answer.content == b"", method
        assert answer.headers["X-Influxdb-Version"] == __version__
        assert answer.headers["X-Influxdb-Build"] == "tsq"
    verbose = api.get("/ping", params={"verbose": "true"})
    assert verbose.status_code == 200 and verbose.json() == {"version": __version__}
    assert verbose.headers["X-Influxdb-Version"] == __version__


def test_influxdb_2x_health(api: httpx.Client) -> None:
    answer = api.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"name": "tsq", "message": "ready for queries and writes",
                             "status": "pass", "checks": [], "version": __version__}


# health() is deprecated in favour of ping(), but Telegraf-era tooling still calls /health.
@pytest.mark.filterwarnings("ignore:This method is deprecated:DeprecationWarning")
def test_influxdb_client_health_checks_pass(api: httpx.Client) -> None:
    from influxdb_client import InfluxDBClient

    with InfluxDBClient(url=str(api.base_url), token="-", org="-") as client:
        assert client.ping() is True
        health = client.health()
        assert health.status == "pass" and health.name == "tsq"
        assert health.version == __version__


ASSET = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|url: ?['"]([^'"]+)['"]""")


@pytest.mark.parametrize(("page", "kinds"), [
    ("/docs", {".js": "javascript", ".css": "text/css", ".png": "image/png"}),
    ("/redoc", {".js": "javascript", ".png": "image/png"}),
])
def test_api_docs_load_nothing_from_elsewhere(api: httpx.Client, page: str,
                                               kinds: dict[str, str]) -> None:
    html = api.get(page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    urls = {a or b for a, b in ASSET.findall(html.text)}
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "/openapi.json" in urls
    for suffix, kind in kinds.items():
        [asset] = [url for url in urls if url.endswith(suffix)]
        answer = api.get(asset)
        assert answer.status_code == 200 and kind in answer.headers["content-type"], asset
        assert len(answer.content) > 1000
    assert "cdn" not in html.text.lower() and "https://" not in html.text
