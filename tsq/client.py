"""What the CLI and Python programs talk to: a running server over HTTP, or the data directory
itself.

Both back-ends answer with the same JSON the API returns, and raise the same TsqError classes,
so the CLI does not care which one it has. `open_client` picks: an explicit URL, else the server
recorded in the data directory if it answers, else local. `Client` (`tsq.Client`) is the one
for Python programs and notebooks: the same calls with keyword arguments, answering lists,
series with `.to_pandas()` and `.plot()`, and runs with `.to_pandas()` (tsq.answers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import orjson

from tsq import datafiles, errors
from tsq.config import Settings
from tsq.errors import InvalidLoopFile, Problem, ServerUnavailable, TsqError
from tsq.handlerpaths import WHAT_IS_RIGHT, outside, resolve_beside
from tsq.outcomes import UNFINISHED
from tsq.run import RunFilter

if TYPE_CHECKING:
    import httpx

    from tsq.answers import Answer, Runs

__all__ = ["Backend", "Client", "HttpClient", "LocalClient", "open_client", "split_window"]

RUN_WAIT_S = 3600.0
PIPELINE_POLL_S = 0.05
HTTP_PIPELINE_POLL_S = 0.25  # a resumed pipeline's steps, polled over HTTP
RESUME_WAIT_S = RUN_WAIT_S  # over HTTP; then `resume` answers with the steps as they are


class Backend(Protocol):
    where: str

    def deploy(self, loop_file: Path) -> dict[str, Any]: ...
    def loops(self, project: str | None) -> dict[str, Any]: ...
    def loop(self, name: str, project: str | None) -> dict[str, Any]: ...
    def rollback(self, name: str, project: str | None, to: str | None) -> dict[str, Any]: ...
    def delete(self, name: str, project: str | None) -> dict[str, Any]: ...
    def run(self, name: str, params: dict[str, Any], project: str | None, event: str | None,
            wait: bool, at: str | None = None, window: str | None = None) -> dict[str, Any]: ...
    def runs(self, where: RunFilter) -> dict[str, Any]: ...
    def get_run(self, run_id: str) -> dict[str, Any]: ...
    def logs(self, run_id: str, after: int = 0) -> dict[str, Any]: ...
    def artifacts(self, run_id: str) -> dict[str, Any]: ...
    def artifact(self, run_id: str, name: str) -> tuple[dict[str, Any], bytes]: ...
    def resume(self, run_id: str) -> dict[str, Any]: ...
    def cancel(self, run_id: str) -> dict[str, Any]: ...
    def kept(self) -> dict[str, Any]: ...
    def backfill(self, name: str, start: str, end: str, project: str | None,
                 event: str | None) -> dict[str, Any]: ...
    def backfill_status(self, job_id: str) -> dict[str, Any]: ...
    def write(self, body: str, precision: str) -> dict[str, Any]: ...
    def query_tsl(self, source: str, variables: dict[str, Any],
                  explain: bool = False) -> dict[str, Any]: ...
    def query_ws(self, script: str, variables: dict[str, Any]) -> dict[str, Any]: ...
    def tokens(self) -> dict[str, Any]: ...
    def create_token(self, name: str, roles: list[str], project: str | None
                     ) -> dict[str, Any]: ...
    def revoke_token(self, token_id: str) -> dict[str, Any]: ...
    def close(self) -> None: ...


def split_window(text: str) -> tuple[str, str]:
    """`--window START/END` as its two times (checked as times where they are used)."""
    start, sep, end = text.partition("/")
    if not sep or not start or not end or "/" in end:
        raise errors.BadRequest(f"--window {text!r} is not START/END; write two ISO-8601 times "
                                f"joined by /, e.g. 2026-01-01T00:00:00Z/2026-01-01T00:05:00Z")
    return start, end


def read_bundle(loop_file: Path) -> tuple[str, dict[str, str]]:
    """The loop file's text and every handler file it names that exists beside it.
    InvalidLoopFile, before any handler is read, when one names a file outside the loop
    file's directory (symlinks resolved)."""
    try:
        text = loop_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.BadRequest(f"cannot read the loop file {loop_file}: {exc.strerror}") from None
    handlers = _handlers(text)
    problems = [_escape(loop_file, name, path, mark)
                for name, (path, mark) in handlers.items()
                if resolve_beside(loop_file.parent, name) is None]
    if problems:
        raise InvalidLoopFile(problems)
    files: dict[str, str] = {}
    for name in handlers:
        content = _read_beside(loop_file, name)
        if content is not None:
            files[name] = content
    return text, files


def _handlers(text: str) -> dict[str, tuple[str, tuple[int, int] | None]]:
    """The `handler:` of each function → its document path and position; a file that does not
    parse names none (the server then reports why, with positions)."""
    from tsq.yamlpos import YamlSyntaxError, format_path, load

    try:
        document, positions = load(text)
    except YamlSyntaxError:
        return {}
    functions = document.get("functions") if isinstance(document, dict) else None
    if not isinstance(functions, dict):
        return {}
    found: dict[str, tuple[str, tuple[int, int] | None]] = {}
    for name, body in functions.items():
        if isinstance(body, dict) and isinstance(body.get("handler"), str):
            path = ("functions", name, "handler")
            found.setdefault(body["handler"], (format_path(path), positions.of_value(path)))
    return found


def _escape(loop_file: Path, name: str, path: str, mark: tuple[int, int] | None) -> Problem:
    why = outside(name) or "resolves (through a symlink) to a file outside the loop file's " \
                           "directory"
    line, col = mark if mark else (None, None)
    return Problem(loop_file.name, line, col, path, f'handler "{name}" {why}; {WHAT_IS_RIGHT}')


def _read_beside(loop_file: Path, name: str) -> str | None:
    path = resolve_beside(loop_file.parent, name)
    try:
        return path.read_text(encoding="utf-8") if path and path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


class LocalClient:
    def __init__(self, settings: Settings, *, will_run: bool = False) -> None:
        if will_run:  # a handler will run here: its worker starts while tsq loads
            from tsq.worker_pool import start_ahead
            from tsq.worker_process import WorkerOptions

            start_ahead(WorkerOptions(memory_mb=settings.worker_memory_mb,
                                      max_result_bytes=settings.max_result_bytes))
        from tsq.service import Service  # V8 and SQLAlchemy load only when working locally

        self.service = Service(settings)
        self.where = f"data directory {settings.data_dir}"

    def deploy(self, loop_file: Path) -> dict[str, Any]:
        text, files = read_bundle(loop_file)  # only files the bundle checked and read
        return self.service.deploy(text, loop_file.name, files.get)

    def loops(self, project: str | None) -> dict[str, Any]:
        return self.service.list_loops(project)

    def loop(self, name: str, project: str | None) -> dict[str, Any]:
        return self.service.get_loop(name, project)

    def rollback(self, name: str, project: str | None, to: str | None) -> dict[str, Any]:
        return self.service.rollback(name, project, to)

    def delete(self, name: str, project: str | None) -> dict[str, Any]:
        return self.service.delete_loop(name, project)

    def run(self, name: str, params: dict[str, Any], project: str | None, event: str | None,
            wait: bool, at: str | None = None, window: str | None = None) -> dict[str, Any]:
        # Working locally, the CLI process is the service: it waits even for --async, or the
        # run would die with it. The record says how it ended.
        from tsq.isotime import parse_time

        bounds = split_window(window) if window is not None else None
        return self.service.run(
            name, params, project=project, event=event, trigger="cli",
            at=parse_time(at, "--at") if at is not None else None,
            window=None if bounds is None else (parse_time(bounds[0], "--window start"),
                                                parse_time(bounds[1], "--window end"))).to_json()

    def runs(self, where: RunFilter) -> dict[str, Any]:
        return self.service.list_runs(where)

    def _pipeline_runs(self, pipeline_id: str) -> list[dict[str, Any]]:
        return [run.to_json() for run in self.service.runs.pipeline(pipeline_id)]

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self.service.get_run(run_id)

    def logs(self, run_id: str, after: int = 0) -> dict[str, Any]:
        return self.service.run_logs(run_id, after)

    def artifacts(self, run_id: str) -> dict[str, Any]:
        return self.service.run_artifacts(run_id)

    def artifact(self, run_id: str, name: str) -> tuple[dict[str, Any], bytes]:
        return self.service.run_artifact(run_id, name)

    def resume(self, run_id: str) -> dict[str, Any]:
        # Working locally, this process runs the resumed steps: it follows the pipeline until
        # nothing in it is queued or running, or they would stop with it.
        return _until_ended(self.service.resume(run_id), self._pipeline_runs,
                            PIPELINE_POLL_S, None)

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self.service.cancel(run_id)

    def kept(self) -> dict[str, Any]:
        return self.service.kept()

    def backfill(self, name: str, start: str, end: str, project: str | None,
                 event: str | None) -> dict[str, Any]:
        # Working locally, this process runs the backfill: the CLI follows it to the end.
        from tsq.isotime import parse_time

        return self.service.backfill(name, parse_time(start, "--from"),
                                     parse_time(end, "--to"), project=project, event=event)

    def backfill_status(self, job_id: str) -> dict[str, Any]:
        return self.service.backfill_status(job_id)

    def write(self, body: str, precision: str) -> dict[str, Any]:
        return self.service.write_lines(body, precision)

    def query_tsl(self, source: str, variables: dict[str, Any],
                  explain: bool = False) -> dict[str, Any]:
        return self.service.query_tsl(source, variables, explain=explain)

    def query_ws(self, script: str, variables: dict[str, Any]) -> dict[str, Any]:
        return self.service.query_ws(script, variables)

    def tokens(self) -> dict[str, Any]:
        return {"tokens": self.service.tokens.list()}

    def create_token(self, name: str, roles: list[str], project: str | None) -> dict[str, Any]:
        record, secret = self.service.tokens.create(name, roles, project)
        return {**record, "token": secret}

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return self.service.tokens.revoke(token_id)

    def close(self) -> None:
        self.service.close()


class HttpClient:
    # httpx is imported where it is used: `tsq run` without a server never needs it, and its
    # import is a tenth of that command's start
    def __init__(self, url: str, token: str | None = None) -> None:
        import httpx

        self.where = f"server {url}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, timeout=httpx.Timeout(30.0, read=RUN_WAIT_S),
                                 headers=headers)

    def deploy(self, loop_file: Path) -> dict[str, Any]:
        text, files = read_bundle(loop_file)
        return self._call("POST", "/v1/loops",
                          json={"file": loop_file.name, "content": text, "files": files})

    def loops(self, project: str | None) -> dict[str, Any]:
        return self._call("GET", "/v1/loops", params=_only(project=project))

    def loop(self, name: str, project: str | None) -> dict[str, Any]:
        return self._call("GET", f"/v1/loops/{name}", params=_only(project=project))

    def rollback(self, name: str, project: str | None, to: str | None) -> dict[str, Any]:
        return self._call("POST", f"/v1/loops/{name}/rollback", params=_only(project=project),
                          json={"version": to})

    def delete(self, name: str, project: str | None) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/loops/{name}", params=_only(project=project))

    def run(self, name: str, params: dict[str, Any], project: str | None, event: str | None,
            wait: bool, at: str | None = None, window: str | None = None) -> dict[str, Any]:
        query = _only(project=project, **({} if wait else {"async": "true"}))
        bounds = split_window(window) if window is not None else None
        body = _only(params=params, event=event, at=at,
                     window=None if bounds is None else dict(zip(("start", "end"), bounds,
                                                                 strict=True)))
        try:
            return self._call("POST", f"/v1/loops/{name}/run", params=query, json=body)
        except TsqError as exc:
            if "run" in exc.details:  # a run that failed or timed out: the record says it all
                record: dict[str, Any] = exc.details["run"]
                return record
            raise

    def runs(self, where: RunFilter) -> dict[str, Any]:
        return self._call("GET", "/v1/runs", params=_only(
            project=where.project, loop=where.loop, status=where.status, since=where.since_ms,
            until=where.until_ms, limit=where.limit, event=where.event, trigger=where.trigger,
            pipeline=where.pipeline, changed_since=where.changed_since_ms))

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/runs/{_path(run_id)}")

    def logs(self, run_id: str, after: int = 0) -> dict[str, Any]:
        return self._call("GET", f"/v1/runs/{_path(run_id)}/logs",
                          params=_only(after=after or None))

    def artifacts(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/runs/{_path(run_id)}/artifacts")

    def artifact(self, run_id: str, name: str) -> tuple[dict[str, Any], bytes]:
        response = self._send("GET", f"/v1/runs/{_path(run_id)}/artifacts/{_path(name)}")
        meta = {"name": name, "contentType": response.headers.get("content-type", ""),
                "size": len(response.content)}
        return meta, response.content

    def resume(self, run_id: str) -> dict[str, Any]:
        # The server runs the resumed steps and answers at once; follow them as the local
        # client does, so both say how they ended (bounded: a server's steps may run for long).
        return _until_ended(self._call("POST", f"/v1/runs/{_path(run_id)}/resume"),
                            self._pipeline_steps, HTTP_PIPELINE_POLL_S, RESUME_WAIT_S)

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/runs/{_path(run_id)}/cancel")

    def kept(self) -> dict[str, Any]:
        return self._call("GET", "/v1/history")

    def _pipeline_steps(self, pipeline: str) -> list[dict[str, Any]]:
        found = self.runs(RunFilter(pipeline=pipeline, limit=1000))["runs"]
        return [r for r in found if r["pipeline_id"] == pipeline]

    def backfill(self, name: str, start: str, end: str, project: str | None,
                 event: str | None) -> dict[str, Any]:
        return self._call("POST", "/v1/backfill", json=_only(
            loop=name, project=project, event=event, **{"from": start, "to": end}))

    def backfill_status(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/backfill/{job_id}")

    def write(self, body: str, precision: str) -> dict[str, Any]:
        # /v1/write, not InfluxDB's /write: that one answers 204 with no count, and the answer
        # must have LocalClient.write's shape ({"written": points}).
        return self._call("POST", "/v1/write", params={"precision": precision},
                          content=body.encode(),
                          headers={"Content-Type": "text/plain; charset=utf-8"})

    def query_tsl(self, source: str, variables: dict[str, Any],
                  explain: bool = False) -> dict[str, Any]:
        return self._call("POST", "/v1/query", json={"tsl": source, "variables": variables,
                                                     "explain": explain})

    def query_ws(self, script: str, variables: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/query", json={"warpscript": script,
                                                     "variables": variables})

    def tokens(self) -> dict[str, Any]:
        return self._call("GET", "/v1/tokens")

    def create_token(self, name: str, roles: list[str], project: str | None) -> dict[str, Any]:
        return self._call("POST", "/v1/tokens", json=_only(name=name, roles=roles,
                                                             project=project))

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/tokens/{_path(token_id)}")

    def close(self) -> None:
        self.http.close()

    def healthy(self) -> bool:
        import httpx

        try:
            return self.http.get("/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _call(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        response = self._send(method, path, **options)
        return {} if response.status_code == 204 else self._json(response)

    def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        """The server's answer to a request that succeeded; its error as a TsqError if not."""
        import httpx

        try:
            response = self.http.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"cannot reach the tsq server at {self.http.base_url}: "
                                    f"{exc}") from None
        if response.status_code >= 400:
            raise _error_from(self._json(response), response.status_code)
        return response

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body: dict[str, Any] = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ServerUnavailable(f"{self.http.base_url} answered {response.status_code} with "
                                    f"something that is not tsq's JSON") from None
        return body


def _until_ended(answer: dict[str, Any], steps_of: Callable[[str], list[dict[str, Any]]],
                 poll_s: float, wait_s: float | None) -> dict[str, Any]:
    """A resume's answer with `runs`: the resumed steps once nothing in their pipeline is
    queued or running (or, after `wait_s`, as they are then)."""
    deadline = None if wait_s is None else time.monotonic() + wait_s
    while True:
        steps = steps_of(answer["pipeline"])
        busy = any(step["status"] in UNFINISHED for step in steps)
        if not busy or (deadline is not None and time.monotonic() >= deadline):
            break
        time.sleep(poll_s)
    ended = {step["id"]: step for step in steps}
    return {**answer, "runs": [ended[i] for i in answer["resumed"] if i in ended]}


def _error_from(body: dict[str, Any], status: int) -> TsqError:
    """The TsqError the server raised, rebuilt by its class; an error the server names but tsq
    has no class for (RunFailed, a 404 of an unknown path) is a TsqError with the status."""
    error = body.get("error") or {}
    kind = getattr(errors, str(error.get("type")), None)
    message = str(error.get("message", f"HTTP {status}"))
    details = error.get("details") or {}
    if isinstance(kind, type) and issubclass(kind, TsqError):
        return kind.from_json(message, details)
    exc = TsqError(message, details=details)
    exc.http_status = status  # type: ignore[misc]
    return exc


def _path(segment: str) -> str:
    """One path segment, escaped (a name typed on the command line may hold `/` or `?`)."""
    return quote(segment, safe="")


def _only(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def open_client(settings: Settings, url: str | None, *, will_run: bool = False,
                token: str | None = None) -> Backend:
    """`will_run`: the caller is about to run a handler (a local client starts a worker at
    once); `token`: the server's (default: TSQ_TOKEN, else the data directory's admin
    token)."""
    token = token or datafiles.local_token(settings.data_dir)
    if url:
        return HttpClient(url, token)
    try:
        recorded = orjson.loads(settings.server_file.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return LocalClient(settings, will_run=will_run)
    client = HttpClient(str(recorded["url"]), token)
    if client.healthy():
        return client
    client.close()
    return LocalClient(settings, will_run=will_run)


Time = str | datetime  # an ISO-8601 time with its offset, or an aware datetime


class Client:
    """tsq from Python: a server at `url`, else the data directory `data_dir` (the server
    recorded in it if one answers, else the directory itself, worked on in this process: runs
    then run here, and `run` waits for them).

        with tsq.Client("http://localhost:8080") as client:
            client.query_tsl('select("cpu").last(1h)').to_pandas()

    Errors are the TsqError classes the CLI raises, with the server's message.
    """

    def __init__(self, url: str | None = None, *, data_dir: str | Path | None = None,
                 token: str | None = None) -> None:
        """`token`: what a server asks for (default: TSQ_TOKEN, else the data directory's
        admin token)."""
        self.backend = open_client(Settings.load(data_dir), url, token=token)

    @property
    def where(self) -> str:
        """What the client talks to: "server URL" or "data directory PATH"."""
        return self.backend.where

    def __repr__(self) -> str:
        return f"<tsq.Client of {self.where}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.backend.close()

    # -- loops -----------------------------------------------------------------------------

    def deploy(self, loop_file: str | Path) -> list[dict[str, Any]]:
        """Deploy a loop file (with the handler files beside it); the loops as deployed."""
        loops: list[dict[str, Any]] = self.backend.deploy(Path(loop_file))["loops"]
        return loops

    def loops(self, project: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.backend.loops(project)["loops"]
        return found

    def loop(self, name: str, project: str | None = None) -> dict[str, Any]:
        """A loop with its versions and its events' next fire times."""
        return self.backend.loop(name, project)

    def delete(self, name: str, project: str | None = None) -> dict[str, Any]:
        return self.backend.delete(name, project)

    # -- runs ------------------------------------------------------------------------------

    def run(self, loop: str, params: dict[str, Any] | None = None, *,
            window: tuple[Time, Time] | None = None, at: Time | None = None,
            event: str | None = None, project: str | None = None,
            wait: bool = True) -> dict[str, Any]:
        """Run `loop` and (unless `wait` is False, over HTTP) wait for its end: the run record,
        whose `status` says how it ended. `window` is (start, end); `at` a scheduled time whose
        window it runs; with neither, a scheduled loop runs its latest complete period."""
        span = None if window is None else f"{_iso(window[0])}/{_iso(window[1])}"
        return self.backend.run(loop, params or {}, project, event, wait,
                                at=None if at is None else _iso(at), window=span)

    def runs(self, loop: str | None = None, *, status: str | None = None,
             project: str | None = None, event: str | None = None, trigger: str | None = None,
             pipeline: str | None = None, limit: int = 50) -> Runs:
        """Runs, newest scheduled time first; `.to_pandas()` makes them a DataFrame."""
        from tsq.answers import Runs

        where = RunFilter(project=project, loop=loop, status=status, limit=limit, event=event,
                          trigger=trigger, pipeline=pipeline)
        return Runs(self.backend.runs(where)["runs"])

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run by its id or a unique prefix of it."""
        return self.backend.get_run(run_id)

    def logs(self, run_id: str) -> list[dict[str, Any]]:
        """The run's log lines so far: `{ts (epoch ms), level, message}`."""
        lines: list[dict[str, Any]] = self.backend.logs(run_id)["logs"]
        return lines

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        """The files the run kept: `{name, contentType, size, created, url}`."""
        kept: list[dict[str, Any]] = self.backend.artifacts(run_id)["artifacts"]
        return kept

    def artifact(self, run_id: str, name: str) -> bytes:
        """One file the run kept, as bytes."""
        return self.backend.artifact(run_id, name)[1]

    def backfill(self, loop: str, start: Time, end: Time, *, event: str | None = None,
                 project: str | None = None, wait: bool = True) -> dict[str, Any]:
        """Run the scheduled times in [start, end) of `loop`; the job, once done (`wait`)."""
        job = self.backend.backfill(loop, _iso(start), _iso(end), project, event)
        while wait and job["status"] != "done":
            time.sleep(PIPELINE_POLL_S)
            job = self.backend.backfill_status(job["id"])
        return job

    # -- points ----------------------------------------------------------------------------

    def write(self, lines: str, precision: str = "ns") -> int:
        """Store InfluxDB line protocol; how many points were written."""
        return int(self.backend.write(lines, precision)["written"])

    def query_tsl(self, source: str, variables: dict[str, Any] | None = None, *,
                  explain: bool = False) -> Answer:
        """A TSL query's series (`.to_pandas()`, `.plot()`; `.plan` with `explain`)."""
        from tsq.answers import Answer

        return Answer(self.backend.query_tsl(source, variables or {}, explain))

    def query_ws(self, script: str, variables: dict[str, Any] | None = None) -> Answer:
        """A WarpScript's series (the GTS it leaves) and its `.stack`, top first."""
        from tsq.answers import Answer

        return Answer(self.backend.query_ws(script, variables or {}))


def _iso(moment: Time) -> str:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise errors.BadRequest(f"{moment!r} has no time zone; give an aware datetime "
                                    f"(e.g. datetime(…, tzinfo=UTC)) or an ISO-8601 string")
        return moment.isoformat()
    return moment
