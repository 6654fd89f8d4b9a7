"""SeriesSet: many time series in memory as a few flat arrays.

All series are concatenated: `timestamps` (int64 epoch nanoseconds) and `values` hold every
point, and `offsets[i]:offsets[i + 1]` is series i, like an Arrow list array. Names and label
dicts are per series. Kernels (`tsq.kernels`) work on these arrays whole, never a Python loop per
point. Values are float64 first of all; int64, bool and str (object) arrays are kept as they are
for the functions that need them. pandas, Arrow and JSON are import/export formats.

A SeriesSet from `from_series` or `normalized()` has every series sorted by time with at most one
point per timestamp (the last written wins, as in InfluxDB and Prometheus); kernels assume that.
pandas and JSON are import/export formats, not the engine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.collector import collector_paused

__all__ = ["FIRST_NS", "LAST_NS", "NS_PER_MS", "Series", "SeriesSet"]

NS_PER_MS = 1_000_000
# The instants a point can have: int64 nanoseconds without its two extremes, which a read uses
# for "no bound" (a point at either could be stored but never read back). 1677-09-21T00:12:43Z
# to 2262-04-11T23:47:16Z, the range numpy's and pandas' datetime64[ns] hold too.
FIRST_NS, LAST_NS = -(2**63) + 1, 2**63 - 2
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Series:
    """One series of a SeriesSet: views into the set's arrays, not copies."""

    name: str
    labels: Mapping[str, str]
    timestamps: Ints
    values: npt.NDArray[Any]


@dataclass(frozen=True, eq=False)
class SeriesSet:
    names: tuple[str, ...]
    labels: tuple[Mapping[str, str], ...]
    timestamps: Ints
    values: npt.NDArray[Any]
    offsets: Ints  # len(names) + 1 entries, offsets[0] == 0, offsets[-1] == len(timestamps)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.labels) or len(self.offsets) != len(self.names) + 1:
            raise ValueError("a SeriesSet needs one name, one label set and one offset per "
                             "series, plus a final offset")
        if len(self.timestamps) != len(self.values) or int(self.offsets[-1]) != len(self.values):
            raise ValueError("timestamps, values and the last offset must all count the points")

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def empty(cls) -> SeriesSet:
        return cls((), (), np.empty(0, np.int64), np.empty(0, np.float64), np.zeros(1, np.int64))

    @classmethod
    def from_series(cls, series: Iterable[tuple[str, Mapping[str, str], Any, Any]]
                    ) -> SeriesSet:
        """From `(name, labels, timestamps_ns, values)` tuples; sorted and de-duplicated."""
        items = list(series)
        if not items:
            return cls.empty()
        stamps = [np.asarray(ts, dtype=np.int64) for _, _, ts, _ in items]
        values = [np.asarray(vs) for _, _, _, vs in items]
        for (name, _, _, _), ts, vs in zip(items, stamps, values, strict=True):
            if ts.shape != vs.shape or ts.ndim != 1:
                raise ValueError(f"series {name!r}: timestamps and values must be 1-D arrays of "
                                 f"the same length ({ts.shape} and {vs.shape} given)")
        lengths = np.array([len(ts) for ts in stamps], dtype=np.int64)
        return cls(
            tuple(name for name, _, _, _ in items),
            tuple(dict(labels) for _, labels, _, _ in items),
            np.concatenate(stamps),
            np.concatenate(values) if values else np.empty(0, np.float64),
            np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
        ).normalized()

    def normalized(self) -> SeriesSet:
        """Each series sorted by time; of points sharing a timestamp, the last one stays."""
        ids = self.series_ids()
        if len(ids) < 2:
            return self
        ordered = bool(np.all((ids[1:] != ids[:-1]) | (self.timestamps[1:] > self.timestamps[:-1])))
        if ordered:
            return self
        order = np.lexsort((np.arange(len(ids)), self.timestamps, ids))  # stable: last stays last
        ids, stamps = ids[order], self.timestamps[order]
        keep = np.ones(len(order), dtype=bool)
        keep[:-1] = (ids[:-1] != ids[1:]) | (stamps[:-1] != stamps[1:])
        order = order[keep]
        counts = np.bincount(self.series_ids()[order], minlength=len(self.names))
        return SeriesSet(self.names, self.labels, self.timestamps[order], self.values[order],
                         np.concatenate(([0], np.cumsum(counts))).astype(np.int64))

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.names)

    @property
    def points(self) -> int:
        return len(self.timestamps)

    def series_ids(self) -> Ints:
        """The index of the series each point belongs to."""
        return np.repeat(np.arange(len(self.names), dtype=np.int64), np.diff(self.offsets))

    def __getitem__(self, index: int) -> Series:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return Series(self.names[index], self.labels[index], self.timestamps[start:end],
                      self.values[start:end])

    def __iter__(self) -> Iterator[Series]:
        return (self[i] for i in range(len(self)))

    def take(self, indices: Sequence[int] | Ints) -> SeriesSet:
        """The series at `indices`, in that order."""
        picked = np.asarray(indices, dtype=np.int64)
        counts = np.diff(self.offsets)[picked]
        points = (np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1])
                                  for i in picked]) if len(picked) else np.empty(0, np.int64))
        return SeriesSet(tuple(self.names[i] for i in picked),
                         tuple(self.labels[i] for i in picked),
                         self.timestamps[points], self.values[points],
                         np.concatenate(([0], np.cumsum(counts))).astype(np.int64))

    # -- conversions ---------------------------------------------------------------------------

    def to_json(self) -> list[dict[str, Any]]:
        """`[{name, labels, timestamps (epoch ms), values}]`, the API's shape. The columns
        become lists once and each series takes its slice: an answer of 10,000 short series
        costs no numpy call per series."""
        with collector_paused():
            stamps = (self.timestamps // NS_PER_MS).tolist()
            listed = self.values.tolist()
            if self.values.dtype.kind != "f" or np.isnan(self.values).any():  # NaN: null
                listed = [None if isinstance(v, float) and math.isnan(v) else v for v in listed]
            bounds = self.offsets.tolist()
            return [{"name": name, "labels": dict(labels), "timestamps": stamps[start:end],
                     "values": listed[start:end]}
                    for name, labels, start, end in zip(self.names, self.labels, bounds,
                                                        bounds[1:], strict=False)]

    @classmethod
    def joined(cls, sets: Sequence[SeriesSet]) -> SeriesSet:
        """The series of `sets`, one after another (a series in two sets is listed twice)."""
        if not sets:
            return cls.empty()
        if len(sets) == 1:
            return sets[0]
        starts = np.cumsum([0] + [s.points for s in sets[:-1]])
        return cls(tuple(n for s in sets for n in s.names),
                   tuple(dict(labels) for s in sets for labels in s.labels),
                   np.concatenate([s.timestamps for s in sets]),
                   np.concatenate([s.values for s in sets]),
                   np.concatenate([[0], *(s.offsets[1:] + start
                                          for s, start in zip(sets, starts, strict=True))]
                                  ).astype(np.int64))

    @classmethod
    def merged(cls, sets: Sequence[SeriesSet]) -> SeriesSet:
        """The points of `sets` as if written one set after another: a series in several sets
        is one series, and of the points sharing one of its timestamps the last one stays."""
        if len(sets) == 1:
            return sets[0]
        joined = cls.joined(sets)
        of_key: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        firsts: list[int] = []
        entry = np.empty(len(joined.names), np.int64)
        for at, (name, labels) in enumerate(zip(joined.names, joined.labels, strict=True)):
            known = of_key.setdefault((name, tuple(sorted(labels.items()))), len(of_key))
            if known == len(firsts):
                firsts.append(at)
            entry[at] = known
        if len(of_key) == len(joined.names):
            return joined
        point = np.repeat(entry, np.diff(joined.offsets))
        # grouped by series, each one's points in the order of the sets (a stable sort, a radix
        # sort on 16 bits where the series are that few); `normalized` then sorts by time
        order = np.argsort(point.astype(np.uint16) if len(of_key) <= 1 << 16 else point,
                           kind="stable")
        counts = np.bincount(point, minlength=len(of_key))
        return cls(tuple(joined.names[at] for at in firsts),
                   tuple(joined.labels[at] for at in firsts),
                   joined.timestamps[order], joined.values[order],
                   np.concatenate(([0], np.cumsum(counts))).astype(np.int64)).normalized()

    @classmethod
    def from_json(cls, items: Iterable[Mapping[str, Any]]) -> SeriesSet:
        return cls.from_series(
            (str(item["name"]), dict(item.get("labels") or {}),
             np.asarray(item["timestamps"], dtype=np.int64) * NS_PER_MS,
             np.asarray([np.nan if v is None else v for v in item["values"]]))
            for item in items)

    def to_pandas(self) -> Any:
        """A long DataFrame: `name`, one column per label key, `time` (UTC), `value`."""
        import pandas as pd

        ids = self.series_ids()
        frame: dict[str, Any] = {"name": np.asarray(self.names, dtype=object)[ids]}
        for key in sorted({k for labels in self.labels for k in labels}):
            column = np.asarray([labels.get(key) for labels in self.labels], dtype=object)
            frame[key] = column[ids]
        frame["time"] = pd.to_datetime(self.timestamps, unit="ns", utc=True)
        frame["value"] = self.values
        return pd.DataFrame(frame)

    def to_arrow(self) -> Any:
        """An Arrow table of the long form: `name`, one column per label key, `time`
        (timestamp[ns, UTC]) and `value`; the numeric columns are not copied."""
        import pyarrow as pa

        ids = pa.array(self.series_ids())
        columns: dict[str, Any] = {"name": pa.array(self.names, pa.string()).take(ids)}
        for key in sorted({k for labels in self.labels for k in labels}):
            per_series = pa.array([labels.get(key) for labels in self.labels], pa.string())
            columns[key] = per_series.take(ids)
        columns["time"] = pa.array(self.timestamps, pa.timestamp("ns", tz="UTC"))
        columns["value"] = pa.array(self.values) if self.values.dtype.kind != "O" else \
            pa.array(self.values.tolist())
        return pa.table(columns)

    @classmethod
    def from_arrow(cls, table: Any, *, name: str = "name", time: str = "time",
                   value: str = "value", labels: Sequence[str] | None = None) -> SeriesSet:
        """From an Arrow table of the long form (as `to_arrow` writes it)."""
        return cls.from_pandas(table.to_pandas(), name=name, time=time, value=value,
                               labels=labels)

    @classmethod
    def from_pandas(cls, frame: Any, *, name: str = "name", time: str = "time",
                    value: str = "value", labels: Sequence[str] | None = None) -> SeriesSet:
        """From a long DataFrame; every column other than name/time/value is a label unless
        `labels` says which are."""
        import pandas as pd

        keys = list(labels) if labels is not None else [
            c for c in frame.columns if c not in (name, time, value)]
        stamps = pd.to_datetime(frame[time], utc=True).to_numpy(dtype="datetime64[ns]")
        grouped = frame.assign(_t=stamps.astype(np.int64)).groupby([name, *keys], sort=True,
                                                                   dropna=False)
        series = []
        for key, part in grouped:
            parts = key if isinstance(key, tuple) else (key,)
            series.append((str(parts[0]),
                           {k: str(v) for k, v in zip(keys, parts[1:], strict=True)
                            if not pd.isna(v)},
                           part["_t"].to_numpy(), part[value].to_numpy()))
        return cls.from_series(series)
