"""Point-wise kernels: each point maps to a new value (or is kept or dropped) on its own, or with
its predecessor (`rate`). One numpy expression over all series at once; the series boundaries
only matter where a point looks at its neighbour or at its series' ends.

Names follow TSL: `add(n)`, `abs()`, `greaterThan(n)` (keeps matching points), `maxWith(n)`
(clamps from below), `hour()` (replaces the value by the UTC hour of its time), …
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.errors import BadRequest
from tsq.series import NS_PER_MS, SeriesSet

__all__ = ["COMPARISONS", "MATH", "TIME_PARTS", "arithmetic", "clamp", "compare",
           "finite", "keep", "math", "rate", "shift", "subset", "time_part", "with_values"]

Array = npt.NDArray[Any]
Ints = npt.NDArray[np.int64]
NS_PER_S = 1_000_000_000

def _round_half_up(values: Array) -> Array:
    """Ties go up, as Warp 10's Math.round and PromQL's round() (numpy rounds them to even)."""
    floor = np.floor(values)
    rounded: Array = np.where(values - floor >= 0.5, floor + 1, floor)  # no overflow near max
    return rounded


ARITHMETIC: dict[str, Callable[[Array, float], Array]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
}
MATH: dict[str, Callable[[Array], Array]] = {
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor, "round": _round_half_up, "sqrt": np.sqrt,
    "ln": np.log, "log2": np.log2, "log10": np.log10,
}
COMPARISONS: dict[str, Callable[[Array, float], Array]] = {
    "equal": np.equal, "notEqual": np.not_equal, "greaterThan": np.greater,
    "greaterOrEqual": np.greater_equal, "lessThan": np.less, "lessOrEqual": np.less_equal,
}


def with_values(series: SeriesSet, values: Array) -> SeriesSet:
    """The same series and times with other values."""
    return SeriesSet(series.names, series.labels, series.timestamps, values, series.offsets)


def subset(series: SeriesSet, kept: npt.NDArray[np.bool_]) -> SeriesSet:
    """The points where `kept` is true, series by series (a series may become empty)."""
    before = np.concatenate(([0], np.cumsum(kept, dtype=np.int64)))
    return SeriesSet(series.names, series.labels, series.timestamps[kept], series.values[kept],
                     before[series.offsets])


def _numbers(series: SeriesSet, what: str) -> Array:
    if series.values.dtype.kind not in "fiub":
        raise BadRequest(f"{what} needs numbers; these series hold {series.values.dtype}")
    return series.values.astype(np.float64, copy=False)


def arithmetic(series: SeriesSet, op: str, operand: float) -> SeriesSet:
    if op not in ARITHMETIC:
        raise BadRequest(f"unknown operation {op!r}; expected one of {', '.join(ARITHMETIC)}")
    # IEEE 754 answers, as every TSDB gives them: x/0 is ±inf, 0/0 NaN, 1/5e-324 overflows to inf.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return with_values(series, ARITHMETIC[op](_numbers(series, op), float(operand)))


def math(series: SeriesSet, name: str, base: float | None = None) -> SeriesSet:
    """`abs ceil floor round sqrt ln log2 log10`, or `logN` with `base`."""
    values = _numbers(series, name)
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "logN":
            if base is None or base <= 0 or base == 1:
                raise BadRequest(f"logN needs a positive base other than 1, got {base!r}")
            return with_values(series, np.log(values) / np.log(base))
        if name not in MATH:
            raise BadRequest(f"unknown function {name!r}; expected one of "
                             f"{', '.join([*MATH, 'logN'])}")
        return with_values(series, MATH[name](values))


def compare(series: SeriesSet, op: str, operand: float) -> SeriesSet:
    """Keep only the points whose value compares true with `operand`."""
    if op not in COMPARISONS:
        raise BadRequest(f"unknown comparison {op!r}; expected one of {', '.join(COMPARISONS)}")
    return subset(series, COMPARISONS[op](_numbers(series, op), float(operand)))


def clamp(series: SeriesSet, *, low: float | None = None, high: float | None = None
          ) -> SeriesSet:
    """TSL's maxWith(low) / minWith(high): values below `low` become `low`, above `high`,
    `high`."""
    return with_values(series, np.clip(_numbers(series, "a clamp"), low, high))


def finite(series: SeriesSet) -> SeriesSet:
    """Drop NaN and infinite values."""
    return subset(series, np.isfinite(_numbers(series, "finite")))


def shift(series: SeriesSet, by_ns: int) -> SeriesSet:
    return SeriesSet(series.names, series.labels, series.timestamps + int(by_ns),
                     series.values, series.offsets)


def rate(series: SeriesSet, per_ns: int = NS_PER_S) -> SeriesSet:
    """The change per `per_ns` (default: per second) from each point's predecessor; the first
    point of a series has none and is dropped. Counter resets are not treated specially."""
    values = _numbers(series, "rate")
    keep_mask = np.ones(series.points, dtype=bool)
    keep_mask[series.offsets[:-1][np.diff(series.offsets) > 0]] = False
    rates = np.full(series.points, np.nan)
    if series.points > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            rates[1:] = (np.diff(values) / np.diff(series.timestamps)) * per_ns
    return subset(with_values(series, rates), keep_mask)


def keep(series: SeriesSet, count: int, *, last: bool = True) -> SeriesSet:
    """The last (or first) `count` points of each series (fewer if it has fewer)."""
    if count < 0:
        raise BadRequest(f"cannot keep {count} points; give a count of 0 or more")
    ids = series.series_ids()
    position = np.arange(series.points) - series.offsets[ids]
    sizes = np.diff(series.offsets)[ids]
    return subset(series, position >= sizes - count if last else position < count)


TIME_PARTS = ("minute", "hour", "day", "weekday", "month", "year", "timestamp")


def time_part(series: SeriesSet, part: str) -> SeriesSet:
    """Replace each value by a UTC part of its time: minute 0-59, hour 0-23, day of month
    1-31, ISO weekday 1 (Monday) to 7, month 1-12, year, or the timestamp in epoch ms."""
    stamps = series.timestamps
    if part == "timestamp":
        return with_values(series, (stamps // NS_PER_MS).astype(np.float64))
    moments = stamps.astype("datetime64[ns]")
    days = moments.astype("datetime64[D]")
    extract: dict[str, Callable[[], Array]] = {
        "minute": lambda: (moments.astype("datetime64[m]").astype(np.int64) % 60),
        "hour": lambda: (moments.astype("datetime64[h]").astype(np.int64) % 24),
        "day": lambda: (days - days.astype("datetime64[M]")).astype(np.int64) + 1,
        "weekday": lambda: (days.astype(np.int64) + 3) % 7 + 1,  # 1970-01-01 was a Thursday
        "month": lambda: moments.astype("datetime64[M]").astype(np.int64) % 12 + 1,
        "year": lambda: moments.astype("datetime64[Y]").astype(np.int64) + 1970,
    }
    if part not in extract:
        raise BadRequest(f"unknown time part {part!r}; expected one of {', '.join(TIME_PARTS)}")
    return with_values(series, extract[part]().astype(np.float64))
