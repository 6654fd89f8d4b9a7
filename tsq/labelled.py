"""Prometheus counters, gauges and histograms with labels (a series per loop), kept as plain
numbers.

prometheus_client makes each labelled child as objects of its own: a value with a lock (a
histogram: one per bucket), a gauge's child through a constructor that reads the environment.
That cost 200 µs at a loop's first run, so ten thousand loops starting together spent two
seconds of the service's CPU in their first period while their runs waited. Here a series is a
number or a list of bucket counts, changed under its metric's one lock, and turned into the same
exposition only when scraped (tests/test_labelled.py holds it to prometheus_client's own).
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

__all__ = ["LabelledCounter", "LabelledGauge", "LabelledHistogram"]

class _Series(Protocol):
    def add_to(self, family: Any, labels: list[str]) -> None:
        """Add this series' samples to `family` (under its metric's lock)."""


S = TypeVar("S", bound=_Series)


class _Labelled(Generic[S]):
    """What tsq.metrics uses of a prometheus_client metric with labels: `labels(...)` gives a
    series to change, `remove(...)` drops one; registered on `registry`."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry, family: Callable[..., Metric],
                 new_series: Callable[[], S]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.lock = threading.Lock()
        self._family = family
        self._new_series = new_series
        self._series: dict[tuple[str, ...], S] = {}
        registry.register(self)

    def labels(self, *values: str) -> S:
        key = tuple(str(value) for value in values)
        if len(key) != len(self.labelnames):
            raise ValueError(f"{self.name} takes the labels {self.labelnames}, not {key}")
        with self.lock:
            found = self._series.get(key)
            if found is None:
                found = self._series[key] = self._new_series()
            return found

    def remove(self, *values: str) -> None:
        """Drop a series (KeyError if there is none, as prometheus_client raises)."""
        with self.lock:
            del self._series[tuple(str(value) for value in values)]

    def collect(self) -> Iterator[Metric]:
        family = self.describe_family()
        with self.lock:
            for key, series in self._series.items():
                series.add_to(family, list(key))
        yield family

    def describe(self) -> Iterator[Metric]:
        yield self.describe_family()

    def describe_family(self) -> Metric:
        return self._family(self.name, self.documentation, labels=self.labelnames)


class _Number:
    __slots__ = ("lock", "value")

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        with self.lock:
            self.value += amount

    def set(self, value: float) -> None:
        with self.lock:
            self.value = float(value)

    def add_to(self, family: Any, labels: list[str]) -> None:
        family.add_metric(labels, self.value)


class _Numbers(_Labelled[_Number]):
    """A metric whose series are single numbers, exposed as a `family`."""

    family: type[Metric]

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry) -> None:
        super().__init__(name, documentation, labelnames, registry, self.family,
                         lambda: _Number(self.lock))


class LabelledCounter(_Numbers):
    """A counter (`inc`); exposed as `<name>_total`, as prometheus_client does."""

    family = CounterMetricFamily


class LabelledGauge(_Numbers):
    """A gauge (`set`)."""

    family = GaugeMetricFamily


class _Buckets:
    __slots__ = ("counts", "histogram", "total")

    def __init__(self, histogram: LabelledHistogram) -> None:
        self.histogram = histogram
        self.counts = [0] * len(histogram.bounds)  # per bucket, not cumulative
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count `value` in the first bucket whose upper bound is at least it."""
        bucket = bisect.bisect_left(self.histogram.bounds, value)
        with self.histogram.lock:
            self.counts[bucket] += 1
            self.total += value

    def add_to(self, family: Any, labels: list[str]) -> None:
        cumulative = itertools.accumulate(self.counts)
        family.add_metric(labels, list(zip(self.histogram.edges, cumulative, strict=True)),
                          self.total)


class LabelledHistogram(_Labelled[_Buckets]):
    """A histogram (`observe`) with upper bounds `buckets` (and +Inf)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self.bounds = (*sorted(float(bound) for bound in buckets), math.inf)
        self.edges = [floatToGoString(bound)  # type: ignore[no-untyped-call]
                      for bound in self.bounds]
        super().__init__(name, documentation, labelnames, registry, HistogramMetricFamily,
                         lambda: _Buckets(self))
