"""Group: reduce the series of each equivalence class into one series, tick by tick.

`group_by(series, ["dc"], mean)` is Warp 10's REDUCE and PromQL's `avg by (dc)`: series with
the same values of the given labels form a class (a missing label counts as its own value), and
at each timestamp present in the class the values of that timestamp are aggregated. `labels=None`
puts every series in one class; `without=True` groups on every label except the given ones.
The result keeps the labels the class is defined by, and the name its series share (else "").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.kernels.aggregate import Aggregator, reduce_segments
from tsq.series import SeriesSet

__all__ = ["Classes", "Grouping", "classes_of", "group_by"]

Ints = npt.NDArray[np.int64]
Array = npt.NDArray[Any]


@dataclass(frozen=True)
class Grouping:
    """A `group_by` to make later, as a value: what a connector that groups in its back-end is
    asked for (TSL's groupBy right after its sampleBy)."""

    labels: tuple[str, ...] | None  # None: every series in one class
    aggregator: Aggregator
    without: bool = False

    def apply(self, series: SeriesSet) -> SeriesSet:
        return group_by(series, self.labels, self.aggregator, without=self.without)

    def classes(self, series: SeriesSet) -> Classes:
        return classes_of(series, self.labels, self.without)

    def __str__(self) -> str:
        how = "groupWithout" if self.without else "groupBy" if self.labels is not None \
            else "group"
        labels = f"[{', '.join(self.labels)}], " if self.labels is not None else ""
        return f"{how}({labels}{self.aggregator.name})"


@dataclass(frozen=True)
class Classes:
    """The equivalence classes of a SeriesSet's series: each series' class, and each class's
    name (the one its series share, else "") and labels, in the order of their first series."""

    of_series: Ints
    names: tuple[str, ...]
    labels: tuple[dict[str, str], ...]


def classes_of(series: SeriesSet, labels: Sequence[str] | None, without: bool) -> Classes:
    keys: dict[tuple[tuple[str, str], ...], int] = {}
    of_series = np.array([keys.setdefault(key, len(keys))
                          for key in _class_keys(series, labels, without)], dtype=np.int64)
    return Classes(of_series, _class_names(series, of_series, len(keys)),
                   tuple(dict(key) for key in keys))


def group_by(series: SeriesSet, labels: Sequence[str] | None, agg: Aggregator, *,
             without: bool = False) -> SeriesSet:
    classes = classes_of(series, labels, without)
    class_of_series, names, class_labels = classes.of_series, classes.names, classes.labels
    aligned = _aligned(series, class_of_series, len(class_labels), agg)
    if aligned is not None:
        stamps, reduced, counts = aligned
        return SeriesSet(names, class_labels, stamps, reduced,
                         np.concatenate(([0], np.cumsum(counts))).astype(np.int64))
    values, stamps = series.values, series.timestamps
    members = class_of_series[series.series_ids()] if len(series) else np.empty(0, np.int64)
    if values.dtype.kind == "f":
        present = ~np.isnan(values)
        values, stamps, members = values[present], stamps[present], members[present]
    order = np.lexsort((stamps, members))
    values, stamps, members = values[order], stamps[order], members[order]
    change = np.ones(len(order), dtype=bool)
    change[1:] = (members[1:] != members[:-1]) | (stamps[1:] != stamps[:-1])
    starts = np.flatnonzero(change).astype(np.int64)
    reduced = reduce_segments(values, starts, agg)
    counts = np.bincount(members[starts], minlength=len(class_labels))
    return SeriesSet(names, class_labels, stamps[starts], reduced,
                     np.concatenate(([0], np.cumsum(counts))).astype(np.int64))


def _class_names(series: SeriesSet, class_of_series: Ints, classes: int) -> tuple[str, ...]:
    names = []
    for index in range(classes):
        member_names = {series.names[i] for i in np.flatnonzero(class_of_series == index)}
        names.append(member_names.pop() if len(member_names) == 1 else "")
    return tuple(names)


def _aligned(series: SeriesSet, class_of_series: Ints, classes: int, agg: Aggregator
             ) -> tuple[Ints, Array, Ints] | None:
    """The fast path when every series has the same timestamps and no NaN (bucketized data):
    reduce down the columns of a (series, tick) matrix, no sort of the points needed."""
    rows = len(series)
    if rows == 0 or series.points % rows or series.values.dtype.kind not in "fi":
        return None
    width = series.points // rows
    if not np.array_equal(np.diff(series.offsets), np.full(rows, width)):
        return None
    grid = series.timestamps.reshape(rows, width)
    if width == 0 or not (grid == grid[0]).all() or np.isnan(series.values).any():
        return None
    order = np.argsort(class_of_series, kind="stable")
    class_starts = np.searchsorted(class_of_series[order], np.arange(classes))
    matrix = series.values.reshape(rows, width)
    if agg.name in ROW_REDUCERS and matrix.dtype.kind == "f":  # a whole row at a time
        ordered = matrix if np.array_equal(order, np.arange(rows)) else matrix[order]
        reduced = ROW_REDUCERS[agg.name].reduceat(ordered, class_starts, axis=0)
        if agg.name == "mean":
            reduced /= np.diff(np.append(class_starts, rows))[:, None]
        return np.tile(grid[0], classes), reduced.ravel(), np.full(classes, width, np.int64)
    columns = matrix[order].T.ravel()  # tick-major: a class's
    starts = (np.arange(width)[:, None] * rows + class_starts[None, :]).ravel()  # rows adjoin
    reduced = reduce_segments(columns, starts.astype(np.int64), agg).reshape(width, classes)
    return (np.tile(grid[0], classes), reduced.T.ravel(),
            np.full(classes, width, dtype=np.int64))


# The aggregators the aligned path reduces a whole row at a time (a class's series are rows)
ROW_REDUCERS = {"sum": np.add, "mean": np.add, "min": np.minimum, "max": np.maximum}


def _class_keys(series: SeriesSet, labels: Sequence[str] | None,
                without: bool) -> list[tuple[tuple[str, str], ...]]:
    if labels is None:
        return [()] * len(series)
    chosen = set(labels)
    keys = []
    for own in series.labels:
        names = [k for k in own if k not in chosen] if without else [k for k in labels if k in own]
        keys.append(tuple(sorted((k, own[k]) for k in names)))
    return keys
