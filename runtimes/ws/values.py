"""The values a WarpScript stack holds, and how they print.

| WarpScript | Python |
|---|---|
| LONG, DOUBLE, BOOLEAN, STRING, NULL | int, float, bool, str, None |
| LIST, MAP, SET | list, dict, set |
| MACRO | `Macro` (compiled code, not run) |
| GTS | `Gts` (columns as numpy arrays) |
| mapper, reducer, bucketizer, filter, op | `Function` (a framework's argument) |
| MARK | `MARK` |

A GTS keeps its points in the order they were added, as Warp 10 does (VALUES answers in that
order, and BUCKETIZE leaves the newest bucket first); the frameworks sort a copy when they need
time order. Points added one by one are kept in Python lists and joined into arrays only when
something reads them, so a loop of ADDVALUE is not quadratic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MARK", "Function", "Gts", "Macro", "Mark", "type_name"]

Array = npt.NDArray[Any]


class Mark:
    """What `[`, `{`, `(` and MARK push: the bottom of the items a closing word collects."""

    _instance: Mark | None = None

    def __new__(cls) -> Mark:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MARK"


MARK = Mark()


@dataclass(frozen=True, eq=False)
class Macro:
    """Code between `<%` and `%>`: `ops` as the reader compiled them (see reader.Op)."""

    ops: tuple[Any, ...]
    line: int = 0
    col: int = 0
    early: bool = False  # holds !$name words, bound when the macro is pushed

    def __repr__(self) -> str:
        return f"<% macro of {len(self.ops)} words (line {self.line}) %>"


@dataclass(frozen=True)
class Function:
    """A framework's argument: `mapper.sum`, `5 mapper.add`, `reducer.mean`, `op.add`, …
    `family` is mapper/reducer/bucketizer/filter/op, `name` its word; `params` what it took from
    the stack; `macro` for MACROMAPPER and its kin."""

    family: str
    name: str
    params: tuple[Any, ...] = ()
    macro: Macro | None = None
    # set by a constant mapper: the numpy function over (values, ticks) → values or None
    apply: Callable[..., Any] | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"{self.name}{list(self.params) if self.params else ''}"


class Gts:
    """A Geo Time Series: class name, labels, attributes, points (tick, lat, lon, elev, value),
    and, once bucketized, lastbucket, bucketspan and bucketcount."""

    __slots__ = ("_elev", "_lat", "_lon", "_pending", "_ticks", "_values", "attributes",
                 "bucketcount", "bucketspan", "labels", "lastbucket", "name")

    def __init__(self, name: str = "", labels: dict[str, str] | None = None,
                 attributes: dict[str, str] | None = None,
                 ticks: Array | None = None, values: Array | None = None,
                 locations: tuple[Array, Array, Array] | None = None) -> None:
        self.name = name
        self.labels: dict[str, str] = dict(labels or {})
        self.attributes: dict[str, str] = dict(attributes or {})
        self._ticks: Array = np.empty(0, np.int64) if ticks is None else ticks
        self._values: Array = np.empty(0, np.float64) if values is None else values
        self._lat: Array | None = None
        self._lon: Array | None = None
        self._elev: Array | None = None
        if locations is not None:
            self._lat, self._lon, self._elev = locations
        self._pending: list[tuple[int, float, float, float, Any]] = []
        self.lastbucket = 0
        self.bucketspan = 0
        self.bucketcount = 0

    # -- points --------------------------------------------------------------------------------

    def add(self, tick: int, lat: float, lon: float, elev: float, value: Any) -> None:
        self._pending.append((tick, lat, lon, elev, value))

    def _flush(self) -> None:
        if not self._pending:
            return
        ticks, lats, lons, elevs, values = zip(*self._pending, strict=True)
        self._pending = []
        old = len(self._ticks)
        new_values = column(list(values), self._values.dtype if old else None)
        if old and new_values.dtype != self._values.dtype:  # LONGs meeting a DOUBLE
            self._values = self._values.astype(new_values.dtype)
        self._ticks = np.concatenate((self._ticks, np.asarray(ticks, np.int64)))
        self._values = np.concatenate((self._values, new_values)) if old else new_values
        if self._lat is not None or any(not math.isnan(x) for x in lats + lons + elevs):
            self._lat = _extend(self._lat, old, lats)
            self._lon = _extend(self._lon, old, lons)
            self._elev = _extend(self._elev, old, elevs)

    @property
    def ticks(self) -> Array:
        self._flush()
        return self._ticks

    @property
    def values(self) -> Array:
        self._flush()
        return self._values

    @property
    def locations(self) -> tuple[Array, Array, Array] | None:
        self._flush()
        if self._lat is None or self._lon is None or self._elev is None:
            return None
        return self._lat, self._lon, self._elev

    def set_points(self, ticks: Array, values: Array,
                   locations: tuple[Array, Array, Array] | None = None) -> None:
        self._pending = []
        self._ticks, self._values = ticks, values
        self._lat, self._lon, self._elev = locations if locations is not None else (None,) * 3

    def __len__(self) -> int:
        return len(self._ticks) + len(self._pending)

    # -- copies --------------------------------------------------------------------------------

    def empty_copy(self) -> Gts:
        """Same metadata and bucketization, no points (CLONEEMPTY)."""
        copy = Gts(self.name, self.labels, self.attributes)
        copy.lastbucket, copy.bucketspan, copy.bucketcount = (
            self.lastbucket, self.bucketspan, self.bucketcount)
        return copy

    def copy(self) -> Gts:
        copy = self.empty_copy()
        locations = self.locations
        copy.set_points(self.ticks.copy(), self.values.copy(),
                        None if locations is None else (locations[0].copy(),
                                                        locations[1].copy(),
                                                        locations[2].copy()))
        return copy

    def taken(self, index: Array) -> Gts:
        """A copy holding the points at `index` (positions), in that order."""
        copy = self.empty_copy()
        locations = self.locations
        copy.set_points(self.ticks[index], self.values[index],
                        None if locations is None else (locations[0][index],
                                                        locations[1][index],
                                                        locations[2][index]))
        return copy

    def sorted(self) -> Gts:
        """Itself when its ticks ascend already, else a copy sorted by tick."""
        ticks = self.ticks
        if len(ticks) < 2 or bool(np.all(ticks[1:] >= ticks[:-1])):
            return self
        return self.taken(np.argsort(ticks, kind="stable"))

    @property
    def bucketized(self) -> bool:
        return self.bucketspan > 0

    def point(self, index: int) -> list[Any]:
        """`[tick lat lon elev value]`, as ATINDEX and FOREACH give a point."""
        locations = self.locations
        lat, lon, elev = ((float(a[index]) for a in locations) if locations is not None
                          else (math.nan,) * 3)
        return [int(self.ticks[index]), lat, lon, elev, scalar(self.values[index])]

    def to_json(self) -> dict[str, Any]:
        """The shape Warp 10's stack shows a GTS in: `{c, l, a, la, v: [[tick, value]…]}`."""
        locations = self.locations
        points: list[list[Any]] = []
        for i, (tick, value) in enumerate(zip(self.ticks.tolist(), self.values.tolist(),
                                              strict=True)):
            point: list[Any] = [tick]
            if locations is not None:
                lat, lon, elev = (float(a[i]) for a in locations)
                if not math.isnan(lat):
                    point += [lat, lon]
                if not math.isnan(elev):
                    point.append(int(elev))
            point.append(json_number(value))
            points.append(point)
        return {"c": self.name, "l": dict(self.labels), "a": dict(self.attributes),
                "la": 0, "v": points}

    def __repr__(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in self.labels.items())
        return f"{self.name}{{{labels}}} ({len(self)} points)"


def column(values: list[Any], dtype: np.dtype[Any] | None = None) -> Array:
    """Python values → one typed column. The first value fixes the type of a GTS, as in
    Warp 10, and later values are converted to it (a STRING that is no number counts as 0 in a
    numeric GTS), except that a LONG series meeting a DOUBLE becomes a DOUBLE series."""
    first = values[0]
    kind = dtype.kind if dtype is not None else (
        "b" if isinstance(first, bool) else "i" if isinstance(first, int) else
        "f" if isinstance(first, float) else "O")
    if kind == "i" and any(isinstance(v, float) for v in values):
        kind = "f"
    if kind == "b":
        return np.array([v if isinstance(v, bool) else (v.lower() == "true" if isinstance(v, str)
                                                        else v != 0) for v in values], bool)
    if kind in "if":
        numbers = [_number(v) for v in values]
        if kind == "i":
            try:
                return np.array(numbers, dtype=np.int64)
            except OverflowError:
                return np.array(numbers, dtype=object)
        return np.array(numbers, dtype=np.float64)
    from .jsonstack import text_of
    return np.array([v if isinstance(v, str) else text_of(v) for v in values], dtype=object)


def _number(value: Any) -> int | float:
    if isinstance(value, int | float):
        return int(value) if isinstance(value, bool) else value
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0


def _extend(column_: Array | None, old: int, added: tuple[float, ...]) -> Array:
    base = np.full(old, np.nan) if column_ is None else column_
    return np.concatenate((base, np.asarray(added, np.float64)))


def scalar(value: Any) -> Any:
    """A numpy scalar as the Python value a stack holds."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


_TYPE_NAMES: dict[type, str] = {
    bool: "BOOLEAN", int: "LONG", float: "DOUBLE", str: "STRING", list: "LIST", dict: "MAP",
    set: "SET", Macro: "MACRO", Gts: "GTS", Mark: "MARK", type(None): "NULL",
}


def type_name(value: Any) -> str:
    """TYPEOF's answer: LONG, DOUBLE, BOOLEAN, STRING, LIST, MAP, SET, MACRO, GTS, NULL, …"""
    if isinstance(value, Function):
        return value.family.upper()
    return _TYPE_NAMES.get(type(value), type(value).__name__.upper())
