"""A Prometheus histogram with labels (a series per loop), kept as plain bucket counts.

prometheus_client makes each labelled child of a `Histogram` as an object per bucket, each with
a lock of its own: 200 µs for the first run of a loop to make the three run histograms' children,
so ten thousand loops starting together cost a service two seconds of CPU in their first period,
while their runs wait. Here a series is a list of counts and a sum, observed under one lock, and
turned into the same exposition (`_bucket`, `_count`, `_sum`) only when scraped.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections.abc import Iterator, Sequence

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

__all__ = ["LabelledHistogram"]


class _Series:
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


class LabelledHistogram:
    """What tsq.metrics uses of a prometheus_client `Histogram` with labels: `labels(...)`
    gives a series to `observe`, `remove(...)` drops one; registered on `registry`."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = (*sorted(float(bound) for bound in buckets), math.inf)
        self._edges = [floatToGoString(bound) for bound in self.bounds]  # type: ignore[no-untyped-call]
        self.lock = threading.Lock()
        self._series: dict[tuple[str, ...], _Series] = {}
        registry.register(self)

    def labels(self, *values: str) -> _Series:
        key = tuple(str(value) for value in values)
        if len(key) != len(self.labelnames):
            raise ValueError(f"{self.name} takes the labels {self.labelnames}, not {key}")
        with self.lock:
            found = self._series.get(key)
            if found is None:
                found = self._series[key] = _Series(self)
            return found

    def remove(self, *values: str) -> None:
        """Drop a series (KeyError if there is none, as prometheus_client raises)."""
        with self.lock:
            del self._series[tuple(str(value) for value in values)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self.lock:
            taken = [(key, list(series.counts), series.total)
                     for key, series in self._series.items()]
        for key, counts, total in taken:
            family.add_metric(list(key), list(zip(self._edges, itertools.accumulate(counts),
                                                  strict=True)), total)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
