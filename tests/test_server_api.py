"""The server's own endpoints beside /v1's loops and runs: tsq's write, InfluxDB's health
checks and the offline API docs, on a real server."""

from __future__ import annotations

import httpx

from tsq.client import HttpClient
from tsq.service import Service


def test_both_clients_answer_a_write_alike(api: httpx.Client, service: Service) -> None:
    body = "srv_write,host=a value=1 1\nsrv_write,host=b value=2 1"
    over_http = HttpClient(str(api.base_url))
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
