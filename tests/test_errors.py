"""Every TsqError the server sends comes back through HttpClient as the same error."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tsq import errors
from tsq.client import HttpClient
from tsq.errors import Problem, TsqError


def _subclasses(cls: type[TsqError]) -> list[type[TsqError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


PROBLEMS = [Problem("loops.yml", 3, 14, "functions.x.handler", "gone.js does not exist"),
            Problem("loops.yml", None, None, "", "no functions")]
EXAMPLES: dict[type[TsqError], TsqError] = {
    errors.TsqError: errors.TsqError("something", details={"k": 1}),
    errors.ConfigError: errors.ConfigError("TSQ_WORKERS='x' is not a whole number"),
    errors.InvalidLoopFile: errors.InvalidLoopFile(PROBLEMS),
    errors.CompileError: errors.CompileError("Unexpected token", file="a.js", line=2, col=5),
    errors.ScheduleError: errors.ScheduleError("bad schedule 'R/x'"),
    errors.TslError: errors.TslError("Cannot parsed query: missing closing parenthesis",
                                     line=1, char=8, caret='select(\n       ^'),
    errors.WarpScriptError: errors.WarpScriptError("unknown function 'DUPP'", line=2, col=5,
                                                   kind="syntax", word="DUPP"),
    errors.NotFound: errors.NotFound("no loop named 'nope'"),
    errors.Conflict: errors.Conflict("in two projects", details={"projects": ["a", "b"]}),
    errors.Unauthorized: errors.Unauthorized("the token is not valid: it is unknown or was "
                                             "revoked"),
    errors.Forbidden: errors.Forbidden("the token 'ci' may not do this: it needs the 'deploy' "
                                       "role (it has read)", details={"needs": "deploy"}),
    errors.BadRequest: errors.BadRequest("not JSON"),
    errors.PartialWrite: errors.PartialWrite("line 2: bad", details={
        "written": 1, "errors": [{"line": 2, "message": "bad"}]}),
    errors.PayloadTooLarge: errors.PayloadTooLarge("the request body is larger than 16 MiB"),
    errors.QueryTooLarge: errors.QueryTooLarge(
        "the answer would hold 2000 points, more than max_query_points (1000)",
        details={"limit": "max_query_points", "max_points": 1000, "points": 2000}),
    errors.QueryTimeout: errors.QueryTimeout("the query ran past query_timeout_s (30 s)",
                                             details={"limit": "query_timeout_s"}),
    errors.TooManyRequests: errors.TooManyRequests(
        "1000 runs are queued, the limit (max_queued_runs)", retry_after_s=3,
        details={"limit": "max_queued_runs", "max": 1000}),
    errors.ServerUnavailable: errors.ServerUnavailable("no server"),
    errors.OutboundRefused: errors.OutboundRefused(
        "http://10.0.0.7/ is refused: 10.0.0.7 is a private address",
        details={"url": "http://10.0.0.7/", "address": "10.0.0.7"}),
    errors.WorkerError: errors.WorkerError("the worker did not start"),
    errors.HostError: errors.HostError("LoopNotFound", "Loop.run('nope'): no loop named 'nope'"),
    **{kind: kind(f'influxdb connector "main" at http://127.0.0.1:8086: {kind.__name__}')
       for kind in (errors.ConnectorError, errors.ConnectorUnavailable, errors.ConnectorAuthError,
                    errors.ConnectorQueryError, errors.ConnectorBadAnswer,
                    errors.ConnectorUnsupported)},
}
FIELDS = ("problems", "reason", "file", "line", "col", "char", "caret", "kind", "retry_after_s")


def test_every_error_class_has_an_example() -> None:
    assert set(EXAMPLES) == {TsqError, *_subclasses(TsqError)}


def _over_http(sent: TsqError) -> TsqError:
    """What HttpClient raises when the server answers with `sent`, as the API sends it."""
    def answer(_request: httpx.Request) -> httpx.Response:
        body = orjson.dumps({"error": sent.to_json()})
        return httpx.Response(sent.http_status, content=body,
                              headers={"Content-Type": "application/json"})

    client = HttpClient("http://tsq.invalid")
    client.http = httpx.Client(base_url="http://tsq.invalid",
                               transport=httpx.MockTransport(answer))
    with pytest.raises(TsqError) as caught:
        client.get_run("r1")
    client.close()
    return caught.value


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda cls: cls.__name__)
def test_errors_round_trip_over_http(cls: type[TsqError]) -> None:
    sent = EXAMPLES[cls]
    got = _over_http(sent)
    assert type(got) is cls
    assert got.message == sent.message and got.details == sent.details
    assert got.http_status == sent.http_status
    for name in FIELDS:
        assert getattr(got, name, None) == getattr(sent, name, None), name


def test_tsl_error_keeps_its_caret() -> None:
    got = _over_http(EXAMPLES[errors.TslError])
    assert isinstance(got, errors.TslError)
    assert got.with_place == ("Cannot parsed query: missing closing parenthesis\n"
                              "select(\n       ^")


@pytest.mark.parametrize("details", [{}, {"line": 1}], ids=["none", "partial"])
def test_details_that_do_not_fit_give_a_plain_error(details: dict[str, Any]) -> None:
    got = errors.TslError.from_json("bad query", details)
    assert type(got) is TsqError and got.message == "bad query"


def test_an_error_tsq_has_no_class_for_keeps_its_status() -> None:
    run_failed = TsqError("no cell given", details={"run": {"status": "failed"}})
    run_failed.__class__ = type("RunFailed", (TsqError,), {"http_status": 500})
    got = _over_http(run_failed)
    assert type(got) is TsqError and got.message == "no cell given"
    assert got.http_status == 500 and got.details == {"run": {"status": "failed"}}
