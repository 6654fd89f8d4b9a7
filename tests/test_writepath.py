"""The write endpoints as a server answers them (`create_server_app`, beside FastAPI's layers)
and as the FastAPI app does: the same answer to every request, good and bad."""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tsq import lineprotocol, linewrites
from tsq.api import WRITTEN_HEADER, create_app, create_server_app
from tsq.config import Settings
from tsq.selector import Selector
from tsq.service import Service

HEADERS_COMPARED = ("content-type", "retry-after", "www-authenticate", WRITTEN_HEADER.lower())
BIG = b"x" * ((1 << 20) + 1)  # over the 1 MiB limit of the service below


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    from tsq.kernels import sortedmerge  # numba: loaded by these tests only

    sortedmerge.warm()  # as a server does at its start: a write alone may then stay on the loop
    svc = Service(Settings.load(tmp_path_factory.mktemp("data"), flags={"max_body_mb": 1}))
    yield svc
    svc.close()


def _client(app: Any, service: Service, **options: Any) -> httpx.AsyncClient:
    """A client of `app` in this process, with the service's admin token."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, **options),
                             base_url="http://127.0.0.1",
                             headers={"Authorization": f"Bearer {service.admin_token}"})


def _answers(app: Any, service: Service, *requests: dict[str, Any]
             ) -> list[tuple[int, bytes, dict[str, str]]]:
    """Each request's status, body and the headers compared, as `app` answers it."""
    async def asked() -> list[tuple[int, bytes, dict[str, str]]]:
        async with _client(app, service, raise_app_exceptions=False) as client:
            answers = [await client.request(request.get("method", "POST"), **{
                key: value for key, value in request.items() if key != "method"})
                for request in requests]
        return [(answer.status_code, answer.content,
                 {key: answer.headers[key] for key in HEADERS_COMPARED if key in answer.headers})
                for answer in answers]

    return asyncio.run(asked())


REQUESTS: dict[str, dict[str, Any]] = {
    "influx v1": {"url": "/write", "params": {"precision": "s", "db": "x"},
                  "content": b"wp,host=a value=1 1\nwp,host=b value=2 1"},
    "influx v2": {"url": "/api/v2/write", "params": {"precision": "ms", "bucket": "b"},
                  "content": b"wp value=3 1000"},
    "tsq": {"url": "/v1/write", "params": {"precision": "s"}, "content": b"wp value=4 2"},
    "gzip": {"url": "/write", "content": gzip.compress(b"wp value=5 3000000000"),
             "headers": {"Content-Encoding": "gzip"}},
    "v2 precision": {"url": "/api/v2/write", "params": {"precision": "h"},
                     "content": b"wp value=1 1"},
    "bad line": {"url": "/v1/write", "content": b"wp value=1 1\nwp value=oops 2\n"},
    "bad precision": {"url": "/write", "params": {"precision": "fortnight"},
                      "content": b"wp value=1 1"},
    "not utf-8": {"url": "/write", "content": b"wp,host=\xff value=1 1"},
    "no token": {"url": "/write", "content": b"wp value=1 1",
                 "headers": {"Authorization": ""}},
    "wrong token": {"url": "/write", "content": b"wp value=1 1",
                    "headers": {"Authorization": "Bearer nope"}},
    "foreign host": {"url": "/write", "content": b"wp value=1 1",
                     "headers": {"Host": "evil.example"}},
    "foreign origin": {"url": "/write", "content": b"wp value=1 1",
                       "headers": {"Origin": "http://evil.example"}},
    "too large": {"url": "/write", "content": BIG},
    "too large unzipped": {"url": "/write", "content": gzip.compress(BIG + BIG),
                           "headers": {"Content-Encoding": "gzip"}},
    "not gzip": {"url": "/write", "content": b"plain", "headers": {"Content-Encoding": "gzip"}},
}
EXPECTED_STATUS = {"influx v1": 204, "influx v2": 204, "tsq": 200, "gzip": 204,
                   "v2 precision": 400, "bad line": 400, "bad precision": 400, "not utf-8": 400,
                   "no token": 401, "wrong token": 401, "foreign host": 400,
                   "foreign origin": 403, "too large": 413, "too large unzipped": 413,
                   "not gzip": 400}


@pytest.mark.parametrize("stored", ["here", "by the threads"])
@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_a_write_is_answered_alike_with_and_without_the_framework(
        service: Service, case: str, stored: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if stored != "here":  # every write to the threads, as when others are on their way
        monkeypatch.setattr(linewrites, "HERE_MAX_CHARS", -1)
    [through_app] = _answers(create_app(service), service, REQUESTS[case])
    [through_server] = _answers(create_server_app(service), service, REQUESTS[case])
    assert through_server == through_app
    assert through_server[0] == EXPECTED_STATUS[case], through_server


def test_the_writes_stored_and_counted(service: Service) -> None:
    influx, tsq = _answers(create_server_app(service), service, {
        "url": "/write", "params": {"precision": "s"},
        "content": b"wp_count,host=a value=1 1\nwp_count,host=b value=2 1"}, {
        "url": "/v1/write", "params": {"precision": "s"}, "content": b"wp_count value=3 1"})
    assert influx == (204, b"", {WRITTEN_HEADER.lower(): "2"})
    assert (tsq[0], tsq[1]) == (200, b'{"written":1}')
    found = service.points().select(Selector("wp_count"))
    assert sorted(found.values.tolist()) == [1.0, 2.0, 3.0]


def test_an_unexpected_failure_is_answered_alike(service: Service,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(service.line_parsers, "parse", broken)
    answers = [_answers(make(service), service, REQUESTS["influx v1"])[0]
               for make in (create_app, create_server_app)]
    assert answers[0] == answers[1]
    assert answers[1][0] == 500 and b"disk on fire" in answers[1][1]


def test_a_server_answers_writes_without_the_framework_and_the_rest_through_it(
        service: Service, caplog: pytest.LogCaptureFixture) -> None:
    server_app = create_server_app(service)
    asked: list[str] = []

    async def framework(scope: Any, receive: Any, send: Any) -> None:
        asked.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    server_app.app = framework  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, logger="tsq.api"):
        answers = _answers(server_app, service, REQUESTS["influx v1"],
                           {"method": "GET", "url": "/write"},  # not a write: the app's
                           {"url": "/v1/query", "json": {}})
    assert [status for status, _, _ in answers] == [204, 418, 418]
    assert asked == ["GET /write", "POST /v1/query"]
    assert any(record.getMessage().startswith("POST /write 204")
               for record in caplog.records)  # the request log sees the writes too


def test_writes_arriving_while_one_is_stored_are_stored_together_after_it(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four writes sent at once, the first store write held: all parsed on the service's parsing
    thread, never two at once, those that waited as one batch; they are stored as one write of
    the store (fewer writes than requests), every point is there, and each request is answered
    for its own."""
    real_parse, real_write = service.line_parsers.parse, service.store.write_prepared
    real_joined = service.line_parsers.parse_joined
    threads: list[str] = []  # each write's parse
    stored: list[int] = []
    inside, most = [0], [0]
    lock = threading.Lock()

    def parsing(real: Any, writes: int) -> Any:
        def parse(*args: Any) -> Any:
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                threads.extend([threading.current_thread().name] * writes(*args))
            try:
                return real(*args)
            finally:
                with lock:
                    inside[0] -= 1

        return parse

    def write(prepared: Any) -> int:
        if prepared.series.points:
            stored.append(prepared.series.points)
            if len(stored) == 1:
                time.sleep(0.2)  # the others arrive meanwhile
        return real_write(prepared)

    monkeypatch.setattr(lineprotocol, "LOADED_SCAN_CHARS", 0)  # these few lines joined too
    monkeypatch.setattr(lineprotocol, "SCAN_CHARS", 0)
    # none stored on the event loop's thread: in memory, each request would run whole before
    # the next came (below for that)
    monkeypatch.setattr(linewrites, "HERE_MAX_CHARS", -1)
    monkeypatch.setattr(service.line_parsers, "parse", parsing(real_parse, lambda *_: 1))
    monkeypatch.setattr(service.line_parsers, "parse_joined",
                        parsing(real_joined, lambda bodies, _: len(bodies)))
    monkeypatch.setattr(service.store, "write_prepared", write)
    app = create_server_app(service)

    async def together() -> list[httpx.Response]:
        async with _client(app, service) as client:
            return await asyncio.gather(*(
                client.post("/v1/write", params={"precision": "s"}, content="\n".join(
                    f"together,client=c{n} value={n} {n + 1 + k}" for k in range(n + 1)
                ).encode())
                for n in range(4)))

    answers = asyncio.run(together())
    assert [(a.status_code, a.json()) for a in answers] == [
        (200, {"written": n + 1}) for n in range(4)]
    assert most[0] == 1 and len(threads) == 4
    assert all(name.startswith("tsq-parse") for name in threads), threads
    assert len(stored) < 4 and sum(stored) == 1 + 2 + 3 + 4, stored
    found = service.points().select(Selector("together"))
    assert sorted((s.labels["client"], len(s.values)) for s in found) == [
        (f"c{n}", n + 1) for n in range(4)]


def _stored_on(service: Service, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The threads the store writes of `service` are made on, from now on."""
    threads: list[str] = []
    real = service.store.write_prepared

    def write(prepared: Any) -> int:
        if prepared.series.points:
            threads.append(threading.current_thread().name)
        return real(prepared)

    monkeypatch.setattr(service.store, "write_prepared", write)
    return threads


def test_a_write_alone_is_stored_on_the_event_loops_thread(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    threads = _stored_on(service, monkeypatch)
    answers = _answers(create_server_app(service), service, {
        "url": "/v1/write", "params": {"precision": "s"},
        "content": b"alone,n=1 value=1 1\nalone,n=2 value=2 2"}, {
        "url": "/v1/write", "content": b"alone,n=1 value=oops 3"})
    assert [answer[:2] for answer in answers] == [(200, b'{"written":2}'), (400, answers[1][1])]
    assert b"oops" in answers[1][1]  # its error, answered as from the threads
    assert threads == [threading.current_thread().name]  # asyncio.run's loop: this thread
    assert service.points().select(Selector("alone")).points == 2


def test_a_write_that_comes_while_another_is_on_its_way_goes_to_the_threads(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first write's body comes slowly: the second, admitted meanwhile, is not alone and
    goes to the write thread; the first, alone again once its body is in (the second answered
    by then), is stored on the event loop's."""
    threads = _stored_on(service, monkeypatch)
    app = create_server_app(service)

    async def both() -> list[httpx.Response]:
        reading, answered = asyncio.Event(), asyncio.Event()

        async def slowly() -> Any:
            yield b"onway,n=1 value=1 1\n"
            reading.set()  # the first is admitted, reading its body
            await answered.wait()
            yield b"onway,n=1 value=2 2\n"

        async with _client(app, service) as client:
            async def second() -> httpx.Response:
                await reading.wait()
                try:
                    return await client.post("/v1/write", params={"precision": "s"},
                                             content=b"onway,n=2 value=3 3")
                finally:
                    answered.set()
            return list(await asyncio.wait_for(asyncio.gather(
                client.post("/v1/write", params={"precision": "s"}, content=slowly()),
                second()), 30))

    answers = asyncio.run(both())
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"written": 2}),
                                                             (200, {"written": 1})]
    assert threads == ["tsq-write", threading.current_thread().name]
    assert service.points().select(Selector("onway")).points == 3


def test_a_write_alone_goes_to_the_threads_while_the_store_is_held(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that would wait for the store (another holds its write lock: a fold, a
    delete, a read writing the past) is parsed on the event loop's thread and stored by the
    write thread: the loop goes on meanwhile."""
    threads = _stored_on(service, monkeypatch)
    held, taken = threading.Event(), threading.Event()
    released: list[bool] = []

    def holder() -> None:
        with service.store._write_lock:
            taken.set()
            released.append(held.wait(10))  # False: the loop did not go on

    app = create_server_app(service)

    async def write() -> httpx.Response:
        async with _client(app, service) as client:
            asyncio.get_running_loop().call_later(0.2, held.set)  # the loop runs meanwhile
            return await client.post("/v1/write", params={"precision": "s"},
                                     content=b"heldstore value=1 1")

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert taken.wait(10)
        answer = asyncio.run(write())
    finally:
        held.set()
        thread.join(10)
    assert released == [True]
    assert (answer.status_code, answer.json()) == (200, {"written": 1})
    assert threads == ["tsq-write"]


def test_a_write_alone_with_strings_is_stored_by_the_write_thread(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """Strings go to the table, each write of them a DuckDB transaction: not on the loop."""
    threads = _stored_on(service, monkeypatch)
    [answer] = _answers(create_server_app(service), service, {
        "url": "/v1/write", "params": {"precision": "s"},
        "content": b'strung status="up" 1\nstrung value=2 1'})
    assert answer[:2] == (200, b'{"written":2}')
    assert threads == ["tsq-write", "tsq-write"]  # numbers and strings, one group
