"""What retention deleted, and the rollup windows it left incomplete.

A retention run records each range of its source it deleted points in (table `trims`): the
source's selector, the connector it lives in, [start, end) in epoch ms, and the run. A rollup run
whose window overlaps a range trimmed from its own source would roll the window up from what is
left of it (nothing, or only points that arrived late) and replace what an earlier run made of
the whole window; so it is skipped instead, its result and its log naming the source, the trimmed
ranges and the window, and what earlier runs wrote for the window is kept.

Whether a retention's `select:` and a rollup's `from:` may pick the same series is decided on
their names and `=` matchers: `cpu` and `cpu{dc="gra"}` may, `cpu{dc="gra"}` and `cpu{dc="rbx"}`
cannot, `cpu` and `mem` cannot. Anything else counts as overlapping, which errs on the side of
keeping a rollup's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tsq.clock import Clock, now_ms, wall
from tsq.db import transaction, trims
from tsq.isotime import format_ms
from tsq.outcomes import RunResult, RunStatus
from tsq.run import Run
from tsq.runlog import LogLine
from tsq.selector import Selector, parse_selector

__all__ = ["SOURCE_TRIMMED", "Trim", "TrimStore", "may_overlap", "trimmed_window"]

SOURCE_TRIMMED = "source trimmed"  # the `skipped` of a rollup run's result
Interval = tuple[int, int]  # [start, end) in epoch ms


@dataclass(frozen=True)
class Trim:
    """One range of a source a retention run deleted points in."""

    selector: str
    start_ms: int
    end_ms: int
    points: int
    loop: str
    run_id: str

    def to_json(self) -> dict[str, Any]:
        return {"select": self.selector, "from": _iso(self.start_ms), "to": _iso(self.end_ms),
                "points": self.points, "loop": self.loop, "run": self.run_id}


class TrimStore:
    def __init__(self, engine: Engine, clock: Clock = wall) -> None:
        self.engine = engine
        self.clock = clock

    def record(self, project: str, connector: tuple[Any, ...], selector: str,
               deleted: Sequence[tuple[Interval, int]], loop: str, run_id: str) -> None:
        """Keep the ranges a retention run deleted points in (ranges it found empty, deleted
        by an earlier run, are not recorded again)."""
        rows = [{"project": project, "connector": _key(connector), "selector": selector,
                 "start_ms": start, "end_ms": end, "points": points, "loop": loop,
                 "run_id": run_id, "created_ms": now_ms(self.clock)}
                for (start, end), points in deleted if points > 0]
        if rows:
            with transaction(self.engine) as db:
                db.execute(trims.insert(), rows)

    def overlapping(self, project: str, connector: tuple[Any, ...], source: Selector,
                    start_ms: int, end_ms: int) -> list[Trim]:
        """The trims of series `source` may select, in its connector, that overlap
        [start_ms, end_ms), by start."""
        query = (sa.select(trims).where(trims.c.project == project,
                                        trims.c.connector == _key(connector),
                                        trims.c.start_ms < end_ms, trims.c.end_ms > start_ms)
                 .order_by(trims.c.start_ms))
        with self.engine.connect() as db:
            rows = db.execute(query).all()
        return [Trim(row.selector, int(row.start_ms), int(row.end_ms), int(row.points),
                     row.loop, row.run_id)
                for row in rows if may_overlap(parse_selector(row.selector), source)]


def may_overlap(one: Selector, other: Selector) -> bool:
    """Whether two selectors may select a series in common (see the module's docstring)."""
    if one.name is not None and other.name is not None and one.name != other.name:
        return False
    equal = {m.label: m.value for m in one.matchers if m.op == "="}
    return not any(m.op == "=" and equal.get(m.label, m.value) != m.value
                   for m in other.matchers)


def trimmed_window(store: TrimStore, record: Run, source: str, connector: tuple[Any, ...]
                   ) -> tuple[RunResult, list[LogLine]] | None:
    """How a rollup run of `source` ends without running, when retention trimmed its window;
    None when its window's source is whole (or it has no window)."""
    window = record.window
    if window is None:
        return None
    found = store.overlapping(record.project, connector, parse_selector(source), *window)
    if not found:
        return None
    shown = f"[{_iso(window[0])}, {_iso(window[1])})"
    ranges = "; ".join(f"[{_iso(t.start_ms)}, {_iso(t.end_ms)}) by {t.loop} (run {t.run_id})"
                       for t in found)
    message = (f"skipped: retention deleted points of {source} inside this window {shown}: "
               f"{ranges}; rolling the window up again would rewrite it from what is left of "
               f"its source, so what earlier runs wrote for it is kept")
    result = {"skipped": SOURCE_TRIMMED, "source": source, "window": [_iso(w) for w in window],
              "trimmed": [t.to_json() for t in found], "written": 0}
    return (RunResult(RunStatus.SUCCESS, result=result),
            [LogLine(now_ms(store.clock), "warning", message)])


def _key(connector: tuple[Any, ...]) -> str:
    return orjson.dumps([str(part) for part in connector]).decode()


def _iso(ms: int) -> str:
    return format_ms(ms, "seconds")
