"""Choosing series: sort and top/bottom by an aggregate, filters by labels, name and last value.

These work per series, never per point: a score per series comes from one segmented reduction
over the whole set, and the result is `SeriesSet.take` of the chosen indices.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.errors import BadRequest
from tsq.kernels.aggregate import Aggregator, reduce_segments
from tsq.kernels.maps import COMPARISONS
from tsq.regex import RegexError, compile_user
from tsq.selector import Matcher
from tsq.series import SeriesSet

__all__ = ["filter_by_labels", "filter_by_last_value", "filter_by_name",
           "filter_without_labels", "scores", "sort_by", "top"]

Array = npt.NDArray[Any]
MEAN = Aggregator("mean")  # the score TSL sorts by when none is given
LAST_VALUE_OPERATORS = {"<=": "lessOrEqual", "<": "lessThan", "!=": "notEqual",
                        ">=": "greaterOrEqual", ">": "greaterThan", "=": "equal"}


def scores(series: SeriesSet, agg: Aggregator) -> Array:
    """One value per series (NaN for an empty series), NaN points left out."""
    values, ids = series.values, series.series_ids()
    if values.dtype.kind == "f":
        present = ~np.isnan(values)
        values, ids = values[present], ids[present]
    result = np.full(len(series), np.nan)
    if len(values):
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1]))).astype(np.int64)
        result[ids[starts]] = reduce_segments(values, starts, agg).astype(np.float64)
    return result


def sort_by(series: SeriesSet, agg: Aggregator = MEAN, *,
            descending: bool = False) -> SeriesSet:
    """Series ordered by their score; ties keep their order, series without a score go last."""
    score = scores(series, agg)
    key = np.where(np.isnan(score), np.inf, -score if descending else score)
    return series.take(np.argsort(key, kind="stable"))


def top(series: SeriesSet, count: int, agg: Aggregator = MEAN, *,
        bottom: bool = False) -> SeriesSet:
    """The `count` series with the highest (or, with `bottom`, lowest) score."""
    if count <= 0:
        raise BadRequest(f"topN and bottomN need a count above 0, got {count}")
    ordered = sort_by(series, agg, descending=not bottom)
    return ordered.take(np.arange(min(count, len(ordered))))


def filter_by_labels(series: SeriesSet, matchers: Sequence[Matcher]) -> SeriesSet:
    return series.take([i for i, labels in enumerate(series.labels)
                        if all(m.matches(labels.get(m.label)) for m in matchers)])


def filter_without_labels(series: SeriesSet, keys: Sequence[str]) -> SeriesSet:
    """The series that have none of the label `keys`."""
    return series.take([i for i, labels in enumerate(series.labels)
                        if not any(key in labels for key in keys)])


def filter_by_name(series: SeriesSet, selector: str) -> SeriesSet:
    """`=name` (exact) or `~regex` (the whole name), as TSL's filterByName."""
    if selector[:1] == "=":
        return series.take([i for i, n in enumerate(series.names) if n == selector[1:]])
    if selector[:1] == "~":
        try:
            pattern = compile_user(selector[1:])
        except RegexError as exc:
            raise BadRequest(f"bad regular expression {selector[1:]!r}: {exc}") from None
        return series.take([i for i, n in enumerate(series.names) if pattern.fullmatch(n)])
    raise BadRequest(f"filterByName needs `=name` or `~regex`, got {selector!r}")


def filter_by_last_value(series: SeriesSet, condition: str) -> SeriesSet:
    """Series whose last value meets `condition`, e.g. `>=42` (<= < != >= > =)."""
    found = re.fullmatch(r"\s*(<=|>=|!=|<|>|=)\s*(\S+)\s*", condition)
    if found is None:
        raise BadRequest(f"filterByLastValue needs an operator and a number like '>=42', "
                         f"got {condition!r}")
    try:
        threshold = float(found.group(2))
    except ValueError:
        raise BadRequest(f"filterByLastValue: {found.group(2)!r} is not a number") from None
    last = scores(series, Aggregator("last"))
    with np.errstate(invalid="ignore"):
        keep = COMPARISONS[LAST_VALUE_OPERATORS[found.group(1)]](last, threshold)
    return series.take(np.flatnonzero(keep & ~np.isnan(last)))
