"""The HTTP API (`/v1`, JSON through orjson); see docs/ and the OpenAPI page at /docs.

Every error is `{"error": {"type", "message", "details"}}` with the status its class carries
(tsq.errors); nothing answers with a stack trace. A query or path parameter that does not parse,
or lies outside what the stores hold (epoch ms within int64 nanoseconds, offsets within int64), is
a 400 naming it; a JSON body of the wrong shape is a 422. A synchronous run answers 200 with the run
record when the handler resolved, 500 when it failed and 504 when it timed out; the record is
in `details.run` of the error. Work past its bound (docs/configuration.md, "Bounded work") is a
429 with `Retry-After` (runs by hand, writes), a 413 (a query's answer) or a 504 (a query's
deadline), each naming its setting in `details.limit`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Future
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from tsq import __version__, access, apidoc, gtsformat, metrics
from tsq.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    QueryTimeout,
    TooManyRequests,
    TsqError,
    Unauthorized,
    WarpScriptError,
)
from tsq.forgery import ForgeryGuard, allowed_host_names
from tsq.isotime import parse_ns, parse_time, time_field
from tsq.ledger import LedgerRange
from tsq.outcomes import RunStatus
from tsq.querybudget import QueryBudget
from tsq.run import Run, RunFilter
from tsq.series import FIRST_NS, LAST_NS, NS_PER_MS
from tsq.service import SHARED, Service, run_window
from tsq.tokens import ANYONE
from tsq.ui import install as install_ui

__all__ = ["WRITTEN_HEADER", "create_app", "create_server_app"]

WRITTEN_HEADER = "X-Tsq-Written"  # how many points a write stored (its 204 has no body)
V2_PRECISIONS = ("ns", "us", "ms", "s")

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Bounds on every integer a query string carries: a number the stores cannot hold (beyond
# int64, where SQLite and DuckDB overflow) is a 400 naming the parameter, never a 500.
FIRST_MS, LAST_MS = -(-FIRST_NS // NS_PER_MS), LAST_NS // NS_PER_MS
FIRST_TICK, LAST_TICK = -(-FIRST_NS // gtsformat.NS_PER_TICK), LAST_NS // gtsformat.NS_PER_TICK
MAX_OFFSET = 2**63 - 1


def _epoch_ms(description: str) -> Any:
    return Query(ge=FIRST_MS, le=LAST_MS, description=f"{description} (epoch ms, "
                                                      f"{FIRST_MS} to {LAST_MS})")


class OrjsonResponse(JSONResponse):
    """JSON through orjson (FastAPI's own OrjsonResponse is deprecated in favour of models)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)




class ErrorBody(BaseModel):
    type: str = Field(description="the error's class in tsq.errors, e.g. TooManyRequests")
    message: str = Field(description="what went wrong, the limit it names and what would be "
                                     "right")
    details: dict[str, Any] = Field(description="the limit (`limit`: its setting) and its "
                                                "figures; for a 429, `retry_after_s`")


class ErrorAnswer(BaseModel):
    error: ErrorBody


BUSY: dict[int | str, dict[str, Any]] = {429: {
    "model": ErrorAnswer,
    "description": "Too much of this work is waiting already (`details.limit` names the "
                   "setting: max_queued_runs, max_project_runs, max_queued_queries, "
                   "max_concurrent_writes); try again after the "
                   "`Retry-After` header's seconds",
    "headers": {"Retry-After": {"description": "seconds to wait before trying again",
                                "schema": {"type": "integer"}}}}}
QUERY_LIMITS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorAnswer,
          "description": "The answer would hold more points than max_query_points "
                         "(`details.points`, `details.max_points`); narrow the query"},
    504: {"model": ErrorAnswer,
          "description": "The query ran past query_timeout_s and was stopped"}}


class DeployRequest(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{
        "file": "loops.yml", "content": "functions:\n  hi:\n    handler: hi.js\n",
        "files": {"hi.js": "export default async (event) => ({hi: event.params.who})"}}]}}

    file: str = Field("loops.yml", description="the loop file's name, used in error positions")
    content: str = Field(description="the loop file's YAML text")
    files: dict[str, str] = Field(default_factory=dict,
                                  description="handler files by path relative to the loop file")


class RunRequest(BaseModel):
    params: dict[str, Any] = Field(default_factory=dict)
    event: str | None = Field(None, description="take the params of this event of the loop")
    # `at` and `window` are checked by tsq.service: a wrong one is a 400 naming the field.
    at: Any = Field(None, description="run scheduled time AT (ISO-8601 with offset) with its "
                                      "window; not with `window`")
    window: Any = Field(None, description='the window to run, {"start": ISO-8601 time, "end": '
                                          'ISO-8601 time}; default: the latest complete period '
                                          'of the loop\'s schedule')


class BackfillRequest(BaseModel):
    loop: str
    # The range bounds the scheduled times t; each run covers its window [t - period, t).
    start: str = Field(alias="from", description="run the scheduled times at or after this "
                                                 "time (inclusive; ISO-8601 with offset)")
    end: str = Field(alias="to", description="… and before this time (exclusive; ISO-8601 "
                                             "with offset)")
    event: str | None = Field(None, description="only this scheduled event (default: all)")
    project: str | None = None


class QueryRequest(BaseModel):
    tsl: str | None = Field(None, description="a TSL script; its statements' series are "
                                              "returned in order")
    warpscript: str | None = Field(None, description="a WarpScript script (instead of tsl): "
                                                     "its GTS as series, and its stack")
    variables: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="TSL variables defined before the script")
    explain: bool = Field(False, description="also answer `plan`: what the store or connector "
                                             "was asked for, and what tsq computed")


class RollbackRequest(BaseModel):
    version: str | None = Field(None, description="version number or id; default: the previous")


def create_server_app(service: Service) -> ASGIApp:
    """What `tsq serve` serves: the app, its write endpoints answered by `_WritePath`."""
    return _WritePath(create_app(service), service)


def create_app(service: Service) -> FastAPI:
    # FastAPI's /docs and /redoc load Swagger UI and ReDoc from a CDN, so they are blank
    # offline; FastAPIOffline serves the same pages with the assets of the installed package.
    app = FastAPIOffline(title="tsq", version=__version__, default_response_class=OrjsonResponse,
                         static_url="/docs-assets",
                         dependencies=[Depends(_authorizer(service))])
    for layer, options in _layers(service):
        app.add_middleware(layer, **options)
    _install_error_handlers(app, service)
    _install_routes(app, service)
    apidoc.document(app)  # the error answers and the tokens, in the OpenAPI description
    metrics.install(app, service)
    install_ui(app, service)  # the web UI at / (tsq/ui, docs/ui.md)
    return app


class _WritePath:
    """The line-protocol write endpoints answered beside FastAPI's layers (its routing,
    dependencies and exception middlewares): a 5,000-line write took 1.2 ms of the event
    loop's time with them, 0.9 without (measured per thread), and with four clients the event
    loop shares one GIL with the writes. The same checks in the same order as the app makes
    them, with the same code: tsq's middleware (`_layers`: the request log, the host and origin
    check, the body limit), the token, then the answer of the path (`WRITES`), its errors
    answered as the app's handlers answer them. Every other request goes to the app."""

    def __init__(self, app: FastAPI, service: Service) -> None:
        self.app = app
        self.service = service
        self.authorize = _authorizer(service)
        self.writes: ASGIApp = self._write
        for layer, options in _layers(service):
            self.writes = layer(self.writes, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in WRITES:
            await self.writes(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _write(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response: Response
        try:
            await self.authorize(request)
            response = await WRITES[scope["path"]](
                self.service, request, request.query_params.get("precision", "ns"))
        except TsqError as exc:
            response = _tsq_error(self.service, request, exc)
        except Exception as exc:  # answered as the app's last handler does
            response = _unexpected(exc)
        await response(scope, receive, send)


def _layers(service: Service) -> list[tuple[Callable[..., ASGIApp], dict[str, Any]]]:
    """tsq's own middleware around every request, innermost first: the request log last, so
    outermost, sees the 413s too."""
    hosts = allowed_host_names(service.settings.host, service.settings.allowed_hosts)
    return [(_BodyLimit, {"limit": service.settings.max_body_bytes}),
            (ForgeryGuard, {"hosts": hosts}), (_RequestLog, {})]


def _authorizer(service: Service) -> Callable[[Request], Awaitable[None]]:
    """The dependency every route has: the request's principal (`_who`), allowed what its route
    needs (tsq.access), or Unauthorized (401) or Forbidden (403). Before the body is read."""
    tokens_on = service.settings.auth == "tokens"

    async def authorize(request: Request) -> None:
        route = request.scope.get("route")
        # not request.url.path: building request.url is a tenth of a small request's time
        path = route.path if route is not None else request.scope["path"]
        need = access.need_of(request.method, path)
        if need is None or not tokens_on:
            request.state.principal = ANYONE if not tokens_on else None
            return
        given = access.credentials(request.headers, request.query_params, request.cookies,
                                   path)
        found = None if given is None else service.tokens.principal(given)
        request.state.principal = access.check(found, given, need)

    return authorize


def _own_run(request: Request, service: Service, run_id: str) -> str:
    """`run_id` if the request's token may see that run: one of its project's (an unknown run
    to a token of another project, as if it were not there)."""
    project = access.who(request).project
    if project is not None:  # a token for every project sees every run: no read to check
        service.get_run(run_id, project)
    return run_id


def _install_routes(app: FastAPI, service: Service) -> None:
    # The health checks are async and touch nothing else: they answer on the event loop at
    # once, however busy the thread pool, the workers and the database are.
    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    _install_influx_health(app)
    _install_warp10(app, service)
    _install_warp10_ingress(app, service)

    @app.post("/v1/loops", status_code=201)
    def deploy(http: Request, request: Annotated[DeployRequest, Body()]) -> Any:
        # A sync endpoint: deploy compiles handlers in V8, which must not see the event loop.
        return service.deploy(request.content, request.file, request.files.get,
                              project=access.who(http).project)

    @app.get("/v1/loops")
    def list_loops(http: Request, project: str | None = None) -> Any:
        return service.list_loops(access.who(http).project_of(project))

    @app.get("/v1/loops/{name}")
    def get_loop(http: Request, name: str, project: str | None = None) -> Any:
        return service.get_loop(name, access.who(http).project_of(project))

    @app.get("/v1/loops/{name}/ledger")
    def ledger(http: Request, name: str, project: str | None = None, event: str | None = None,
               start: Annotated[str | None, Query(
                   alias="from", description="scheduled times at or after this time "
                                             "(ISO-8601 with offset; default: the latest 60 "
                                             "since the schedule took effect)")
               ] = None,
               end: Annotated[str | None, Query(
                   alias="to", description="… and before this one (default: the next 5 too)")
               ] = None) -> Any:
        """Every scheduled time of the loop's events in [from, to), each with the status of
        its run (and the run's id), or why it has none: before, upcoming, due, missing."""
        return service.ledger(name, LedgerRange(
            parse_time(start, "from") if start else None,
            parse_time(end, "to") if end else None, event), access.who(http).project_of(project))

    @app.post("/v1/loops/{name}/rollback")
    def rollback(http: Request, name: str, project: str | None = None,
                 request: Annotated[RollbackRequest | None, Body()] = None) -> Any:
        return service.rollback(name, access.who(http).project_of(project),
                                request.version if request else None)

    @app.delete("/v1/loops/{name}")
    def delete_loop(http: Request, name: str, project: str | None = None) -> Any:
        return service.delete_loop(name, access.who(http).project_of(project))

    @app.post("/v1/loops/{name}/run", responses=BUSY)
    async def run_loop(http: Request, name: str, project: str | None = None,
                       is_async: Annotated[bool, Query(alias="async")] = False,
                       request: Annotated[RunRequest | None, Body()] = None) -> Any:
        """Run the loop now. Past max_queued_runs runs by hand waiting, or the project's
        max_project_runs in progress, 429 with Retry-After."""
        project = access.who(http).project_of(project)
        body = request or RunRequest(event=None, at=None, window=None)
        at = time_field(body.at, "at") if body.at is not None else None
        window = run_window(body.window)
        # admitted before it takes a thread or a row: a refusal costs nothing
        ticket = service.run_admission.enter()
        try:
            submitted = await run_in_threadpool(  # a waited-for run runs there if a worker is idle
                service.submit, name, body.params, project=project, event=body.event,
                trigger="http", at=at, window=window, inline=not is_async)
        except BaseException:
            ticket.release()
            raise
        submitted.done.add_done_callback(lambda _done: ticket.release())
        if is_async:
            return OrjsonResponse(submitted.record.to_json(), status_code=202)
        record = await asyncio.wrap_future(submitted.done)
        return _run_response(record)

    _install_run_routes(app, service)
    _install_point_routes(app, service)
    _install_token_routes(app, service)


class TokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="what the token is for")
    roles: list[str] = Field(description="read, write, run, deploy, admin")
    project: str | None = Field(None, description="the one project the token works in "
                                                  "(default: every project)")


def _install_token_routes(app: FastAPI, service: Service) -> None:
    """API tokens (tsq.tokens), for a token with the admin role on every project."""
    @app.get("/v1/tokens")
    def list_tokens() -> Any:
        return {"tokens": service.tokens.list()}

    @app.post("/v1/tokens", status_code=201)
    def create_token(request: Annotated[TokenRequest, Body()]) -> Any:
        """A new token; its secret is in this answer and nowhere else (tsq keeps a hash)."""
        record, secret = service.tokens.create(request.name, request.roles, request.project)
        return {**record, "token": secret}

    @app.delete("/v1/tokens/{token_id}")
    def revoke_token(token_id: str) -> Any:
        return service.tokens.revoke(token_id)


def _install_run_routes(app: FastAPI, service: Service) -> None:
    """Runs: their records, logs and artifacts, resume, cancel and the history kept."""
    @app.get("/v1/runs")
    def list_runs(http: Request, loop: str | None = None, status: RunStatus | None = None,
                  project: str | None = None,
                  since: Annotated[int | None, _epoch_ms("inclusive")] = None,
                  until: Annotated[int | None, _epoch_ms("exclusive")] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                  event: str | None = None, trigger: str | None = None,
                  pipeline: Annotated[str | None, Query(
                      description="only the steps of this pipeline (the id of its first run)")
                  ] = None,
                  changed_since: Annotated[int | None, _epoch_ms(
                      "only runs queued, started or finished since then (what `tsq runs "
                      "--follow` polls)")] = None) -> Any:
        return service.list_runs(RunFilter(access.who(http).project_of(project), loop,
                                           status.value if status else None, since, until,
                                           limit, event, trigger,
                                           pipeline=pipeline, changed_since_ms=changed_since))

    @app.get("/v1/history")
    def kept() -> Any:
        return service.kept()

    # {run_id} in every /v1/runs/{run_id}… path may be a unique prefix of the id; a prefix
    # several runs share answers 409, like a loop name several projects share.

    @app.get("/v1/runs/{run_id}")
    def get_run(http: Request, run_id: str) -> Any:
        return service.get_run(_own_run(http, service, run_id))

    @app.get("/v1/runs/{run_id}/logs")
    def run_logs(http: Request, run_id: str, after: Annotated[int, Query(
            ge=0, le=MAX_OFFSET,
            description="skip the first `after` lines (the `next` of an earlier answer)")
                 ] = 0) -> Any:
        return service.run_logs(_own_run(http, service, run_id), after)

    @app.get("/v1/runs/{run_id}/artifacts")
    def run_artifacts(http: Request, run_id: str) -> Any:
        return service.run_artifacts(_own_run(http, service, run_id))

    @app.get("/v1/runs/{run_id}/artifacts/{name}")
    def run_artifact(http: Request, run_id: str, name: str) -> Response:
        meta, data = service.run_artifact(_own_run(http, service, run_id), name)
        return Response(data, media_type=meta["contentType"],
                        headers=_artifact_headers(meta["name"]))

    @app.post("/v1/runs/{run_id}/resume")
    def resume(http: Request, run_id: str) -> Any:
        return service.resume(_own_run(http, service, run_id))

    @app.post("/v1/runs/{run_id}/cancel")
    def cancel(http: Request, run_id: str) -> Any:
        return service.cancel(_own_run(http, service, run_id))


async def _store_lines(service: Service, request: Request, precision: str) -> dict[str, Any]:
    # admitted before its body is read: a refused write costs neither memory nor a thread
    with service.write_admission.entered():
        body = await _body(request, request.headers.get("content-encoding", "").lower()
                           == "gzip", service.settings.max_body_bytes)
        try:
            text = body.decode()
        except UnicodeDecodeError as exc:
            raise BadRequest(f"the body is not UTF-8 line protocol: {exc}") from None
        project = access.who(request).project
        # alone, parsed (and mostly stored) on this thread: fewer hand-offs (tsq.linewrites)
        answer = service.stored_at_once(text, precision, project) or \
            service.line_writes.submit(text, precision, project)
        written = answer.result() if answer.done() else await asyncio.wrap_future(answer)
    return written


async def _write_influx(service: Service, request: Request, precision: str) -> Response:
    written = await _store_lines(service, request, precision)
    # 204 without a body, as InfluxDB answers (its clients expect none); the count rides in
    # a header of tsq's own, which InfluxDB clients ignore.
    return Response(status_code=204, headers={WRITTEN_HEADER: str(written["written"])})


async def _write_influx_v2(service: Service, request: Request, precision: str) -> Response:
    if precision not in V2_PRECISIONS:
        raise BadRequest(f"unknown precision {precision!r}; expected one of "
                         f"{', '.join(V2_PRECISIONS)}")
    return await _write_influx(service, request, precision)


async def _write_tsq(service: Service, request: Request, precision: str) -> Response:
    return OrjsonResponse(await _store_lines(service, request, precision))


# The line-protocol endpoints, each path's answer: served by FastAPI's routes (which describe
# them in the OpenAPI page) and, in a server, by _WritePath
WRITES: dict[str, Callable[[Service, Request, str], Awaitable[Response]]] = {
    "/write": _write_influx, "/api/v2/write": _write_influx_v2, "/v1/write": _write_tsq}


def _install_point_routes(app: FastAPI, service: Service) -> None:
    """Points in (the write endpoints) and out (queries), and backfills over them."""
    @app.post("/v1/write", responses=BUSY)
    async def write_tsq(request: Request, precision: str = "ns") -> Any:
        """Line protocol, answered as `tsq write` works locally: `{"written": points}`."""
        return await _write_tsq(service, request, precision)

    @app.post("/write", status_code=204, responses=BUSY)
    async def write_v1(request: Request, db: str | None = None, rp: str | None = None,
                       precision: str = "ns") -> Response:
        """InfluxDB 1.x write (`db` and `rp` are accepted; tsq has one embedded store)."""
        return await _write_influx(service, request, precision)

    @app.post("/api/v2/write", status_code=204, responses=BUSY)
    async def write_v2(request: Request, org: str | None = None, bucket: str | None = None,
                       precision: str = "ns") -> Response:
        """InfluxDB 2.x write (`org` and `bucket` are accepted; tsq has one embedded store)."""
        return await _write_influx_v2(service, request, precision)

    @app.post("/v1/backfill", status_code=202)
    def backfill(http: Request, request: Annotated[BackfillRequest, Body()]) -> Any:
        return service.backfill(request.loop, parse_time(request.start, "from"),
                                parse_time(request.end, "to"),
                                project=access.who(http).project_of(request.project),
                                event=request.event)

    @app.get("/v1/backfill/{job_id}")
    def backfill_status(http: Request, job_id: str) -> Any:
        status = service.backfill_status(job_id)
        if not access.who(http).owns(status["project"]):
            raise NotFound(f"no backfill with id {job_id!r}")
        return status

    @app.post("/v1/query", responses={**QUERY_LIMITS, **BUSY})
    async def query(http: Request, request: Annotated[QueryRequest, Body()],
                    explain: bool = False) -> Any:
        """A TSL or WarpScript query, run on a query thread within query_timeout_s (504 past
        it) and max_query_points (413 for a larger answer); stopped if the client goes away."""
        if (request.tsl is None) == (request.warpscript is None):
            raise BadRequest("give one query: {\"tsl\": …} or {\"warpscript\": …}")
        budget = service.query_budget()
        project = access.who(http).project  # a token for one project: its points and the shared
        # The answer goes out as orjson renders it: through FastAPI's serializer, an answer
        # of 10,000 series took 150 ms more
        if request.warpscript is not None:
            return OrjsonResponse(await _bounded(
                http, service, budget, service.query_ws, request.warpscript, request.variables,
                project=project))
        return OrjsonResponse(await _bounded(
            http, service, budget, service.query_tsl, request.tsl or "", request.variables,
            explain=explain or request.explain, project=project))


VERBOSE_PING: dict[int | str, dict[str, Any]] = {200: {
    "description": "with `verbose`: the version in the body, as InfluxDB answers"}}
# What InfluxDB's /ping answers in its headers; the build names tsq, not "OSS", so a client
# that looks can tell it is not talking to InfluxDB itself.
PING_HEADERS = {"X-Influxdb-Version": __version__, "X-Influxdb-Build": "tsq"}


def _install_warp10(app: FastAPI, service: Service) -> None:
    @app.post("/api/v0/exec", responses={**QUERY_LIMITS, **BUSY})
    async def warp10_exec(request: Request) -> Response:
        """Warp 10's exec endpoint: the script is the body, the answer the stack as a JSON
        array, top first; an error answers 500 with Warp 10's X-Warp10-Error-* headers. Bound
        as /v1/query is (query_timeout_s, max_query_points)."""
        script = (await request.body()).decode("utf-8", errors="replace")
        budget = service.query_budget()
        try:
            answer = await _bounded(request, service, budget, service.query_ws, script, {},
                                    project=access.who(request).project)
        except WarpScriptError as error:
            headers = {"X-Warp10-Error-Message": _header(error.reason)}
            if error.line is not None:
                headers["X-Warp10-Error-Line"] = str(error.line)
            return OrjsonResponse({"error": error.to_json()}, status_code=500, headers=headers)
        return OrjsonResponse(answer["stack"])


def _install_warp10_ingress(app: FastAPI, service: Service) -> None:
    """Warp 10's update and delete endpoints on the embedded store, so Warp 10 tooling (and
    the `warp10` connector) can push into tsq and delete from it. The token header is
    accepted as it is: tsq has no per-token access control yet."""

    @app.post("/api/v0/update", responses=BUSY, response_class=Response,
              response_description="stored: how many points in the X-Tsq-Written header")
    async def warp10_update(request: Request) -> Response:
        """The GTS input format (`TS/LAT:LON/ELEV CLASS{LABELS} VALUE` lines; gzip when the
        content type is application/gzip); a bad line stores nothing and answers 400."""
        with service.write_admission.entered():  # before the body, as for line protocol
            zipped = request.headers.get("content-type", "").startswith("application/gzip") or \
                request.headers.get("content-encoding", "").lower() == "gzip"
            body = await _body(request, zipped, service.settings.max_body_bytes)
            try:
                text = body.decode()
            except UnicodeDecodeError as exc:
                raise BadRequest(f"the body is not UTF-8 GTS input format: {exc}") from None
            written = await run_in_threadpool(_warp10_update, service, text,
                                              access.who(request).project)
        return Response(status_code=200, headers={WRITTEN_HEADER: str(written)})

    @app.get("/api/v0/delete", response_class=PlainTextResponse)
    def warp10_delete(http: Request, selector: str, start: str | None = None,
                      end: str | None = None,
                      deleteall: str | None = None, dryrun: str | None = None) -> Response:
        """Delete the points of `selector` with ticks in `[start, end]` (µs or ISO-8601), or
        all of them with `deleteall`; answers the matching series, one a line (`dryrun`:
        without deleting them)."""
        if (deleteall is None) == (start is None and end is None) or \
                (start is None) != (end is None):
            raise BadRequest("give deleteall, or start and end (and not both)")
        chosen = gtsformat.parse_selector(selector)
        store = service.points(access.who(http).project)
        found = store.describe(chosen)
        if dryrun is None:
            low, high = (None, None) if start is None or end is None else gtsformat.tick_range(
                _warp10_tick(start, "start"), _warp10_tick(end, "end"))
            store.delete(chosen, low, high)
        lines = "".join(gtsformat.series_key(name, labels) + "\n" for name, labels in found)
        return Response(lines, media_type="text/plain")


# A query's thread sees its deadline between steps; a step that does not end (a slow read of
# the store) is answered this long after the deadline, and the thread stops at its next check.
DEADLINE_GRACE_S = 0.5


async def _bounded(request: Request, service: Service, budget: QueryBudget,
                   query: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any
                   ) -> dict[str, Any]:
    """The answer of `query(*args, budget=budget, **kwargs)`, run on a query thread (429 past
    max_queued_queries waiting): QueryTimeout once it is past its deadline, and stopped (at its
    next step) when that happens or its client disconnects."""
    ticket = service.query_admission.enter()
    try:
        work: Future[dict[str, Any]] = service.queries.submit(query, *args, budget=budget,
                                                              **kwargs)
    except BaseException:
        ticket.release()
        raise
    work.add_done_callback(lambda _done: ticket.release())  # ended, or cancelled unstarted
    answer = asyncio.wrap_future(work)
    # A query stopped early may still fail on its thread later; nobody waits for that outcome.
    answer.add_done_callback(lambda done: done.cancelled() or done.exception())
    gone = asyncio.ensure_future(_disconnect(request))
    racing: set[asyncio.Future[Any]] = {answer, gone}
    try:
        await asyncio.wait(racing, timeout=budget.remaining_s + DEADLINE_GRACE_S,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if answer.done():
        return answer.result()
    budget.stop()
    work.cancel()  # one still waiting for a thread never starts
    if gone.done() and not gone.cancelled():
        raise QueryTimeout("the client went away; the query was stopped",
                           details={"limit": "disconnect"})
    raise budget.timed_out()


async def _disconnect(request: Request) -> None:
    """Returns once the client has gone (the request's body has been read by then, so the next
    message the server has for it is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _warp10_update(service: Service, text: str, project: str | None) -> int:
    numbers, strings = gtsformat.parse_update(text, int(service.clock() * 1_000_000))
    service.project_point_rate.take(project or SHARED, numbers.points + strings.points)
    service.metrics.ingest("gts", numbers.points + strings.points)
    store = service.points(project)
    return store.write(numbers) + store.write(strings)


def _warp10_tick(text: str, what: str) -> int:
    """A tick (µs) as Warp 10 takes it: a LONG, or an ISO-8601 time."""
    try:
        tick = int(text)
    except ValueError:
        tick = parse_ns(text, what) // gtsformat.NS_PER_TICK
    if not FIRST_TICK <= tick <= LAST_TICK:
        raise BadRequest(f"{what} {text[:40]} is out of range; expected a tick (µs) from "
                         f"{FIRST_TICK} to {LAST_TICK}, or an ISO-8601 time")
    return tick


def _install_influx_health(app: FastAPI) -> None:
    """InfluxDB's health checks, so Telegraf, influxdb-client and load balancers that probe
    InfluxDB see tsq as up: 1.x's /ping (GET and HEAD) and 2.x's /health."""

    # one route per method: a route of both gives its two operations the same OpenAPI id
    @app.get("/ping", status_code=204, responses=VERBOSE_PING)
    @app.head("/ping", status_code=204, responses=VERBOSE_PING)
    async def ping(verbose: bool = False) -> Response:
        if verbose:  # InfluxDB then answers 200 with its version in the body
            return OrjsonResponse({"version": __version__}, headers=PING_HEADERS)
        return Response(status_code=204, headers=PING_HEADERS)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"name": "tsq", "message": "ready for queries and writes", "status": "pass",
                "checks": [], "version": __version__}


def _artifact_headers(name: str) -> dict[str, str]:
    """Shown in the browser under its own name; an HTML report runs in a sandbox (an origin of
    its own), so a loop's page cannot act as the API's origin; no sniffing of other types."""
    return {"Content-Disposition": f'inline; filename="{name}"',
            "Content-Security-Policy": "sandbox allow-scripts",
            "X-Content-Type-Options": "nosniff"}


async def _body(request: Request, zipped: bool, limit: int) -> bytes:
    """The request's body; a gzip one decompressed as it arrives (each chunk while the next is
    on its way), refusing more than `limit` bytes out (a small gzip can expand enormously)."""
    if not zipped:
        return await request.body()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = bytearray()
    async for chunk in request.stream():
        try:
            data += inflater.decompress(chunk, limit + 1 - len(data))
        except zlib.error as exc:
            raise BadRequest(f"the body is not valid gzip: {exc}") from None
        if len(data) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"the decompressed body is larger than {limit >> 20} MiB "
                                  f"(TSQ_MAX_BODY_MB raises the limit)")
    return bytes(data)


RUN_ERRORS = {RunStatus.TIMEOUT: "RunTimeout", RunStatus.CANCELLED: "RunCancelled"}


def _run_response(run: Run) -> OrjsonResponse:
    """A resolved run is 200 with the run; a rejected one is the error that rejected it."""
    if run.status == RunStatus.SUCCESS:
        return OrjsonResponse(run.to_json())
    kind = RUN_ERRORS.get(run.status, "RunFailed")
    body = {"type": kind, "message": run.error.message if run.error else run.status.value,
            "details": {"run": run.to_json(), "stack": run.error.stack if run.error else ""}}
    return OrjsonResponse({"error": body}, status_code=run.status.http_status)


def _install_error_handlers(app: FastAPI, service: Service) -> None:
    @app.exception_handler(TsqError)
    async def tsq_error(request: Request, exc: TsqError) -> Response:
        return _tsq_error(service, request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> OrjsonResponse:
        problems = [{"where": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
                    for e in exc.errors()]
        wrong_type = any(e.get("type") == "model_attributes_type" for e in exc.errors())
        message = "; ".join(f"{p['where']}: {p['message']}" for p in problems)
        # a wrong query or path parameter is a malformed request (BadRequest's own 400); a body
        # of the wrong shape stays 422, as FastAPI clients expect
        in_url = all(e.get("loc", ("body",))[0] in ("query", "path") for e in exc.errors())
        status = 400 if in_url else 422
        if wrong_type:
            message = "the request body must be a JSON object (Content-Type: application/json)"
            status = 415
        return _error(status, {"type": "BadRequest", "message": message,
                               "details": {"problems": problems}})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> OrjsonResponse:
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        answer = _error(exc.status_code, {"type": kind, "message": str(exc.detail),
                                          "details": {}})
        answer.headers.update(exc.headers or {})
        if exc.status_code == 405:  # Allow: every route's methods at the path, not the first's
            answer.headers["Allow"] = ", ".join(_methods_at(app, request.url.path))
        return answer

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> OrjsonResponse:
        return _unexpected(exc)


def _tsq_error(service: Service, request: Request, exc: TsqError) -> Response:
    if isinstance(exc, Unauthorized) and _is_page(request):
        return RedirectResponse(f"/login?{urlencode({'next': _local(request)})}", 303)
    service.metrics.refused(exc)
    response = _error(exc.http_status, exc.to_json())
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="tsq"'
    return response


def _unexpected(exc: Exception) -> OrjsonResponse:
    log.exception("unexpected error")
    return _error(500, {"type": "InternalError",
                        "message": f"tsq failed unexpectedly: {type(exc).__name__}: {exc}",
                        "details": {}})


def _methods_at(app: FastAPI, path: str) -> list[str]:
    found: set[str] = set()
    for route in app.routes:
        if isinstance(route, Route) and route.path_regex.match(path):
            found |= route.methods or set()
    return sorted(found)


def _is_page(request: Request) -> bool:
    """A web UI page a browser asked for (sent to the login page, not answered 401)."""
    path = request.url.path
    return request.method == "GET" and (path == "/" or (
        path.startswith("/ui/") and not path.startswith("/ui/api/")))


def _local(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _error(status: int, body: dict[str, Any]) -> OrjsonResponse:
    return OrjsonResponse({"error": body}, status_code=status)


PROBES = frozenset({"/healthz", "/health", "/ping", "/metrics"})  # polled: DEBUG, not INFO


class _RequestLog:
    """One log line per request: method, path, status and duration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def answered(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, answered)
        finally:
            _log_request(scope, status, (time.perf_counter() - started) * 1000)


def _log_request(scope: Scope, status: int, duration_ms: float) -> None:
    method, path = scope["method"], scope["path"]
    level = logging.DEBUG if path in PROBES else logging.INFO
    if log.isEnabledFor(level):
        log.log(level, "%s %s %d %.1f ms", method, path, status, duration_ms,
                extra={"method": method, "path": path, "status": status,
                       "duration_ms": round(duration_ms, 3)})


class _BodyLimit:
    """Answers 413 for a body over `limit` bytes, by Content-Length or while it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise PayloadTooLarge(self._message())
            return message

        try:
            await self.app(scope, limited, send)
        except PayloadTooLarge:
            await self._reject(send)

    def _message(self) -> str:
        return (f"the request body is larger than {self.limit >> 20} MiB "
                f"(TSQ_MAX_BODY_MB raises the limit)")

    async def _reject(self, send: Send) -> None:
        response = _error(413, PayloadTooLarge(self._message()).to_json())
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    raise BadRequest("no body expected")


def _header(text: str) -> str:
    """A message as an HTTP header value: one line of latin-1."""
    return " ".join(text.split()).encode("latin-1", errors="replace").decode("latin-1")
