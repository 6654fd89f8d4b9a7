"""What `tsq.Client` answers, as Python objects: a query's series (`Answer`), with a wide
pandas DataFrame and a matplotlib plot, and a list of runs (`Runs`) with a DataFrame of them.

`POST /v1/query` (and the local service) answers `{series: [{name, labels, timestamps (epoch ms),
values}]}`, plus `stack` for WarpScript, `meta` for TSL's listings and `plan` when explained;
`SeriesSet.from_json` reads the series, and its long DataFrame stays at hand (`.series`).
pandas and matplotlib are imported when used, so `import tsq` stays light.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tsq.series import Series, SeriesSet

__all__ = ["Answer", "Runs", "column_name"]

# The columns of `Runs.to_pandas`, in order; times become UTC datetimes.
RUN_COLUMNS = ("id", "project", "loop", "event", "trigger", "status", "attempt", "scheduled",
               "window_start", "window_end", "queued", "started", "finished", "duration_ms",
               "queue_delay_ms", "init_ms", "pipeline_id", "error", "result")
RUN_TIMES = {"scheduled": "scheduled_ms", "window_start": "window_start_ms",
             "window_end": "window_end_ms", "queued": "queued_ms", "started": "started_ms",
             "finished": "finished_ms"}


def column_name(name: str, labels: Mapping[str, str]) -> str:
    """A series as a column: `name{key="value", …}` (PromQL's way), or its name alone."""
    if not labels:
        return name
    inside = ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{name}{{{inside}}}"


class Answer:
    """The series a query returned, and the rest of its answer."""

    def __init__(self, answer: Mapping[str, Any]) -> None:
        self.raw = dict(answer)
        self.series = SeriesSet.from_json(answer.get("series") or [])
        self.stack: list[Any] | None = answer.get("stack")  # WarpScript's, top first
        self.meta: Any = answer.get("meta")  # TSL's names(), labels(), … listings
        self.plan: Any = answer.get("plan")  # with explain: what was asked of the store

    def __len__(self) -> int:
        return len(self.series)

    def __iter__(self) -> Iterator[Series]:
        return iter(self.series)

    def __repr__(self) -> str:
        names = sorted(set(self.series.names))
        return f"<Answer: {len(self)} series, {self.series.points} points of {names[:5]}>"

    def to_pandas(self) -> Any:
        """A DataFrame with a UTC DatetimeIndex (`time`) and one column per series (named by
        `column_name`); a series has NaN where it has no point at another's time."""
        import pandas as pd

        columns: dict[str, Any] = {}
        for series in self.series:
            key = column_name(series.name, series.labels)
            while key in columns:  # two statements may return the same series
                key += "'"
            index = pd.DatetimeIndex(pd.to_datetime(series.timestamps, unit="ns", utc=True))
            columns[key] = pd.Series(series.values, index=index)
        if not columns:
            return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"))
        frame = pd.DataFrame(columns).sort_index()
        frame.index.name = "time"
        return frame

    def plot(self, ax: Any = None, **options: Any) -> Any:
        """The series as lines on matplotlib axes (`ax`, else new ones); `options` go to
        `DataFrame.plot` (title, ylabel, drawstyle="steps-post", …). The axes."""
        import matplotlib.pyplot as plt

        frame = self.to_pandas()
        if ax is None:
            _, ax = plt.subplots(figsize=options.pop("figsize", (10, 4)))
        if frame.columns.empty:
            ax.set_title(options.get("title", "no series"))
            return ax
        return frame.plot(ax=ax, **options)


class Runs(list[dict[str, Any]]):
    """Run records as the API answers them, newest first; `to_pandas` makes a ledger of them."""

    def to_pandas(self) -> Any:
        """One row per run: who it is, how it ended, its times (UTC) and its result."""
        import pandas as pd

        rows = [{column: _cell(run, column) for column in RUN_COLUMNS} for run in self]
        frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
        for column in RUN_TIMES:
            frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True)
        return frame


def _cell(run: Mapping[str, Any], column: str) -> Any:
    if column in RUN_TIMES:
        return run.get(RUN_TIMES[column])
    if column == "error":
        return (run.get("error") or {}).get("message")
    return run.get(column)
