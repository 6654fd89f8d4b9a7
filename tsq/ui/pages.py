"""The pages of the web UI, rendered by Jinja2 from what the service answers the API; their
buttons call the API itself (`/v1/…`) from a little JavaScript (static/tsq.js)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field

from tsq import __version__
from tsq.access import COOKIE, who
from tsq.errors import NotFound, TsqError
from tsq.isotime import format_ms, parse_time
from tsq.loopstore import StoredVersion
from tsq.run import RunFilter
from tsq.service import Service
from tsq.ui import assets, views

__all__ = ["install"]

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "static"
RECENT_RUNS = 30  # the runs a loop's sparkline and success rate are computed over
CSV_ROWS = 100  # of a CSV artifact shown as a table
PREVIEW_BYTES = 1 << 20  # CSV, JSON and text artifacts up to this size are shown inline
RUN_STATUSES = ("queued", "running", "success", "failed", "timeout", "expired", "cancelled")
ARTIFACT_ORDER = ("image", "html", "csv", "json", "text", "link")  # pictures first
TRIGGERS = ("schedule", "after", "backfill", "manual", "http", "call")

OFFSET = re.compile(r"([zZ]|[+-]\d\d:?\d\d)$")  # a time that says its own offset

Page = Callable[..., HTMLResponse]


class CompileRequest(BaseModel):
    tsl: str = Field(description="a TSL script")


def install(app: FastAPI, service: Service) -> None:
    """Serve the UI's pages at `/` and `/ui/…`, its files at `/ui/static/…`, and the one
    endpoint of its own (`POST /ui/api/compile`, the WarpScript and PromQL of a TSL script)."""
    if assets.missing():
        log.warning("the web UI's chart library is not installed (%s): run `make install` or "
                    "`python -m tsq.ui.assets`; pages work, charts are not drawn",
                    ", ".join(assets.missing()))
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.globals.update(version=__version__, ms=_ms_text, words=views.schedule_words,
                       when=views.when, json=views.pretty_json, frames=views.stack_frames,
                       iso=_iso_text, span=_span_text,
                       ms_span=lambda a, b: _span_text(format_ms(a), format_ms(b)))
    render = _renderer(env)
    _install_files(app)
    _install_login(app, service, render)
    _install_loop_pages(app, service, render)
    _install_run_pages(app, service, render)
    _install_tools(app, render)


def _renderer(env: Environment) -> Callable[..., HTMLResponse]:
    def render(template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("missing_assets", assets.missing())
        return HTMLResponse(env.get_template(template).render(**context),
                            status_code=http_status)

    return render


def _html_errors(render: Callable[..., HTMLResponse]) -> Callable[[Page], Page]:
    """A page whose service call fails shows the error as a page, with its status."""
    def wrap(page: Page) -> Page:
        @wraps(page)
        def guarded(*args: Any, **kwargs: Any) -> HTMLResponse:
            try:
                return page(*args, **kwargs)
            except TsqError as error:
                return render("error.html", http_status=error.http_status, error=error,
                              title=type(error).__name__)
        return guarded
    return wrap


def _install_files(app: FastAPI) -> None:
    @app.get("/ui/static/vendor/{name}", include_in_schema=False)
    def vendored(name: str) -> Response:
        path = assets.VENDOR / name
        if name.startswith(".") or "/" in name or not path.is_file():
            raise NotFound(f"{name} is not installed: the web UI's third-party files are "
                           f"fetched by `make install` (`python -m tsq.ui.assets`)")
        return FileResponse(path)

    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")


def _install_login(app: FastAPI, service: Service,
                   render: Callable[..., HTMLResponse]) -> None:
    @app.get("/login", include_in_schema=False)
    def login(token: str = "", next: str = "/") -> Response:
        """With a valid token (`tsq ui` prints such a link), the UI's cookie and on to `next`;
        else the page that asks for one."""
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        if token and service.tokens.principal(token) is not None:
            answer = RedirectResponse(target, status_code=303)
            answer.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
            return answer
        return render("login.html", http_status=401 if token else 200, title="Sign in",
                      nav="", next=target, refused=bool(token))


def _install_loop_pages(app: FastAPI, service: Service,
                        render: Callable[..., HTMLResponse]) -> None:
    guarded = _html_errors(render)

    @app.get("/", include_in_schema=False)
    @guarded
    def loops_page(request: Request, q: str = "", runtime: str = "", status: str = ""
                   ) -> HTMLResponse:
        now = datetime.fromtimestamp(service.clock(), UTC)
        rows = [_loop_row(service, loop, now)
                for loop in service.list_loops(who(request).project)["loops"]]
        runtimes = sorted({row["runtime"] for row in rows})
        shown = [row for row in rows if _matches(row, q, runtime, status)]
        return render("loops.html", title="Loops", nav="loops", rows=shown, total=len(rows),
                      q=q, runtime=runtime, status=status, runtimes=runtimes,
                      statuses=(*RUN_STATUSES, "none"))

    @app.get("/ui/loops/{name}", include_in_schema=False)
    @guarded
    def loop_page(request: Request, name: str, project: str | None = None,
                  a: str | None = None, b: str | None = None) -> HTMLResponse:
        loop = service.get_loop(name, who(request).project_of(project))
        stored = service.loops.versions(loop["project"], name)
        older, newer = _diff_pair(stored, a, b)
        diff = _version_diff(older, newer) if older and newer else []
        return render("loop.html", title=name, nav="loops", lp=loop, versions=stored,
                      a=older, b=newer, diff=diff,
                      scheduled=[e for e in loop["events"] if e["rate"]])


def _install_run_pages(app: FastAPI, service: Service,
                       render: Callable[..., HTMLResponse]) -> None:
    guarded = _html_errors(render)

    @app.get("/ui/runs", include_in_schema=False)
    @guarded
    def runs_page(request: Request, loop: str = "", status: str = "", trigger: str = "",
                  since: str = "", until: str = "",
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> HTMLResponse:
        project = who(request).project
        where = RunFilter(project, loop or None, status or None, _local_ms(since, "since"),
                          _local_ms(until, "until"), limit, None, trigger or None)
        runs = service.list_runs(where)["runs"]
        return render("runs.html", title="Runs", nav="runs", runs=runs, loop=loop,
                      status=status, trigger=trigger, since=since, until=until, limit=limit,
                      statuses=RUN_STATUSES, triggers=TRIGGERS,
                      loops=sorted({row["name"]
                                    for row in service.list_loops(project)["loops"]}))

    @app.get("/ui/runs/{run_id}", include_in_schema=False)
    @guarded
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        run = service.get_run(run_id, who(request).project)
        logs = service.run_logs(run["id"])["logs"]
        files = sorted((_artifact_view(service, run["id"], meta)
                        for meta in service.run_artifacts(run["id"])["artifacts"]),
                       key=lambda view: ARTIFACT_ORDER.index(view["kind"]))
        return render("run.html", title=f"Run {run['id'][:12]}", nav="runs", run=run,
                      logs=logs, artifacts=files, graph=_pipeline(service, run),
                      unfinished=run["status"] in ("queued", "running"))


def _install_tools(app: FastAPI, render: Callable[..., HTMLResponse]) -> None:
    @app.get("/ui/explore", include_in_schema=False)
    def explore_page() -> HTMLResponse:
        return render("explore.html", title="Explore", nav="explore")

    @app.get("/ui/deploy", include_in_schema=False)
    def deploy_page() -> HTMLResponse:
        return render("deploy.html", title="Deploy", nav="deploy")

    @app.post("/ui/api/compile", include_in_schema=False)
    def compile_tsl(request: Annotated[CompileRequest, Body()]) -> dict[str, Any]:
        """What a TSL script compiles to for each target, or why it does not."""
        from tsq import tsl

        answer: dict[str, Any] = {}
        for target in ("warpscript", "promql"):
            try:
                answer[target] = {"text": tsl.compile(request.tsl, target)}
            except TsqError as error:
                answer[target] = {"error": error.message}
        return answer


def _loop_row(service: Service, loop: dict[str, Any], now: datetime) -> dict[str, Any]:
    spec = loop["spec"]
    # the store's own query: the list's short ids would cost a second query per loop
    recent = [run.to_json() for run in service.runs.find(
        RunFilter(loop["project"], loop["name"], limit=RECENT_RUNS))]
    rates = [(event["name"], event["rate"]) for event in spec["events"] if event["rate"]]
    return {"name": loop["name"], "project": loop["project"], "runtime": spec["runtime"],
            "version": loop["version"]["number"], "schedules": rates,
            "after": [event["after"] for event in spec["events"] if event["after"]],
            "next": sorted(t for _, rate in rates for t in views.next_times(rate, now))[:3],
            "last": recent[0] if recent else None, "rate": views.success_rate(recent),
            "spark": views.sparkline(recent)}


def _matches(row: dict[str, Any], q: str, runtime: str, status: str) -> bool:
    text = " ".join([row["name"], row["project"], row["runtime"],
                     *(rate for _, rate in row["schedules"])]).lower()
    last = row["last"]["status"] if row["last"] else "none"
    return (q.lower() in text and (not runtime or row["runtime"] == runtime)
            and (not status or last == status))


def _diff_pair(stored: list[StoredVersion], a: str | None, b: str | None
               ) -> tuple[StoredVersion | None, StoredVersion | None]:
    """The two versions to compare: those asked for, else the newest and the one before."""
    def pick(wanted: str | None, default: int) -> StoredVersion | None:
        for version in stored:
            if wanted in (str(version.number), version.id):
                return version
        return stored[default] if len(stored) > default else None

    return pick(a, 1), pick(b, 0)


def _version_diff(old: StoredVersion, new: StoredVersion) -> list[tuple[str, str]]:
    def text(version: StoredVersion) -> str:
        return (f"{version.source}\n\n# its settings\n"
                f"{views.pretty_json(version.spec.to_json())}\n")

    return views.diff_lines(text(old), text(new), f"version {old.number} ({old.spec.handler})",
                            f"version {new.number} ({new.spec.handler})")


def _artifact_view(service: Service, run_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    kind = views.artifact_kind(meta["contentType"])
    view: dict[str, Any] = {**meta, "kind": kind}
    if kind in ("csv", "json", "text") and meta["size"] <= PREVIEW_BYTES:
        _, data = service.run_artifact(run_id, meta["name"])
        if kind == "csv":
            view["rows"], view["more"] = views.csv_rows(data, CSV_ROWS)
        else:
            view["text"] = views.pretty_json_bytes(data) if kind == "json" else data.decode(
                "utf-8", errors="replace")
    elif kind in ("csv", "json", "text"):
        view["kind"] = "link"
    return view


def _pipeline(service: Service, run: dict[str, Any]) -> dict[str, Any] | None:
    """The steps of the run's pipeline as a graph, None when the run is alone in it."""
    steps = [step.to_json() for step in service.runs.pipeline(run["pipeline_id"])]
    if len(steps) < 2:  # alone: no graph to draw
        return None
    specs: dict[str, Any] = {}
    after: dict[str, str | None] = {}
    for step in steps:
        if step["version_id"] not in specs:
            specs[step["version_id"]] = service.loops.version(step["version_id"]).spec
        event = specs[step["version_id"]].event(step["event"])
        after[step["id"]] = event.after if event is not None else None
    nodes = views.pipeline_graph(steps, after)
    return {"nodes": nodes, "columns": max(n.column for n in nodes) + 1,
            "rows": max(n.row for n in nodes) + 1,
            "at": {n.run["id"]: n for n in nodes}}


def _local_ms(text: str, what: str) -> int | None:
    """A datetime-local input's value, read as UTC; ISO-8601 with an offset works too."""
    if not text:
        return None
    moment = parse_time(text if OFFSET.search(text) else text + "Z", what)
    return round(moment.timestamp() * 1000)


def _ms_text(ms: int | None) -> str:
    """Epoch ms as the pages show a time: UTC, to the millisecond only when it has some."""
    if ms is None:
        return ""
    return format_ms(ms, "seconds" if ms % 1000 == 0 else "milliseconds").replace(
        "T", " ").removesuffix("Z")


def _iso_text(text: str) -> str:
    """An ISO-8601 time of the API as the pages show it (UTC, no offset)."""
    return views.when(datetime.fromisoformat(text), seconds=True)


def _span_text(start: str, end: str) -> str:
    """A window `[start, end)`, the end without its date when it is the start's."""
    first, last = _iso_text(start), _iso_text(end)
    return f"[{first}, {last[11:] if first[:10] == last[:10] else last})"
