"""Reports: the files a handler makes from series (`artifacts.csv`, `artifacts.chart`).

They are rendered in the worker, not in JavaScript: the series arrive as the float64 buffer
`db.write` packs (times then values), so a CSV of a million points is one numpy/pandas pass and a
chart is drawn by matplotlib, never a loop per point. matplotlib is imported only when a chart is
made (half a second the other runs need not pay). The rules for a report's name and options live
here; each broken rule is a BadRequest that names the method and what would be right, which the
handler sees as a TypeError.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

from tsq.errors import BadRequest
from tsq.series import NS_PER_MS, Series, SeriesSet

__all__ = ["ChartOptions", "chart_bytes", "chart_format", "chart_options",
           "check_content_type", "check_name", "csv_bytes", "series_from_js"]

EXTENSIONS = {"csv": (".csv",), "chart": (".png", ".svg"), "json": (".json",),
              "html": (".html", ".htm")}
EXAMPLES = {"save": "notes.txt", "json": "summary.json", "html": "report.html",
            "csv": "cpu.csv", "chart": "cpu.png"}
CONTENT_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+(\s*;\s*[\w.+-]+=[\w.+\"-]+)*")
MAX_CONTENT_TYPE = 100  # the width of the column that keeps it
MAX_MS = 9.2e18 / NS_PER_MS  # epoch ms whose nanoseconds still fit an int64 (year 2262)
RESERVED_COLUMNS = ("time", "name", "value")
KINDS = ("line", "step")
PIXELS = (100, 4000)  # the smallest and largest width or height of a chart
DPI = 100
MAX_LEGEND = 20  # more lines than this get no legend: it would hide the chart


@dataclass(frozen=True)
class ChartOptions:
    title: str = ""
    ylabel: str = ""
    width: int = 800
    height: int = 400
    kind: Literal["line", "step"] = "line"


# -- checking what the handler asked -----------------------------------------------------------

def check_name(method: str, name: Any) -> str:
    """`name` if it is a file name `method` can make; the characters are the store's to check."""
    if not isinstance(name, str) or not name:
        raise BadRequest(f"artifacts.{method} needs a file name as its first argument, like "
                         f"{EXAMPLES.get(method, 'report.txt')!r}, got {_shown(name)}")
    allowed = EXTENSIONS.get(method, ())
    if allowed and not name.lower().endswith(allowed):
        raise BadRequest(f"artifacts.{method}({name!r}): the name must end in "
                         f"{' or '.join(allowed)}, like {EXAMPLES[method]!r}"
                         f"{' (the format follows the extension)' if len(allowed) > 1 else ''}")
    return name


def check_content_type(method: str, given: Any) -> str | None:
    """A media type like `text/plain; charset=utf-8`, or None to follow the name's extension."""
    if given is None:
        return None
    if not (isinstance(given, str) and len(given) <= MAX_CONTENT_TYPE
            and CONTENT_TYPE.fullmatch(given)):
        raise BadRequest(f"artifacts.{method}: the content type must be a media type like "
                         f"\"text/plain\" (at most {MAX_CONTENT_TYPE} characters), or left out "
                         f"to follow the name's extension; got {_shown(given)}")
    return given


def chart_options(given: Any) -> ChartOptions:
    """The options of `artifacts.chart`, each checked; unknown ones are refused, not ignored,
    so a misspelt `heigth` does not silently draw the default."""
    if given is None:
        return ChartOptions()
    if not isinstance(given, dict):
        raise BadRequest(f"artifacts.chart's options must be an object like "
                         f"{{title: \"CPU\", kind: \"step\"}}, got {_shown(given)}")
    known = ChartOptions.__dataclass_fields__
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise BadRequest(f"artifacts.chart: unknown option {unknown[0]!r}; the options are "
                         f"{', '.join(known)}")
    return ChartOptions(title=_text_option("title", given), ylabel=_text_option("ylabel", given),
                        width=_pixels("width", given, ChartOptions.width),
                        height=_pixels("height", given, ChartOptions.height),
                        kind=_kind(given))


def _text_option(key: str, given: dict[str, Any]) -> str:
    value = given.get(key, "")
    if not isinstance(value, str):
        raise BadRequest(f"artifacts.chart: option {key} must be a string, got {_shown(value)}")
    return value


def _pixels(key: str, given: dict[str, Any], default: int) -> int:
    value = given.get(key, default)
    low, high = PIXELS
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or value != int(value) or not low <= value <= high):
        raise BadRequest(f"artifacts.chart: option {key} must be a whole number of pixels from "
                         f"{low} to {high}, got {_shown(value)}")
    return int(value)


def _kind(given: dict[str, Any]) -> Literal["line", "step"]:
    value = given.get("kind", "line")
    if value == "step":
        return "step"
    if value != "line":
        raise BadRequest(f"artifacts.chart: option kind must be \"line\" or \"step\", got "
                         f"{_shown(value)}")
    return "line"


def chart_format(name: str) -> Literal["png", "svg"]:
    return "svg" if name.lower().endswith(".svg") else "png"


def series_from_js(method: str, meta: Any, packed: npt.NDArray[np.float64]) -> SeriesSet:
    """The series a handler passed, from their names and counts (`meta`) and the packed buffer
    (times in epoch ms, then values); `packed` is not kept."""
    if not isinstance(meta, list) or not all(isinstance(s, dict) for s in meta):
        raise BadRequest(f"artifacts.{method} needs series as db.select returns them")
    counts = np.asarray([int(s.get("count", -1)) for s in meta], dtype=np.int64)
    total = len(packed) // 2
    if np.any(counts < 0) or int(counts.sum()) != total:
        raise BadRequest(f"artifacts.{method}: the series count {int(counts.sum())} points "
                         f"but {total} were sent")
    times, values = packed[:total], packed[total:]
    if not np.all(np.abs(times) < MAX_MS):
        raise BadRequest(f"artifacts.{method}: every timestamp must be a finite epoch "
                         f"millisecond count before the year 2262")
    return SeriesSet(tuple(str(s.get("name")) for s in meta),
                     tuple(_labels(method, s) for s in meta),
                     np.round(times * NS_PER_MS).astype(np.int64), values.copy(),
                     np.concatenate(([0], np.cumsum(counts))).astype(np.int64)).normalized()


def _labels(method: str, series: dict[str, Any]) -> dict[str, str]:
    labels = series.get("labels") or {}
    if not isinstance(labels, dict):
        raise BadRequest(f"artifacts.{method}: series {series.get('name')!r} has labels "
                         f"{_shown(labels)}; labels are an object like {{dc: \"gra\"}}")
    return {str(key): str(value) for key, value in labels.items()}


def _shown(value: Any) -> str:
    """A value as the handler wrote it (JSON, so `null` rather than `None`), cut short."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


# -- rendering ----------------------------------------------------------------------------------

def csv_bytes(series: SeriesSet) -> bytes:
    """One row per point: `time` (ISO-8601 UTC, ms), `name`, a column per label key (the union,
    sorted; empty where a series lacks it) and `value` (empty for NaN)."""
    import pandas as pd

    ids = series.series_ids()
    columns: dict[str, Any] = {
        "time": np.datetime_as_string(series.timestamps.astype("datetime64[ns]"), unit="ms",
                                      timezone="UTC"),
        "name": np.asarray(series.names, dtype=object)[ids]}
    for key in sorted({key for labels in series.labels for key in labels}):
        per_series = np.asarray([labels.get(key, "") for labels in series.labels], dtype=object)
        columns[_column(key, columns)] = per_series[ids]
    columns["value"] = series.values
    text: str = pd.DataFrame(columns).to_csv(index=False, lineterminator="\n")
    return text.encode()


def _column(key: str, taken: dict[str, Any]) -> str:
    """A label's column: its key, unless that is time, name or value (then `label_<key>`)."""
    column = key
    while column in RESERVED_COLUMNS or column in taken:
        column = f"label_{column}"
    return column


def chart_bytes(series: SeriesSet, options: ChartOptions,
                fmt: Literal["png", "svg"] = "png") -> bytes:
    """A line chart of `series`, one line each, exactly `options.width` by `height` pixels,
    time along a UTC axis. Drawn on a Figure of its own (no pyplot: no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(options.width / DPI, options.height / DPI), dpi=DPI,
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    buffer = io.BytesIO()
    try:
        for one in series:
            _draw(axes, one, options.kind)
        _decorate(axes, series, options)
        figure.savefig(buffer, format=fmt, dpi=DPI)
    except (ValueError, OverflowError) as exc:  # times or values beyond what it can place
        raise BadRequest(f"artifacts.chart: matplotlib cannot draw these series: {exc}"
                         ) from None
    return buffer.getvalue()


def _draw(axes: Any, one: Series, kind: str) -> None:
    when = one.timestamps.astype("datetime64[ns]")
    if kind == "step":
        axes.step(when, one.values, where="post", label=legend_label(one))
    else:
        axes.plot(when, one.values, label=legend_label(one))


def _decorate(axes: Any, series: SeriesSet, options: ChartOptions) -> None:
    from datetime import UTC

    from matplotlib import dates

    axes.set_title(options.title)
    axes.set_ylabel(options.ylabel)
    axes.grid(True, alpha=0.3)
    if not len(series) or not series.points:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        return
    # UTC whatever the worker's matplotlibrc says (matplotlib's stubs leave these untyped).
    locator = dates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(
        dates.ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]
    axes.set_xlabel("time (UTC)")
    if len(series) <= MAX_LEGEND:
        axes.legend(fontsize="small")


def legend_label(one: Series) -> str:
    """`cpu{dc=gra,host=a}`: the name and labels, as selectors write them."""
    labels = ",".join(f"{key}={value}" for key, value in sorted(one.labels.items()))
    return f"{one.name}{{{labels}}}" if labels else one.name
