"""What the pages show, computed from the service's JSON: schedules in words, the success-rate
sparkline, the pipeline graph, version diffs and artifact previews. Pure functions, so each is
tested without a browser."""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import orjson

from tsq import metronome
from tsq.errors import TsqError

__all__ = [
    "FINISHED",
    "GraphNode",
    "artifact_kind",
    "csv_rows",
    "diff_lines",
    "duration_words",
    "next_times",
    "pipeline_graph",
    "pretty_json",
    "schedule_words",
    "sparkline",
    "stack_frames",
    "success_rate",
    "when",
]

FINISHED = ("success", "failed", "timeout", "expired", "cancelled")
_UNITS = ((86_400 * 7, "week"), (86_400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


def duration_words(seconds: int, *, every: bool = False) -> str:
    """`300` → "5 minutes", `3600` → "1 hour" ("hour" for `every`: "every hour"), `90` →
    "90 seconds"."""
    for size, unit in _UNITS:
        if seconds and seconds % size == 0:
            return _count(seconds // size, unit, every=every)
    return f"{seconds} seconds"


def _count(count: int, unit: str, *, every: bool = True) -> str:
    if count == 1:
        return unit if every else f"1 {unit}"
    return f"{count} {unit}s"


def _period_words(period: metronome.Period) -> str:
    if period.time_mode:
        return duration_words(period.seconds, every=True)
    parts = []
    if period.months:
        parts.append(_count(period.months // 12, "year") if period.months % 12 == 0
                     else _count(period.months, "month"))
    if period.days:
        parts.append(_count(period.days // 7, "week") if period.days % 7 == 0
                     else _count(period.days, "day"))
    return " and ".join(parts)


def schedule_words(rate: str) -> str:
    """`R/2026-01-01T00:00:00Z/PT5M/ET1M` → "every 5 minutes from 2026-01-01 00:00 UTC, at most
    1 minute late"; the text itself when it does not parse (deployed loops always do)."""
    try:
        schedule = metronome.parse(rate)
    except TsqError:
        return rate
    text = f"every {_period_words(schedule.period)} from {when(schedule.start)}"
    if schedule.repeat is not None:
        text += f", {schedule.repeat + 1} times"
    late = int(schedule.epsilon.total_seconds())
    return text + (f", at most {duration_words(late)} late" if late else ", no lateness allowed")


def when(t: datetime, *, seconds: bool = False) -> str:
    """A time as the pages show it, in UTC: to the second when it has seconds (or when asked),
    with "UTC" after it unless `seconds` (a column that says UTC once)."""
    t = t.astimezone(UTC)
    if seconds:
        return t.strftime("%Y-%m-%d %H:%M:%S")
    return t.strftime("%Y-%m-%d %H:%M:%S UTC" if t.second else "%Y-%m-%d %H:%M UTC")


def next_times(rate: str, now: datetime, count: int = 3) -> list[datetime]:
    try:
        schedule = metronome.parse(rate)
    except TsqError:
        return []
    return list(islice(schedule.fire_times(now, datetime.max.replace(tzinfo=UTC)), count))


def success_rate(runs: Sequence[Mapping[str, Any]]) -> float | None:
    """The share of finished `runs` that succeeded; None when none has finished."""
    finished = [run for run in runs if run["status"] in FINISHED]
    if not finished:
        return None
    return sum(1 for run in finished if run["status"] == "success") / len(finished)


def sparkline(runs: Sequence[Mapping[str, Any]], width: int = 120, height: int = 24,
              span: int = 5) -> str:
    """The success rate of the finished `runs` (newest first), each point over the `span` runs
    up to it, oldest left: an inline SVG polyline, or "" with fewer than two points."""
    finished = [run["status"] == "success" for run in runs if run["status"] in FINISHED][::-1]
    rates = [sum(finished[max(0, i - span + 1):i + 1]) / len(finished[max(0, i - span + 1):i + 1])
             for i in range(len(finished))]
    if len(rates) < 2:  # a line needs two points
        return ""
    step = width / (len(rates) - 1)
    points = " ".join(f"{i * step:.1f},{(1 - r) * (height - 2) + 1:.1f}"
                      for i, r in enumerate(rates))
    return (f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="success rate of the latest runs">'
            f'<rect width="{width}" height="{height}" fill="#f6f8fa"/>'
            f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" '
            f'points="{points}"/></svg>')


@dataclass(frozen=True)
class GraphNode:
    run: Mapping[str, Any]
    column: int
    row: int
    source: str | None  # the id of the run that started it


def pipeline_graph(steps: Sequence[Mapping[str, Any]], after: Mapping[str, str | None]
                   ) -> list[GraphNode]:
    """The runs of one pipeline (in creation order) laid out in columns by depth: a step's
    source is the run that called it (`parent_id`) or, for an `after:` step, the newest earlier
    run of the loop it follows (`after`: run id → the loop its event follows)."""
    placed: dict[str, GraphNode] = {}
    rows: dict[int, int] = {}
    for index, run in enumerate(steps):
        source = run.get("parent_id") or _followed(steps[:index], after.get(run["id"]))
        column = placed[source].column + 1 if source in placed else 0
        rows[column] = rows.get(column, -1) + 1
        placed[run["id"]] = GraphNode(run, column, rows[column], source)
    return list(placed.values())


def _followed(earlier: Sequence[Mapping[str, Any]], loop: str | None) -> str | None:
    if loop is None:
        return None
    return next((str(run["id"]) for run in reversed(earlier) if run["loop"] == loop), None)


def diff_lines(old: str, new: str, old_name: str, new_name: str) -> list[tuple[str, str]]:
    """A unified diff as (kind, line) pairs: kind is "add", "del", "hunk" or "" (context)."""
    kinds = {"+": "add", "-": "del", "@": "hunk"}
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name,
                                 lineterm="")
    return [(kinds.get(line[:1], "") if not line.startswith(("+++", "---")) else "hunk", line)
            for line in lines]


def stack_frames(error: Mapping[str, Any]) -> str:
    """A run error's stack without its first line when that repeats `type: message`."""
    stack = str(error.get("stack") or "")
    first, _, rest = stack.partition("\n")
    return rest if first.strip() == f"{error['type']}: {error['message']}" else stack


def artifact_kind(content_type: str) -> str:
    """How the run page shows a file: image, csv, html, json, text or link."""
    base = content_type.partition(";")[0].strip().lower()
    if base in ("image/png", "image/svg+xml", "image/jpeg", "image/gif"):
        return "image"
    return {"text/csv": "csv", "text/html": "html", "application/json": "json"}.get(
        base, "text" if base.startswith("text/") else "link")


def csv_rows(data: bytes, limit: int = 200) -> tuple[list[list[str]], bool]:
    """The first `limit` rows (the header included) and whether there were more."""
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace")))
    rows = list(islice(reader, limit + 1))
    return rows[:limit], len(rows) > limit


def pretty_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def pretty_json_bytes(data: bytes) -> str:
    """A JSON file indented, or its text as it is when it is not JSON."""
    try:
        return pretty_json(orjson.loads(data))
    except orjson.JSONDecodeError:
        return data.decode("utf-8", errors="replace")

