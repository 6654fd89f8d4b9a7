"""The `tsq` command. Every command works against a running server or the data directory.

Read commands take `--json` for scripts. `tsq run` exits 0 only when the run succeeded (1 when
it failed, 2 for a timeout); any other error prints one clear line and exits 3.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tsq import datafiles, metronome
from tsq.client import Backend, open_client
from tsq.config import BY_KEY, Settings
from tsq.errors import BadRequest, InvalidLoopFile, PartialWrite, TslError, TsqError
from tsq.isotime import format_ms, parse_time
from tsq.outcomes import UNFINISHED
from tsq.run import RunFilter

__all__ = ["app", "main"]

app = typer.Typer(help="tsq: continuous queries over time series as small functions (loops).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
schedule_app = typer.Typer(help="Metronome schedules.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")
tsl_app = typer.Typer(help="TSL queries: compile them for Warp 10 or Prometheus.",
                      no_args_is_help=True)
app.add_typer(tsl_app, name="tsl")
runs_app = typer.Typer(help="Run history (bare `tsq runs`), one run, resuming a pipeline.")
app.add_typer(runs_app, name="runs")
artifacts_app = typer.Typer(help="The files runs kept: reports, charts, exports.",
                            no_args_is_help=True)
app.add_typer(artifacts_app, name="artifacts")
token_app = typer.Typer(help="API tokens: who may call the server, in which project, with "
                             "which roles (docs/security.md).", no_args_is_help=True)
app.add_typer(token_app, name="token")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EXIT_FAILED, EXIT_TIMEOUT, EXIT_ERROR = 1, 2, 3
BACKFILL_POLL_S = 0.2
RUN_EXIT = {"success": 0, "timeout": EXIT_TIMEOUT}
RESULT_CHARS = 200  # of a result shown by `tsq runs show` (--json prints all of it)
FOLLOW_POLL_S = 1.0  # --follow asks for news this often: cheap for the server, soon enough
# --follow asks for runs changed since the newest change it saw, minus this: a change stamped
# just before another but committed after it is still seen (the ones seen twice are skipped).
FOLLOW_SLACK_MS = 5000
FOLLOW_BATCH = 1000  # runs per poll (the API's largest page)

DataDir = Annotated[Path | None, typer.Option("--data-dir", envvar="TSQ_DATA_DIR",
                                              help="where loops, runs and points live")]
Url = Annotated[str | None, typer.Option("--url", envvar="TSQ_URL",
                                         help="a tsq server to talk to (default: the one "
                                              "recorded in the data directory, else none)")]
Project = Annotated[str | None, typer.Option("--project", help="the loop's project")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
RunId = Annotated[str, typer.Argument(help="a run id, or a unique prefix of one (as `tsq runs` "
                                           "shows it)")]


def _print_version(wanted: bool) -> None:
    if wanted:
        from tsq import __version__

        out.print(f"tsq {__version__}", highlight=False, markup=False)
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="print tsq's version and exit")] = False) -> None:
    """tsq: continuous queries over time series as small functions (loops)."""


def main() -> None:
    _utf8_if_ascii()
    try:
        app()
    except TsqError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}", highlight=False, markup=True)
        if isinstance(exc, TslError) and exc.caret:
            err.print(exc.caret, highlight=False, markup=False)
        sys.exit(EXIT_ERROR)


def _utf8_if_ascii() -> None:
    """Under a C or POSIX locale with Python's UTF-8 mode turned off, the standard streams and
    the arguments are ASCII: the first name or result beyond it ended the command with a
    UnicodeEncodeError, and what came in (`tsq write -`, `tsq query 'select("temp°C")'`)
    as surrogates no request can carry. They are UTF-8 there instead, as Python itself makes
    them by default."""
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        if (isinstance(stream, io.TextIOWrapper)
                and codecs.lookup(stream.encoding).name == "ascii"):
            stream.reconfigure(encoding="utf-8", errors=stream.errors)
    if codecs.lookup(sys.getfilesystemencoding()).name == "ascii":
        sys.argv[1:] = [os.fsencode(arg).decode("utf-8", "surrogateescape")
                        for arg in sys.argv[1:]]


@contextmanager
def _client(data_dir: Path | None, url: str | None, *, will_run: bool = False
            ) -> Iterator[Backend]:
    client = open_client(Settings.load(data_dir), url, will_run=will_run)
    try:
        yield client
    finally:
        client.close()


def _print_json(data: Any) -> None:
    options = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    sys.stdout.write(orjson.dumps(data, option=options).decode() + "\n")


def _help(key: str) -> str:
    """The help of a `tsq serve` flag, from its option (tsq.config). The flags default to None:
    not given, so the environment, the config file and the default apply in that order."""
    option = BY_KEY[key]
    shown = "SQLite in the data directory" if option.default is None else option.default
    return f"{option.meaning} (env {option.env}; default {shown})"


def _flag(name: str, key: str) -> Any:
    return typer.Option(name, help=_help(key), show_default=False)


Host = Annotated[str | None, _flag("--host", "host")]
Port = Annotated[int | None, _flag("--port", "port")]
AllowedHosts = Annotated[str | None, _flag("--allowed-hosts", "allowed_hosts")]
OutboundAllow = Annotated[str | None, _flag("--outbound-allow", "outbound_allow")]
Auth = Annotated[str | None, _flag("--auth", "auth")]
Workers = Annotated[int | None, _flag("--workers", "workers")]
WorkerMemory = Annotated[int | None, _flag("--worker-memory-mb", "worker_memory_mb")]
MaxBody = Annotated[int | None, _flag("--max-body-mb", "max_body_mb")]
MaxResult = Annotated[int | None, _flag("--max-result-kb", "max_result_kb")]
QueryTimeout = Annotated[int | None, _flag("--query-timeout-s", "query_timeout_s")]
MaxQueryPoints = Annotated[int | None, _flag("--max-query-points", "max_query_points")]
MaxQueuedQueries = Annotated[int | None, _flag("--max-queued-queries", "max_queued_queries")]
MaxQueuedRuns = Annotated[int | None, _flag("--max-queued-runs", "max_queued_runs")]
MaxProjectRuns = Annotated[int | None, _flag("--max-project-runs", "max_project_runs")]
MaxWrites = Annotated[int | None, _flag("--max-concurrent-writes", "max_concurrent_writes")]
ProjectRunRate = Annotated[int | None, _flag("--project-runs-per-minute",
                                             "project_runs_per_minute")]
ProjectPointRate = Annotated[int | None, _flag("--project-points-per-s", "project_points_per_s")]
ProjectQueryRate = Annotated[int | None, _flag("--project-query-s-per-minute",
                                               "project_query_s_per_minute")]
MaxDepth = Annotated[int | None, _flag("--pipeline-max-depth", "pipeline_max_depth")]
MaxSteps = Annotated[int | None, _flag("--pipeline-max-steps", "pipeline_max_steps")]
LogLevel = Annotated[str | None, _flag("--log-level", "log_level")]
LogFormat = Annotated[str | None, _flag("--log-format", "log_format")]
DatabaseUrl = Annotated[str | None, typer.Option(
    "--database-url", "--database", help=_help("database_url"), show_default=False)]
HeadMinutes = Annotated[int | None, _flag("--store-head-minutes", "store_head_minutes")]
PastPoints = Annotated[int | None, _flag("--store-past-points", "store_past_points")]
CacheMb = Annotated[int | None, _flag("--store-cache-mb", "store_cache_mb")]
Cluster = Annotated[str | None, _flag("--cluster", "cluster")]
Role = Annotated[str | None, _flag("--role", "role")]
StoreUrl = Annotated[str | None, _flag("--store-url", "store_url")]
ClusterName = Annotated[str | None, _flag("--cluster-name", "cluster_name")]
AckWait = Annotated[int | None, _flag("--cluster-ack-wait-s", "cluster_ack_wait_s")]
MaxDeliver = Annotated[int | None, _flag("--cluster-max-deliver", "cluster_max_deliver")]
LeaseTtl = Annotated[int | None, _flag("--cluster-lease-ttl-s", "cluster_lease_ttl_s")]
ConfigPath = Annotated[Path | None, typer.Option(
    "--config", help="a TOML file of these settings (env TSQ_CONFIG; default tsq.toml in the "
                     "data directory, if there is one)", show_default=False)]


@app.command()
def serve(host: Host = None, port: Port = None, allowed_hosts: AllowedHosts = None,
          outbound_allow: OutboundAllow = None, auth: Auth = None, workers: Workers = None,
          worker_memory_mb: WorkerMemory = None, max_body_mb: MaxBody = None,
          max_result_kb: MaxResult = None, query_timeout_s: QueryTimeout = None,
          max_query_points: MaxQueryPoints = None,
          max_queued_queries: MaxQueuedQueries = None, max_queued_runs: MaxQueuedRuns = None,
          max_project_runs: MaxProjectRuns = None,
          project_runs_per_minute: ProjectRunRate = None,
          project_points_per_s: ProjectPointRate = None,
          project_query_s_per_minute: ProjectQueryRate = None,
          max_concurrent_writes: MaxWrites = None,
          pipeline_max_depth: MaxDepth = None,
          pipeline_max_steps: MaxSteps = None, log_level: LogLevel = None,
          log_format: LogFormat = None, database_url: DatabaseUrl = None,
          store_head_minutes: HeadMinutes = None, store_past_points: PastPoints = None,
          store_cache_mb: CacheMb = None,
          cluster: Cluster = None, role: Role = None,
          store_url: StoreUrl = None,
          cluster_name: ClusterName = None, cluster_ack_wait_s: AckWait = None,
          cluster_max_deliver: MaxDeliver = None, cluster_lease_ttl_s: LeaseTtl = None,
          config: ConfigPath = None, data_dir: DataDir = None) -> None:
    """Start the HTTP API and the workers (Ctrl-C or `tsq stop` stops them); with --cluster,
    one process of a cluster doing --role (docs/scale-out.md)."""
    from tsq.server import serve as run_server

    flags = {"host": host, "port": port, "allowed_hosts": allowed_hosts,
             "outbound_allow": outbound_allow, "auth": auth, "workers": workers,
             "worker_memory_mb": worker_memory_mb, "max_body_mb": max_body_mb,
             "max_result_kb": max_result_kb, "query_timeout_s": query_timeout_s,
             "max_query_points": max_query_points, "max_queued_queries": max_queued_queries,
             "max_queued_runs": max_queued_runs,
             "max_project_runs": max_project_runs,
             "project_runs_per_minute": project_runs_per_minute,
             "project_points_per_s": project_points_per_s,
             "project_query_s_per_minute": project_query_s_per_minute,
             "max_concurrent_writes": max_concurrent_writes,
             "pipeline_max_depth": pipeline_max_depth,
             "pipeline_max_steps": pipeline_max_steps, "log_level": log_level,
             "log_format": log_format, "store_head_minutes": store_head_minutes,
             "store_past_points": store_past_points, "store_cache_mb": store_cache_mb,
             "cluster": cluster, "role": role,
             "store_url": store_url, "cluster_name": cluster_name,
             "cluster_ack_wait_s": cluster_ack_wait_s, "cluster_max_deliver": cluster_max_deliver,
             "cluster_lease_ttl_s": cluster_lease_ttl_s}
    run_server(Settings.load(data_dir, database_url, config=config, flags=flags))


@app.command()
def stop(timeout: Annotated[float, typer.Option(
        help="seconds to wait for it to finish its requests and stop")] = 30.0,
         data_dir: DataDir = None) -> None:
    """Stop the server running on the data directory (SIGTERM), and wait until it has."""
    from tsq.server import stop as stop_server

    pid, url = stop_server(Settings.load(data_dir), timeout)
    out.print(f"stopped the tsq server{f' at {url}' if url else ''} (pid {pid})",
              highlight=False, markup=False)


@app.command()
def deploy(loop_file: Path, data_dir: DataDir = None, url: Url = None,
           as_json: AsJson = False) -> None:
    """Validate a loop file and deploy its loops; nothing is deployed if anything is wrong."""
    with _client(data_dir, url) as client:
        try:
            result = client.deploy(loop_file)
        except InvalidLoopFile as exc:
            _fail_deploy(exc.message)
    if as_json:
        _print_json(result)
        return
    for loop in result["loops"]:
        version = loop["version"]
        state = "deployed" if loop["created"] else "unchanged"
        out.print(f"{state} [bold]{loop['name']}[/bold] version {version['number']} "
                  f"({version['id'][:12]}) in project {loop['project']}")


def _fail_deploy(message: str) -> None:
    err.print(message, highlight=False, markup=False)
    raise typer.Exit(EXIT_ERROR)


@app.command()
def loops(project: Project = None, data_dir: DataDir = None, url: Url = None,
          as_json: AsJson = False) -> None:
    """List the deployed loops."""
    with _client(data_dir, url) as client:
        result = client.loops(project)
    if as_json:
        _print_json(result)
        return
    table = Table("project", "loop", "runtime", "version", "events", "deployed")
    for loop in result["loops"]:
        spec, version = loop["spec"], loop["version"]
        events = ", ".join(e["name"] for e in spec["events"]) or "-"
        table.add_row(loop["project"], loop["name"], spec["runtime"],
                      f"{version['number']} ({version['id'][:12]})", events,
                      _time(version["created"]))
    out.print(table)


@app.command()
def show(name: str, project: Project = None, data_dir: DataDir = None, url: Url = None,
         as_json: AsJson = False) -> None:
    """One loop: its versions, events and next fire times."""
    with _client(data_dir, url) as client:
        result = client.loop(name, project)
    if as_json:
        _print_json(result)
        return
    spec = result["spec"]
    out.print(f"[bold]{result['name']}[/bold] ({result['project']}), {_runs_what(spec)}")
    connector = spec.get("connector") or {}
    if connector.get("type", "embedded") != "embedded":
        out.print(f"   connector {connector.get('name', '')} ({connector['type']} at "
                  f"{connector.get('url', '')})", highlight=False)
    for version in result["versions"]:
        marker = "*" if version["id"] == result["version"]["id"] else " "
        out.print(f" {marker} version {version['number']}  {version['id'][:12]}  "
                  f"{_time(version['created'])}")
    for event in result["events"]:
        when = event["rate"] or f"after {event['after']}"
        out.print(f"   event {event['name']}: {when}", highlight=False)
        for upcoming in event.get("next", []):
            start, end = upcoming["window"]
            out.print(f"     next {upcoming['time']}  window [{start}, {end})", highlight=False)


@app.command()
def rollback(name: str, to: Annotated[str | None, typer.Option(
        help="version number or id (default: the previous one)")] = None,
             project: Project = None, data_dir: DataDir = None, url: Url = None) -> None:
    """Point a loop back at an earlier version."""
    with _client(data_dir, url) as client:
        result = client.rollback(name, project, to)
    out.print(f"{name} now at version {result['version']['number']} "
              f"({result['version']['id'][:12]})")


@app.command()
def delete(name: str, project: Project = None, data_dir: DataDir = None,
           url: Url = None) -> None:
    """Remove a loop (its versions and runs stay in the history)."""
    with _client(data_dir, url) as client:
        client.delete(name, project)
    out.print(f"deleted {name}")


@app.command()
def run(name: str,
        param: Annotated[list[str] | None, typer.Option(
            "-p", "--param", help="k=v (the value is parsed as JSON when it can be)")] = None,
        event: Annotated[str | None, typer.Option(
            help="use this event's params (and its schedule for the window)")] = None,
        run_async: Annotated[bool, typer.Option("--async", help="queue and return at once "
                                                "(needs a server)")] = False,
        at: Annotated[str | None, typer.Option(
            "--at", metavar="TIME",
            help="run scheduled time TIME (ISO-8601, e.g. 2026-01-01T00:05:00Z) with the window "
                 "the scheduler gives it, [TIME - period, TIME)")] = None,
        window: Annotated[str | None, typer.Option(
            "--window", metavar="START/END",
            help="run this window (ISO-8601 times, END excluded)")] = None,
        project: Project = None, data_dir: DataDir = None, url: Url = None,
        as_json: AsJson = False) -> None:
    """Run a loop now; exit 0 only if it succeeded.

    A loop with a schedule (`rate:`) runs with the window of its latest complete period unless
    --at or --window says otherwise; a loop without one runs with no window (event.window is
    null) unless --window gives one. A run by hand never stands in for a scheduled run: the
    scheduler and `tsq backfill` still run that time.
    """
    params = _parse_params(param or [])
    with _client(data_dir, url, will_run=True) as client:
        record = client.run(name, params, project, event, wait=not run_async, at=at,
                            window=window)
    if as_json:
        _print_json(record)
    else:
        _print_covered(record, chosen=at is not None or window is not None)
        _print_run(record)
    status = record["status"]
    if status in UNFINISHED:
        return
    raise typer.Exit(RUN_EXIT.get(status, EXIT_FAILED))


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not k=v", param_hint="-p")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def _print_covered(record: dict[str, Any], *, chosen: bool) -> None:
    """Say which window a run by hand covers: without --at or --window it was picked for it."""
    if record.get("window_start_ms") is None:
        return
    start, end = record["window_start_ms"], record["window_end_ms"]
    covered = f"window [{format_ms(start)}, {format_ms(end)})"
    if record.get("scheduled_ms") is not None:
        covered += f" of scheduled time {format_ms(record['scheduled_ms'])}"
    if not chosen:
        covered += " (latest complete period; --at or --window to choose)"
    out.print(covered, highlight=False, markup=False)


def _print_run(record: dict[str, Any]) -> None:
    colour = {"success": "green", "failed": "red", "timeout": "yellow"}.get(record["status"],
                                                                           "cyan")
    duration = record.get("duration_ms")
    timing = f" in {duration} ms" if duration is not None else ""
    out.print(f"run {record['id']} [{colour}]{record['status']}[/{colour}]{timing}",
              highlight=False)
    if record.get("result") is not None:
        out.print_json(data=record["result"])
    if record.get("error"):
        err.print(_error_text(record["error"]), highlight=False, markup=False)


def _error_text(error: dict[str, Any]) -> str:
    """A run's error, once: a JavaScript stack already begins with "Type: message", so printing
    both showed the error twice."""
    head = f"{error.get('type')}: {error.get('message')}"
    stack = str(error.get("stack") or "")
    if stack.startswith(head):
        return stack
    return f"{head}\n{stack}" if stack else head


@runs_app.callback(invoke_without_command=True)
def runs(ctx: typer.Context,
         loop: Annotated[str | None, typer.Option(help="only this loop")] = None,
         status: Annotated[str | None, typer.Option(help="only this status")] = None,
         limit: int = 20,
         follow: Annotated[bool, typer.Option(
             "--follow", "-f", help="then print runs as they are queued, start and end, until "
                                    "Ctrl-C (with --json: one JSON record a line)")] = False,
         project: Project = None, data_dir: DataDir = None, url: Url = None,
         as_json: AsJson = False) -> None:
    """Run history, newest first (`tsq runs show ID`, `tsq runs resume ID` and `tsq runs
    cancel ID` for one run; `tsq runs kept` for what the history keeps, and how large)."""
    if ctx.invoked_subcommand is not None:
        return
    where = RunFilter(project=project, loop=loop, status=status, limit=limit)
    with _client(data_dir, url) as client:
        result = client.runs(where)
        if follow:
            _follow_runs(client, where, result["runs"], as_json)
            return
    if as_json:
        _print_json(result)
        return
    out.print(_runs_table(result["runs"], out.width))


@dataclass(frozen=True)
class _RunColumn:
    header: str
    cell: Callable[[dict[str, Any]], str]


def _window(record: dict[str, Any]) -> str:
    if record.get("window_start_ms") is None:
        return ""
    return f"[{_time(record['window_start_ms'])}, {_time(record['window_end_ms'])})"


def _outcome(record: dict[str, Any]) -> str:
    error = record.get("error")
    return str(error["message"]) if error else json.dumps(record.get("result"))


def _duration(record: dict[str, Any]) -> str:
    duration = record.get("duration_ms")
    return "" if duration is None else f"{duration} ms"


RUN_COLUMNS = {  # in the order they are shown
    "run": _RunColumn("run", lambda r: str(r.get("short_id") or r["id"])),
    "loop": _RunColumn("loop", lambda r: str(r["loop"])),
    "event": _RunColumn("event", lambda r: str(r["event"])),
    "status": _RunColumn("status", lambda r: str(r["status"])),
    "time": _RunColumn("scheduled / queued",
                       lambda r: _time(r["scheduled_ms"] or r["queued_ms"])),
    "window": _RunColumn("window", _window),
    "attempt": _RunColumn("attempt", lambda r: str(r["attempt"])),
    "duration": _RunColumn("duration", _duration),
    "outcome": _RunColumn("result / error", lambda r: _outcome(r)[:OUTCOME_CHARS]),
}
# Never cut: what a user reads first and copies into the next command.
ESSENTIAL = ("run", "loop", "status")
# Shown while the terminal has room, the most useful first.
BY_VALUE = ("outcome", "time", "duration", "event", "attempt", "window")
OUTCOME_CHARS = 60  # the most of a result or error the table shows
OUTCOME_MIN = 16  # narrower, a result or error says too little to be worth its column


def _runs_table(records: list[dict[str, Any]], width: int) -> Table:
    """The runs as a table no wider than `width`: the id prefix, loop and status whole, then
    the other columns by value while they fit (the result or error cut to the room left)."""
    cells = {key: [column.cell(r) for r in records] for key, column in RUN_COLUMNS.items()}
    natural = {key: max([cell_len(RUN_COLUMNS[key].header), *map(cell_len, values)])
               for key, values in cells.items()}
    need = {**natural, "outcome": min(natural["outcome"], OUTCOME_MIN)}
    chosen = list(ESSENTIAL)
    for key in BY_VALUE:
        if _table_width([need[k] for k in [*chosen, key]]) <= width:
            chosen.append(key)
    shown = [key for key in RUN_COLUMNS if key in chosen]
    table = Table()
    for key in shown:
        if key == "outcome":
            room = width - _table_width([natural[k] for k in shown if k != key] + [0])
            natural[key] = min(natural[key], room)
            cells[key] = [_fit(text, natural[key]) for text in cells[key]]
        table.add_column(RUN_COLUMNS[key].header, width=natural[key], no_wrap=True,
                         overflow="fold")
    for row in zip(*(cells[key] for key in shown), strict=True):
        table.add_row(*row)
    return table


def _table_width(widths: list[int]) -> int:
    """How wide rich draws a table of columns this wide (a border and a space either side of
    each cell)."""
    return sum(widths) + 3 * len(widths) + 1


def _fit(text: str, width: int) -> str:
    return text if cell_len(text) <= width else set_cell_size(text, width - 1) + "…"


def _follow_runs(client: Backend, where: RunFilter, first: list[dict[str, Any]],
                 as_json: bool) -> None:
    """The runs as `tsq runs` shows them, then a line for every change to a run (queued,
    started, ended) until Ctrl-C; with --json, a record a line throughout."""
    seen: dict[str, tuple[Any, ...]] = {}
    _, newest = _news(first, seen)
    if as_json:
        _print_changes(list(reversed(first)), as_json)
    else:
        out.print(_runs_table(first, out.width))
    try:
        # The changes the table already reflects (or, past --limit, older than it): not news.
        newest = _poll_runs(client, where, newest, seen)[1]
        while True:
            time.sleep(FOLLOW_POLL_S)
            changed, newest = _poll_runs(client, where, newest, seen)
            _print_changes(sorted(changed, key=_changed_ms), as_json)
    except KeyboardInterrupt:
        return


def _poll_runs(client: Backend, where: RunFilter, newest: int | None,
               seen: dict[str, tuple[Any, ...]]) -> tuple[list[dict[str, Any]], int | None]:
    """The runs that changed since the newest change seen (and not seen in that state), and
    the newest change now; `seen` forgets what the next polls cannot return again."""
    since = None if newest is None else newest - FOLLOW_SLACK_MS
    polled = client.runs(replace(where, changed_since_ms=since, limit=FOLLOW_BATCH))
    changed, latest = _news(polled["runs"], seen)
    newest = max(newest or 0, latest or 0) or None
    if newest is not None:
        for run_id in [k for k, v in seen.items() if v[-1] < newest - FOLLOW_SLACK_MS]:
            del seen[run_id]
    return changed, newest


def _news(records: list[dict[str, Any]], seen: dict[str, tuple[Any, ...]]
          ) -> tuple[list[dict[str, Any]], int | None]:
    """The records not seen in their current state yet (now marked seen), and the newest
    change among all of them."""
    news, newest = [], None
    for record in records:
        changed = _changed_ms(record)
        newest = max(newest or changed, changed)
        state = (record["status"], record["attempt"], record["queued_ms"], changed)
        if seen.get(record["id"]) != state:
            seen[record["id"]] = state
            news.append(record)
    return news, newest


def _print_changes(records: list[dict[str, Any]], as_json: bool) -> None:
    for record in records:
        if as_json:
            sys.stdout.write(orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS).decode()
                             + "\n")
            sys.stdout.flush()
        else:
            out.print(_fit(_run_line(record), out.width), highlight=False, markup=False)


def _changed_ms(record: dict[str, Any]) -> int:
    return max(int(record[k]) for k in ("queued_ms", "started_ms", "finished_ms")
               if record.get(k) is not None)


def _run_line(record: dict[str, Any]) -> str:
    parts = [_time(_changed_ms(record)), str(record.get("short_id") or record["id"]),
             record["loop"], record["event"], record["status"], _duration(record)]
    if record["status"] not in UNFINISHED:
        parts.append(_outcome(record))
    return "  ".join(part for part in parts if part)


@runs_app.command("show")
def runs_show(run_id: RunId, data_dir: DataDir = None, url: Url = None,
              as_json: AsJson = False) -> None:
    """One run: how it ended, where it sits in its pipeline, and the files it kept."""
    with _client(data_dir, url) as client:
        record = client.get_run(run_id)
        kept = client.artifacts(record["id"])["artifacts"]
    if as_json:
        _print_json({**record, "artifacts": kept})
        return
    rows = [("status", record["status"]), ("loop", f"{record['loop']} ({record['project']})"),
            ("version", record["version_id"][:12]),
            ("trigger", f"{record['trigger']} (event {record['event']})"),
            ("pipeline", _pipeline(record)), ("window", _window(record)),
            ("attempt", str(record["attempt"])),
            ("duration", _duration_and_init(record))]
    if record.get("error"):
        rows.append(("error", f"{record['error'].get('type')}: {record['error'].get('message')}"))
    elif record.get("result") is not None:
        rows.append(("result", _outcome(record)[:RESULT_CHARS]))
    out.print(f"run [bold]{record['id']}[/bold]", highlight=False)
    for label, value in rows:
        if value:
            out.print(f"  {label:9} {value}", highlight=False, markup=False)
    _print_artifacts(kept)


def _duration_and_init(record: dict[str, Any]) -> str:
    duration, init = record.get("duration_ms"), record.get("init_ms")
    if duration is None:
        return ""
    return f"{duration} ms" if init is None else f"{duration} ms (init {init:.2f} ms)"


def _pipeline(record: dict[str, Any]) -> str:
    pipeline = record.get("pipeline_id") or ""
    parent = record.get("parent_id")
    return f"{pipeline} (called by run {parent})" if parent else pipeline


def _print_artifacts(kept: list[dict[str, Any]]) -> None:
    if not kept:
        out.print("  no artifacts")
        return
    table = Table("artifact", "type", "size")
    table.add_column("url", overflow="fold")  # whole, on two lines if it must: it is copied
    for artifact in kept:
        table.add_row(artifact["name"], artifact["contentType"], _size(artifact["size"]),
                      artifact["url"])
    out.print(table)


def _size(size: int) -> str:
    if size < 1 << 10:
        return f"{size} bytes"
    return f"{size / (1 << 10):.1f} KiB" if size < 1 << 20 else f"{size / (1 << 20):.1f} MiB"


def _or_exit_failed(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`call()`'s answer; its error on stderr and exit 1 if it is refused (nothing to resume or
    cancel: the run has ended, or is not known)."""
    try:
        return call()
    except TsqError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None


@runs_app.command("resume")
def runs_resume(run_id: RunId, data_dir: DataDir = None, url: Url = None,
                as_json: AsJson = False) -> None:
    """Run the failed steps of a run's pipeline again and wait for them (exit 1: nothing to
    resume, or a step failed again; 2: a step still running after an hour, over HTTP)."""
    with _client(data_dir, url) as client:
        answer = _or_exit_failed(lambda: client.resume(run_id))
    ended = answer.get("runs", [])
    if as_json:
        _print_json(answer)
    else:
        steps = answer["steps"]
        out.print(f"pipeline {answer['pipeline']} ({steps} step{'s' if steps != 1 else ''}): "
                  f"resumed {', '.join(answer['resumed'])}", highlight=False)
        for record in ended:
            _print_run(record)
    if any(r["status"] not in ("success", *UNFINISHED) for r in ended):
        raise typer.Exit(EXIT_FAILED)
    if any(r["status"] in UNFINISHED for r in ended):
        raise typer.Exit(EXIT_TIMEOUT)


@runs_app.command("cancel")
def runs_cancel(run_id: RunId, data_dir: DataDir = None, url: Url = None,
                as_json: AsJson = False) -> None:
    """Cancel a queued or running run: a queued one never starts, a running one is stopped
    (exit 1: it had ended already, or is not known)."""
    with _client(data_dir, url) as client:
        record = _or_exit_failed(lambda: client.cancel(run_id))
    if as_json:
        _print_json(record)
    else:
        _print_run(record)


@runs_app.command("kept")
def runs_kept(data_dir: DataDir = None, url: Url = None, as_json: AsJson = False) -> None:
    """What the run history keeps per loop (runs, log lines, artifacts), how large it is, and
    the loop's `history:` policy; the history is swept in the background by that policy."""
    with _client(data_dir, url) as client:
        answer = client.kept()
    if as_json:
        _print_json(answer)
        return
    table = Table("loop", "runs", "since", "log lines", "artifacts", "keep", "keep failed",
                  "max artifacts")
    for row in answer["loops"]:
        policy = row["policy"]
        table.add_row(f"{row['loop']} ({row['project']})", str(row["runs"]),
                      str(row["oldest"] or ""), f"{row['logs']} ({_size(row['logBytes'])})",
                      f"{row['artifacts']} ({_size(row['artifactBytes'])})",
                      _days(policy["keep_ms"]), _days(policy["keep_failed_ms"]),
                      f"{policy['max_artifacts_mb']} MiB")
    out.print(table)
    total, last = answer["total"], answer["lastSweep"]
    out.print(f"{_many(total['runs'], 'run')}, {_many(total['logs'], 'log line')} "
              f"({_size(total['logBytes'])}), {_many(total['artifacts'], 'artifact')} "
              f"({_size(total['artifactBytes'])}) kept", highlight=False)
    if last["at"]:
        out.print(f"the last sweep ({last['at']}) deleted {_many(last['runs'], 'run')}, "
                  f"{_many(last['logs'], 'log line')} and {_many(last['artifacts'], 'artifact')}"
                  f" ({_size(last['artifactBytes'])})", highlight=False)


def _days(ms: int) -> str:
    return f"{ms / 86_400_000:g}d"


def _many(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"


@app.command()
def logs(run_id: RunId,
         follow: Annotated[bool, typer.Option(
             "--follow", "-f", help="then print new lines as they come, until the run has "
                                    "ended (or Ctrl-C; with --json: one JSON line a line)")
                           ] = False,
         data_dir: DataDir = None, url: Url = None, as_json: AsJson = False) -> None:
    """The log lines of one run."""
    with _client(data_dir, url) as client:
        result = client.logs(run_id)
        if follow:
            _follow_logs(client, result, as_json)
            return
    if as_json:
        _print_json(result)
        return
    _print_log_lines(result["logs"], as_json)


def _follow_logs(client: Backend, answer: dict[str, Any], as_json: bool) -> None:
    """Print the lines, then new ones until the run has ended. The answer's status is read
    before its lines, so once it says ended, the lines with it were the last."""
    try:
        _print_log_lines(answer["logs"], as_json)
        while answer.get("status") in UNFINISHED:
            time.sleep(FOLLOW_POLL_S)
            after = answer.get("next", 0)
            answer = client.logs(answer["run"], after)  # the whole id: a prefix may not last
            _print_log_lines(answer["logs"], as_json)
    except KeyboardInterrupt:
        return


def _print_log_lines(lines: list[dict[str, Any]], as_json: bool) -> None:
    for line in lines:
        if as_json:
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()
        else:
            out.print(f"{_time(line['ts'])} {line['level']:7} {line['message']}",
                      highlight=False, markup=False)


@artifacts_app.command("list")
def artifacts_list(run_id: RunId, data_dir: DataDir = None, url: Url = None,
                   as_json: AsJson = False) -> None:
    """The files one run kept."""
    with _client(data_dir, url) as client:
        result = client.artifacts(run_id)
    if as_json:
        _print_json(result)
    else:
        _print_artifacts(result["artifacts"])


@artifacts_app.command("get")
def artifacts_get(run_id: RunId, name: str,
                  output: Annotated[str | None, typer.Option(
                      "-o", "--output", help="the file to write, or a directory (one that "
                                             "exists, or a path ending in /, created if "
                                             "missing); default: NAME in the current "
                                             "directory")] = None,
                  force: Annotated[bool, typer.Option(
                      "--force", help="overwrite the file if it exists")] = False,
                  data_dir: DataDir = None, url: Url = None) -> None:
    """Download a file a run kept."""
    target, into_directory = _target(output, name)
    if into_directory and target.parent.exists() and not target.parent.is_dir():
        err.print(f"[red]error:[/red] -o {escape(str(output))} names a directory, but "
                  f"{escape(str(target.parent))} is a file; give a directory or a file name",
                  highlight=False)
        raise typer.Exit(EXIT_ERROR)
    if target.exists() and not force:
        err.print(f"[red]error:[/red] {escape(str(target))} exists; add --force to overwrite it",
                  highlight=False)
        raise typer.Exit(EXIT_ERROR)
    with _client(data_dir, url) as client:
        meta, data = client.artifact(run_id, name)
    try:
        if into_directory:
            target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write {escape(str(target))}: {exc.strerror}",
                  highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    out.print(f"wrote {target} ({_size(len(data))}, {meta['contentType']})", highlight=False,
              markup=False)


def _target(output: str | None, name: str) -> tuple[Path, bool]:
    """Where `artifacts get` writes, and whether that is inside a directory named by -o: NAME
    inside -o if -o ends in / or is a directory (made if missing), else -o as given; NAME in
    the current directory without -o (its last part only: a name never writes elsewhere)."""
    base = Path(name).name or "artifact"
    if output is None:
        return Path(base), False
    path = Path(output)
    if output.endswith(("/", os.sep)) or path.is_dir():
        return path / base, True
    return path, False


@app.command()
def backfill(name: str,
             start: Annotated[str, typer.Option(
                 "--from", metavar="TIME",
                 help="run the scheduled times at or after TIME (inclusive; ISO-8601)")],
             end: Annotated[str, typer.Option(
                 "--to", metavar="TIME",
                 help="… and before TIME (exclusive; ISO-8601)")],
             event: Annotated[str | None, typer.Option(help="only this scheduled event")] = None,
             project: Project = None, data_dir: DataDir = None, url: Url = None,
             as_json: AsJson = False) -> None:
    """Run a loop for every scheduled time t with --from <= t < --to, skipping times that
    succeeded.

    The range bounds the scheduled times, not the windows: each run covers its window
    [t - period, t), so the first window begins one period before the first scheduled time
    (before --from itself when --from is a scheduled time). With an hourly
    schedule, --from 2026-01-01T00:00:00Z --to 2026-01-01T03:00:00Z runs 00:00, 01:00 and
    02:00, whose windows cover [2025-12-31T23:00, 2026-01-01T02:00). To compute the data of
    [A, B), give --from A+period --to B+period. See docs/scheduling.md.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with _client(data_dir, url) as client:
        job = client.backfill(name, start, end, project, event)
        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, disable=as_json) as progress:
            task = progress.add_task(f"backfill {name}", total=job["total"])
            while True:
                progress.update(task, completed=job["done"])
                if job["status"] == "done":
                    break
                time.sleep(BACKFILL_POLL_S)
                job = client.backfill_status(job["id"])
    if as_json:
        _print_json(job)
    else:
        out.print(f"backfill {job['id']}: {job['total']} scheduled times, "
                  f"{job['success']} succeeded, {job['failed'] + job['timeout']} failed, "
                  f"{job['skipped']} skipped (already succeeded)")
    if job["failed"] or job["timeout"]:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def demo(data_dir: DataDir = None, url: Url = None) -> None:
    """Seed nine days of sample cpu points, deploy examples/pipeline (1m and 1h rollups, a daily
    report with a chart, 7-day retention) and backfill it."""
    from tsq.demo import run_demo

    with _client(data_dir, url) as client:
        report = run_demo(client, lambda text: out.print(text, highlight=False, markup=False))
    out.print(f"newest report: run {report['id']} ({report['status']}); see it with "
              f"`tsq runs show {report['id']}` and `tsq artifacts get {report['id']} "
              f"cpu-hourly.png`", highlight=False, markup=False)


@token_app.command("create")
def token_create(name: Annotated[str, typer.Argument(help="what the token is for, e.g. telegraf")],
                 role: Annotated[list[str], typer.Option(
                     "--role", "-r", help="read, write, run, deploy or admin (repeatable)")],
                 project: Annotated[str | None, typer.Option(
                     help="the one project it works in (default: every project)")] = None,
                 data_dir: DataDir = None, url: Url = None, as_json: AsJson = False) -> None:
    """Make a token and print its secret, once: tsq keeps only a hash of it."""
    roles = [part.strip() for given in role for part in given.split(",") if part.strip()]
    with _client(data_dir, url) as client:
        made = client.create_token(name, roles, project)
    if as_json:
        _print_json(made)
        return
    scope = f"project {made['project']}" if made["project"] else "every project"
    err.print(f"token {made['id']} ({made['name']}): {', '.join(made['roles'])} in {scope}; "
              f"its secret is shown only now:", highlight=False, markup=False)
    out.print(made["token"], highlight=False, markup=False)


@token_app.command("list")
def token_list(data_dir: DataDir = None, url: Url = None, as_json: AsJson = False) -> None:
    """The tokens (never their secrets), revoked ones too."""
    with _client(data_dir, url) as client:
        found = client.tokens()
    if as_json:
        _print_json(found)
        return
    table = Table("id", "name", "project", "roles", "created", "revoked")
    for token in found["tokens"]:
        table.add_row(token["id"], token["name"], token["project"] or "(every project)",
                      ", ".join(token["roles"]), _time(token["created_ms"]),
                      _time(token["revoked_ms"]))
    out.print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="the id `tsq token list` shows")],
                 data_dir: DataDir = None, url: Url = None) -> None:
    """Revoke a token: requests with it are refused from now on (401)."""
    with _client(data_dir, url) as client:
        revoked = client.revoke_token(token_id)
    state = "revoked" if revoked.get("was_active", True) else "was already revoked:"
    out.print(f"{state} token {revoked['id']} ({revoked['name']})", highlight=False,
              markup=False)


@token_app.command("admin")
def token_admin(data_dir: DataDir = None) -> None:
    """Print the data directory's admin token (made by the first `tsq serve`), for curl:
    `-H "Authorization: Bearer $(tsq token admin)"`."""
    settings = Settings.load(data_dir)
    path = settings.data_dir / datafiles.ADMIN_TOKEN_FILE
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError:
        secret = ""
    if not secret:
        err.print(f"[red]error:[/red] {path} holds no token yet: `tsq serve` makes it when it "
                  f"first starts", highlight=False)
        raise typer.Exit(EXIT_ERROR)
    out.print(secret, highlight=False, markup=False)


@app.command()
def ui(data_dir: DataDir = None) -> None:
    """Print the link that opens the running server's web UI signed in (with the data
    directory's admin token)."""
    from urllib.parse import quote as quoted

    settings = Settings.load(data_dir)
    try:
        url = json.loads(settings.server_file.read_text(encoding="utf-8"))["url"]
    except (OSError, ValueError, KeyError):
        err.print(f"[red]error:[/red] no tsq server is running on {settings.data_dir}; start "
                  f"one with `tsq serve`", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    token = datafiles.local_token(settings.data_dir)
    out.print(f"{url}/login?token={quoted(token, safe='')}" if token else f"{url}/",
              highlight=False, markup=False, soft_wrap=True)


@app.command()
def write(source: Annotated[str, typer.Argument(help="a line-protocol file, or - for stdin")],
          precision: Annotated[str, typer.Option(help="timestamp unit: ns, us, ms, s, m, h")
                               ] = "ns",
          data_dir: DataDir = None, url: Url = None) -> None:
    """Store InfluxDB line protocol in the embedded store; bad lines are listed, good ones kept."""
    try:
        body = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]error:[/red] cannot read {source}: {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    origin = "stdin" if source == "-" else source
    with _client(data_dir, url) as client:
        try:
            written = client.write(body, precision)["written"]
        except PartialWrite as exc:
            err.print(exc.message, highlight=False, markup=False)
            if exc.details.get("written") is not None:  # the good lines were kept
                out.print(f"wrote {_points(exc.details['written'])} from {origin}",
                          highlight=False, markup=False)
            raise typer.Exit(EXIT_FAILED) from None
    out.print(f"wrote {_points(written)} from {origin}", highlight=False, markup=False)


def _points(count: int) -> str:
    return f"{count} point{'' if count == 1 else 's'}"


@app.command()
def query(tsl: Annotated[str | None, typer.Option(
              "--tsl", help="a TSL script, or @FILE to read one")] = None,
          ws: Annotated[str | None, typer.Option(
              "--ws", help="a WarpScript script, or @FILE to read one")] = None,
          var: Annotated[list[str] | None, typer.Option(
              "--var", "-v", help="a variable, name=value (repeatable)")] = None,
          explain: Annotated[bool, typer.Option(
              "--explain", help="also show the plan: what the store was asked, what tsq "
                                "computed")] = False,
          data_dir: DataDir = None, url: Url = None, as_json: AsJson = False) -> None:
    """Evaluate a TSL or WarpScript query on the store and print the series it gives (and,
    for WarpScript, its stack)."""
    if (tsl is None) == (ws is None):
        raise BadRequest("give one query: --tsl '…' or --ws '…'")
    with _client(data_dir, url) as client:
        if ws is not None:
            answer = client.query_ws(_read_source(ws), _parse_params(var or []))
        else:
            answer = client.query_tsl(_read_source(tsl or ""), _parse_params(var or []),
                                      explain=explain)
    if as_json:
        _print_json(answer)
        return
    for step in answer.get("plan", []):
        out.print(f"{step['where']}: {step['step']}", highlight=False, markup=False)
    for listed in answer.get("meta", []):   # names(), labels(), … statements
        out.print(orjson.dumps(listed).decode(), highlight=False, markup=False)
    if "stack" in answer and not answer["series"]:   # WarpScript leaving no GTS
        for level, item in enumerate(answer["stack"]):
            out.print(f"{level}: {orjson.dumps(item).decode()}", highlight=False, markup=False)
        return
    series = answer["series"]
    if not series and answer.get("meta"):
        return
    table = Table("name", "labels", "points", "first", "last", "last value")
    for item in series:
        stamps, values = item["timestamps"], item["values"]
        labels = ",".join(f"{k}={v}" for k, v in item["labels"].items())
        table.add_row(item["name"], labels, str(len(stamps)), _time(stamps[0] if stamps else None),
                      _time(stamps[-1] if stamps else None), str(values[-1]) if values else "")
    out.print(table)


@tsl_app.command("compile")
def tsl_compile(source: Annotated[str, typer.Argument(help="a TSL script, @FILE, or - for stdin")],
                to: Annotated[str, typer.Option(help="warpscript or promql")] = "warpscript",
                token: Annotated[str, typer.Option(help="the Warp 10 read token")] = "TOKEN",
                now: Annotated[str | None, typer.Option(
                    help="PromQL: the RFC 3339 instant last() counts back from")] = None) -> None:
    """Compile TSL to WarpScript or to PromQL requests, as the reference implementation does."""
    from tsq import tsl as tsl_module

    if to not in ("warpscript", "promql"):
        err.print(f"[red]error:[/red] --to must be warpscript or promql, not {to!r}")
        raise typer.Exit(EXIT_ERROR)
    moment = parse_time(now, "--now") if now else datetime.now(UTC)
    text = sys.stdin.read() if source == "-" else _read_source(source)
    compiled = tsl_module.compile(text, "promql" if to == "promql" else "warpscript",
                                  token=token, now=moment)
    if isinstance(compiled, str):
        sys.stdout.write(compiled)
    else:
        _print_json(compiled)


def _read_source(given: str) -> str:
    if not given.startswith("@"):
        return given
    try:
        return Path(given[1:]).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]error:[/red] cannot read {given[1:]}: {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None


@schedule_app.command("next")
def schedule_next(schedule: str, n: Annotated[int, typer.Option("-n")] = 10,
                  after: Annotated[str | None, typer.Option(
                      help="an RFC 3339 instant (default: now)")] = None,
                  as_json: AsJson = False) -> None:
    """The next fire times of a schedule, with the window each run covers."""
    parsed = metronome.parse(schedule)
    start = parse_time(after, "--after") if after else datetime.now(UTC)
    times = list(islice(parsed.fire_times(start, datetime.max.replace(tzinfo=UTC)), n))
    rows = [{"time": t.isoformat(), "window": [w.isoformat() for w in parsed.window(t)]}
            for t in times]
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        out.print(f"{row['time']}  window [{row['window'][0]}, {row['window'][1]})")


def _time(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _runs_what(spec: dict[str, Any]) -> str:
    """What a loop runs, in a few words: its handler, or the shorthand it was written as."""
    rollup, retention = spec.get("rollup"), spec.get("retention")
    if rollup:
        by = f" by {', '.join(rollup['by'])}" if rollup.get("by") else ""
        return (f"rollup {rollup['from']} → {rollup['to']} "
                f"({rollup['span']} {rollup['aggregate']}{by})")
    if retention:
        covered = ", ".join(retention["covered_by"])
        keep = _span(int(retention["keep_ms"]))
        return f"retention of {retention['select']} (keep {keep}, covered by {covered})"
    return f"{spec['runtime']} handler {spec['handler']}"


def _span(ms: int) -> str:
    """A duration in the largest unit that divides it, as loop files write it (7d, 90m)."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
