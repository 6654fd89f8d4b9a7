"""Aggregators over segments of one flat array: the reduction under bucketize, group and window.

A segment is a run of consecutive points `values[starts[i]:starts[i + 1]]` (the last one ends at
the array's end), in time order. Every aggregator reduces all segments at once with numpy
(`ufunc.reduceat`, gathers, one lexsort for order statistics); only `join`, which builds strings,
loops per segment.

Order statistics follow numpy and pandas: `median` averages the two middle values of an even
count, `percentile p` interpolates linearly between the closest ranks. `stddev` and `stdvar` are
the sample statistics (n - 1), NaN for a single point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.errors import BadRequest

__all__ = ["AGGREGATORS", "Aggregator", "reduce_segments"]

Array = npt.NDArray[Any]
Ints = npt.NDArray[np.int64]
CHUNK = 1 << 16  # elements per pass: scratch arrays stay in cache and are allocated once


@dataclass(frozen=True)
class Aggregator:
    name: str
    param: float | str | None = None  # percentile: p in [0, 100]; join: the separator

    def __post_init__(self) -> None:
        if self.name not in AGGREGATORS:
            raise BadRequest(f"unknown aggregator {self.name!r}; expected one of "
                             f"{', '.join(AGGREGATORS)}")
        if self.name == "percentile" and not (
                isinstance(self.param, int | float) and 0 <= self.param <= 100):
            raise BadRequest(f"percentile needs a number from 0 to 100, got {self.param!r}")


def _sum(values: Array, starts: Ints, _ends: Ints, _agg: Aggregator) -> Array:
    return np.add.reduceat(values, starts)


def _count(_values: Array, starts: Ints, ends: Ints, _agg: Aggregator) -> Array:
    return (ends - starts).astype(np.float64)


def _mean(values: Array, starts: Ints, ends: Ints, _agg: Aggregator) -> Array:
    means: Array = np.add.reduceat(values.astype(np.float64, copy=False), starts)
    # Divided a chunk at a time by float counts: a full-size array of them would cost fresh
    # pages, and int64 divisors are cast slowly.
    counts = np.empty(min(len(starts), CHUNK))
    for first in range(0, len(starts), CHUNK):
        last = min(len(starts), first + CHUNK)
        np.subtract(ends[first:last], starts[first:last], out=counts[:last - first],
                    casting="unsafe")
        means[first:last] /= counts[:last - first]
    return means


def _min(values: Array, starts: Ints, _ends: Ints, _agg: Aggregator) -> Array:
    return np.minimum.reduceat(values, starts)


def _max(values: Array, starts: Ints, _ends: Ints, _agg: Aggregator) -> Array:
    return np.maximum.reduceat(values, starts)


def _first(values: Array, starts: Ints, _ends: Ints, _agg: Aggregator) -> Array:
    return values[starts]


def _last(values: Array, _starts: Ints, ends: Ints, _agg: Aggregator) -> Array:
    return values[ends - 1]


def _delta(values: Array, starts: Ints, ends: Ints, _agg: Aggregator) -> Array:
    return values[ends - 1] - values[starts]


def _and(values: Array, starts: Ints, _ends: Ints, _agg: Aggregator) -> Array:
    return np.logical_and.reduceat(values.astype(bool), starts)


def _or(values: Array, starts: Ints, _ends: Ints, _agg: Aggregator) -> Array:
    return np.logical_or.reduceat(values.astype(bool), starts)


def _variance(values: Array, starts: Ints, ends: Ints) -> Array:
    counts = ends - starts
    floats = values.astype(np.float64)
    means = np.add.reduceat(floats, starts) / counts
    deviations = floats - np.repeat(means, counts)  # two passes: stable for large offsets
    with np.errstate(invalid="ignore", divide="ignore"):
        result: Array = np.add.reduceat(deviations * deviations, starts) / (counts - 1)
    result[counts < 2] = np.nan
    return result


def _stdvar(values: Array, starts: Ints, ends: Ints, _agg: Aggregator) -> Array:
    return _variance(values, starts, ends)


def _stddev(values: Array, starts: Ints, ends: Ints, _agg: Aggregator) -> Array:
    return np.sqrt(_variance(values, starts, ends))


def _quantile(values: Array, starts: Ints, ends: Ints, q: float) -> Array:
    counts = ends - starts
    segment = np.repeat(np.arange(len(starts)), counts)
    ordered = values[np.lexsort((values, segment))].astype(np.float64)
    position = starts + (counts - 1) * q
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, ends - 1)
    fraction = position - low
    result: Array = ordered[low] + (ordered[high] - ordered[low]) * fraction
    return result


def _median(values: Array, starts: Ints, ends: Ints, _agg: Aggregator) -> Array:
    return _quantile(values, starts, ends, 0.5)


def _percentile(values: Array, starts: Ints, ends: Ints, agg: Aggregator) -> Array:
    return _quantile(values, starts, ends, float(agg.param or 0) / 100)


def _join(values: Array, starts: Ints, ends: Ints, agg: Aggregator) -> Array:
    separator = str(agg.param if agg.param is not None else ",")
    texts = values.astype(str)
    return np.array([separator.join(texts[s:e]) for s, e in zip(starts, ends, strict=True)],
                    dtype=object)


Reducer = Callable[[Array, Ints, Ints, Aggregator], Array]
AGGREGATORS: dict[str, Reducer] = {
    "min": _min, "max": _max, "mean": _mean, "first": _first, "last": _last, "sum": _sum,
    "median": _median, "count": _count, "and": _and, "or": _or, "join": _join,
    "percentile": _percentile, "delta": _delta, "stddev": _stddev, "stdvar": _stdvar,
}


def reduce_segments(values: Array, starts: Ints, agg: Aggregator, ends: Ints | None = None
                    ) -> Array:
    """One value per segment; `starts` ascending, the first one 0 when there are values.
    `ends`, where the segments end (the next one's start, then len(values)), when the caller
    has them."""
    if len(starts) == 0:
        return np.empty(0, dtype=np.float64 if values.dtype.kind in "fiub" else object)
    if ends is None:
        ends = np.empty_like(starts)
        ends[:-1] = starts[1:]
        ends[-1] = len(values)
    return AGGREGATORS[agg.name](values, starts, ends, agg)
