"""The outbound policy (tsq/outbound.py): what a loop may make the server call, checked at deploy
and again at every request, for targets, webhooks and connectors alike."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.scheduling_helpers import ScriptedPool, http_recorder, serving_http, wait_until
from tsq import outbound
from tsq.config import Settings
from tsq.connectors.http import HttpServer
from tsq.errors import ConfigError, InvalidLoopFile, OutboundRefused
from tsq.notify import Notifier
from tsq.outbound import OutboundPolicy
from tsq.service import Service
from tsq.targets import MAX_BODY_KEPT

REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture(autouse=True)
def policy_restored() -> Iterator[None]:
    """The policy is the process's: each test leaves it as it found it."""
    before = outbound.current()
    yield
    outbound.configure(before)


def make(tmp_path: Path, host: str = "127.0.0.1", allow: str = "") -> Service:
    settings = dataclasses.replace(Settings.load(tmp_path / "data"), host=host,
                                   outbound_allow=allow)
    return Service(settings, workers=ScriptedPool())


@contextmanager
def names(table: dict[str, str]) -> Iterator[dict[str, str]]:
    """Host names resolving as `table` says (the test changes it to move a name), others as
    the system resolves them."""
    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in table:
            family = socket.AF_INET6 if ":" in table[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (table[host], port))]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", resolve)
        yield table


def problems(deploying: Callable[[], object]) -> list[str]:
    with pytest.raises(InvalidLoopFile) as refused:
        deploying()
    return [str(problem) for problem in refused.value.problems]


def test_the_metadata_service_is_refused_at_deploy_with_the_place_and_the_setting(
        tmp_path: Path) -> None:
    service = make(tmp_path)
    text = "functions:\n  ping:\n    target: http://169.254.169.254/latest/meta-data/\n"
    try:
        [problem] = problems(lambda: service.deploy(text, "loops.yml", {}.get))
        assert service.list_loops() == {"loops": []}
    finally:
        service.close()
    assert problem == (
        "loops.yml:3:13: functions.ping.target: http://169.254.169.254/latest/meta-data/ is "
        "refused: 169.254.169.254 is a link-local address (where cloud metadata services "
        "answer); tsq calls such addresses only when they are listed in outbound_allow "
        "(tsq.toml), --outbound-allow or TSQ_OUTBOUND_ALLOW (CIDRs, host or host:port, "
        "comma-separated)")


def test_loopback_is_refused_when_others_reach_the_server_unless_it_is_listed(
        tmp_path: Path) -> None:
    with http_recorder() as receiver:
        port = receiver.server_address[1]
        text = (f"connectors:\n  main: {{type: prometheus, url: 'http://localhost:{port}'}}\n"
                f"functions:\n  ping:\n    target: {receiver.url}/task\n"
                f"    notify: {{webhook: '{receiver.url}/hook'}}\n")
        exposed = make(tmp_path, host="0.0.0.0")
        try:
            found = problems(lambda: exposed.deploy(text, "loops.yml", {}.get))
        finally:
            exposed.close()
        assert [problem.split(" is refused: ")[0] for problem in found] == [
            f"loops.yml:2:33: connectors.main.url: http://localhost:{port}",
            f"loops.yml:5:13: functions.ping.target: {receiver.url}/task",
            f"loops.yml:6:23: functions.ping.notify.webhook: {receiver.url}/hook"]
        assert all("loopback address, and this server listens on 0.0.0.0" in problem
                   for problem in found)

        listed = make(tmp_path, host="0.0.0.0", allow=f"127.0.0.1:{port}")
        try:
            listed.deploy(text, "loops.yml", {}.get)
            ran = listed.run("ping")
        finally:
            listed.close()
    assert ran.status == "success" and [item["path"].split("?")[0]
                                        for item in receiver.received] == ["/task"]


def test_a_name_is_checked_again_at_every_call(tmp_path: Path) -> None:
    with http_recorder() as receiver, names({"hooks.example": "93.184.216.34"}) as table:
        port = receiver.server_address[1]
        service = make(tmp_path, host="0.0.0.0")
        try:
            service.deploy(f"functions:\n  ping:\n    target: http://hooks.example:{port}/t\n",
                           "loops.yml", {}.get)
            table["hooks.example"] = "127.0.0.1"  # DNS rebinding, after the deploy
            ran = service.run("ping")
        finally:
            service.close()
    assert ran.status == "failed" and ran.error is not None
    assert ran.error.type == "OutboundRefused"
    assert ran.error.message.startswith(f"POST not sent: http://hooks.example:{port}/t?time=")
    assert ("is refused: hooks.example resolves to 127.0.0.1, which is a loopback address, "
            "and this server listens on 0.0.0.0") in ran.error.message
    assert receiver.received == []


def test_a_name_resolving_to_a_private_address_is_refused(tmp_path: Path) -> None:
    service = make(tmp_path)
    try:
        with names({"intranet.example": "10.0.0.7"}):
            [problem] = problems(lambda: service.deploy(
                "functions:\n  ping:\n    target: http://intranet.example/x\n", "loops.yml",
                {}.get))
    finally:
        service.close()
    assert ("http://intranet.example/x is refused: intranet.example resolves to 10.0.0.7, "
            "which is a private address") in problem


class Answering(BaseHTTPRequestHandler):
    """Answers every POST with the server's `body`, and notes the Host header it was sent."""

    def do_POST(self) -> None:
        server: Any = self.server
        server.hosts.append(self.headers["Host"])
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(server.body)))
        self.end_headers()
        self.wfile.write(server.body)

    def log_message(self, *_args: Any) -> None:
        pass


@contextmanager
def answering(body: bytes) -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    server.body, server.hosts = body, []
    with serving_http(server):
        yield server


def test_a_request_goes_to_the_address_checked_and_keeps_a_small_part_of_the_answer(
        tmp_path: Path) -> None:
    """`pinned.example` resolves (here) only for the check: the request reaching the server
    shows it connected to the address checked, with the name in its Host header."""
    with answering(b"x" * 10_000) as server, names({"pinned.example": "127.0.0.1"}):
        port = server.server_address[1]
        service = make(tmp_path)
        try:
            service.deploy(f"functions:\n  ping:\n    target: http://pinned.example:{port}/\n",
                           "loops.yml", {}.get)
            ran = service.run("ping")
        finally:
            service.close()
    assert server.hosts == [f"pinned.example:{port}"]
    assert ran.status == "success"
    assert ran.result == {"status": 200, "body": "x" * MAX_BODY_KEPT, "truncated": True}


def test_webhooks_and_connectors_are_checked_when_they_are_called() -> None:
    outbound.configure(OutboundPolicy.of("0.0.0.0", ""))
    notifier = Notifier(attempts=2, backoff_s=0.01)
    with http_recorder() as receiver:
        try:
            notifier.send(f"{receiver.url}/hook", {"id": "r1", "status": "failed",
                                                   "project": "p", "loop": "l", "event": "e"})
            wait_until(lambda: notifier.failed == 1)
        finally:
            notifier.close()
        server = HttpServer(receiver.url, 'prometheus connector "main"')
        with pytest.raises(OutboundRefused) as refused:
            server.request("GET", "/api/v1/query", what="up")
        server.close()
        assert receiver.received == []
    assert refused.value.message.startswith(f"{receiver.url}/api/v1/query is refused: "
                                            f"127.0.0.1 is a loopback address")


@pytest.mark.parametrize(("listen", "allow", "url", "refused"), [
    ("127.0.0.1", "", "http://127.0.0.1:8086/", None),
    ("::1", "", "http://[::1]:8086/", None),
    ("0.0.0.0", "", "http://[::ffff:127.0.0.1]/", "a loopback address"),
    ("127.0.0.1", "", "http://[fe80::1]/", "a link-local address"),
    ("127.0.0.1", "", "http://172.16.3.4/", "a private address"),
    ("127.0.0.1", "", "http://[fd00::5]/", "a private address"),
    ("127.0.0.1", "", "http://0.0.0.0:80/", "the unspecified address"),
    ("127.0.0.1", "", "http://224.0.0.1/", "a multicast address"),
    ("127.0.0.1", "", "http://100.64.0.1/", "not a public address"),
    ("127.0.0.1", "", "http://8.8.8.8/", None),
    ("0.0.0.0", "10.0.0.0/8, [::1]:9090", "http://10.9.8.7/", None),
    ("0.0.0.0", "10.0.0.0/8, [::1]:9090", "http://[::1]:9090/", None),
    ("0.0.0.0", "10.0.0.0/8, [::1]:9090", "http://[::1]:9091/", "a loopback address"),
    ("0.0.0.0", "*", "http://169.254.169.254/", None),
    ("127.0.0.1", "", "http://h:99999/", "not a URL tsq can call: Port out of range"),
    ("127.0.0.1", "", "http://a..b/", "not a URL tsq can call"),
])
def test_which_addresses_the_policy_refuses(listen: str, allow: str, url: str,
                                            refused: str | None) -> None:
    why = OutboundPolicy.of(listen, allow).refusal(url)
    assert why is None if refused is None else why is not None and f" is {refused}" in why


def test_outbound_allow_comes_from_the_flag_the_environment_or_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tsq.toml").write_text('outbound_allow = "10.0.0.0/8"\n')
    assert Settings.load(tmp_path).outbound_allow == "10.0.0.0/8"
    monkeypatch.setenv("TSQ_OUTBOUND_ALLOW", "influx.internal:8086")
    assert Settings.load(tmp_path).outbound_allow == "influx.internal:8086"
    flagged = Settings.load(tmp_path, flags={"outbound_allow": "127.0.0.1"})
    assert flagged.outbound_allow == "127.0.0.1"
    with pytest.raises(ConfigError) as bad:
        OutboundPolicy.of("127.0.0.1", "10.0.0.0/33")
    assert bad.value.message == ("outbound_allow: '10.0.0.0/33' is not a network; expected a "
                                 "CIDR like 10.0.0.0/8 or fd00::/8")
