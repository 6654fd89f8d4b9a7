"""Retention: delete raw points once rollups cover them, and never before.

A retention run at time T deletes the raw points older than T - keep, but only inside windows
that every rollup it depends on (`covered_by`) ran successfully for. A window some rollup failed
(or never ran) keeps its raw points: the run records it as `not covered` and deletes nothing
there, and a later run deletes it once the rollup has been resumed and succeeded. If the window
this run is responsible for (its own window, shifted back by `keep`) is not covered, the run's
result says `skipped: not covered`.

Windows are half-open [start, end) in epoch ms, as runs record them, and a rollup for
[start, end) reads exactly the raw points in [start, end) (docs/time.md): a point on a boundary
belongs to the window that starts there. So a covered window deletes exactly those, [start, end)
for the store too, on the same half-open intervals as the arithmetic below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tsq.clock import now_ms
from tsq.connectors.base import Connector
from tsq.isotime import format_ms
from tsq.outcomes import RunResult, RunStatus
from tsq.run import Run
from tsq.runlog import LogLine
from tsq.runstore import RunStore
from tsq.selector import parse_selector
from tsq.series import NS_PER_MS
from tsq.shorthands import RetentionSpec

__all__ = ["Interval", "apply_retention", "intersect", "merge", "subtract"]

Interval = tuple[int, int]  # [start, end)
# Told what a run deleted: each covered window and how many points it held (tsq.trims keeps it)
Deleted = Callable[[Sequence[tuple[Interval, int]]], None]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of `intervals`, as sorted, disjoint intervals (touching ones joined)."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[0] < i[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def intersect(left: Sequence[Interval], right: Sequence[Interval]) -> list[Interval]:
    """The intersection of two sorted, disjoint interval lists."""
    out: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start, end = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if start < end:
            out.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(whole: Interval, parts: Sequence[Interval]) -> list[Interval]:
    """`whole` minus the sorted, disjoint `parts`."""
    out: list[Interval] = []
    at = whole[0]
    for start, end in parts:
        if start > at:
            out.append((at, min(start, whole[1])))
        at = max(at, end)
        if at >= whole[1]:
            break
    if at < whole[1]:
        out.append((at, whole[1]))
    return [i for i in out if i[0] < i[1]]


def covered(runs: RunStore, project: str, rollups: Sequence[str], span: Interval
            ) -> list[Interval]:
    """The parts of `span` that every rollup in `rollups` succeeded for."""
    result = [span]
    for loop in rollups:
        windows = merge(runs.succeeded_windows(project, loop, *span))
        result = intersect(result, windows)
    return result


def apply_retention(spec: RetentionSpec, record: Run, runs: RunStore, store: Connector,
                    deleted_in: Deleted | None = None) -> tuple[RunResult, list[LogLine]]:
    """One retention run: what it deleted, what it kept and why; `deleted_in` hears of each
    window it deleted points in."""
    now = record.window_end_ms or record.scheduled_ms or record.queued_ms
    horizon = int(now) - spec.keep_ms
    span = (horizon - spec.lookback_ms, horizon)
    pieces = covered(runs, record.project, spec.covered_by, span)
    selector = parse_selector(spec.select)
    # A covered window [a, b) of raw points (pieces end at the horizon at the latest).
    counts = [(piece, store.delete(selector, piece[0] * NS_PER_MS, piece[1] * NS_PER_MS))
              for piece in pieces]
    if deleted_in is not None:
        deleted_in(counts)
    deleted = sum(count for _, count in counts)
    kept = subtract(span, pieces)
    logged = now_ms(runs.clock)
    logs = [LogLine(logged, "info", f"deleted {deleted} points of {spec.select} in "
                                       f"{_ranges(pieces) or 'no window'}, older than "
                                       f"{_iso(horizon)}")]
    result: dict[str, Any] = {
        "deleted": deleted, "horizon": _iso(horizon),
        "covered": [[_iso(a), _iso(b)] for a, b in pieces],
        "notCovered": [[_iso(a), _iso(b)] for a, b in kept],
        "coveredBy": list(spec.covered_by)}
    own = _own_window(record, spec.keep_ms)
    if own is not None and subtract(own, pieces):
        result["skipped"] = "not covered"
        logs.append(LogLine(logged, "warning", (
            f"skipped: not covered: {_ranges(subtract(own, pieces))} keeps its raw points "
            f"because {', '.join(spec.covered_by)} did not all succeed for it; resume the "
            f"failed rollup and a later run deletes it")))
    if kept:
        logs.append(LogLine(logged, "info", f"kept (not covered by every rollup): "
                                               f"{_ranges(kept)}"))
    return RunResult(RunStatus.SUCCESS, result=result), logs


def _own_window(record: Run, keep_ms: int) -> Interval | None:
    """The raw window this run is responsible for: its own window, `keep` earlier."""
    start, end = record.window_start_ms, record.window_end_ms
    if start is None or end is None:
        return None
    return int(start) - keep_ms, int(end) - keep_ms


def _ranges(intervals: Sequence[Interval]) -> str:
    return ", ".join(f"[{_iso(a)}, {_iso(b)})" for a, b in intervals)


def _iso(ms: int) -> str:
    return format_ms(ms, "seconds")  # retention speaks of whole seconds
