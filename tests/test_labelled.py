"""tsq.labelled against prometheus_client's own metrics: the same changes scrape the same
samples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tsq.labelled import LabelledCounter, LabelledGauge, LabelledHistogram

BUCKETS = (0.005, 0.01, 0.1, 1.0, 60.0)
LOOPS = ("a", "b", "c")
LABELS = ["project", "loop"]

Samples = set[tuple[str, tuple[tuple[str, str], ...], float]]


def _samples(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items())), sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples
            if not sample.name.endswith("_created")}  # tsq.metrics turns those off


# values on the bucket edges, beside them, and far past the last
VALUES = st.one_of(st.sampled_from([0.0, *BUCKETS, 0.0050001, 59.999, 1e9]),
                   st.floats(min_value=0, max_value=100, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LOOPS), VALUES), max_size=40),
       st.sets(st.sampled_from(LOOPS)))
def test_scrapes_as_prometheus_client_does(observed: list[tuple[str, float]],
                                           removed: set[str]) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    pairs = [
        (Histogram("h_seconds", "doc", LABELS, buckets=BUCKETS, registry=theirs),
         LabelledHistogram("h_seconds", "doc", LABELS, BUCKETS, ours), "observe"),
        (Counter("c", "doc", LABELS, registry=theirs),
         LabelledCounter("c", "doc", LABELS, ours), "inc"),
        (Gauge("g", "doc", LABELS, registry=theirs),
         LabelledGauge("g", "doc", LABELS, ours), "set"),
    ]
    for loop, value in observed:
        for reference, metric, change in pairs:
            getattr(reference.labels("p", loop), change)(value)
            getattr(metric.labels("p", loop), change)(value)
    for loop in removed & {loop for loop, _ in observed}:
        for reference, metric, _ in pairs:
            reference.remove("p", loop)
            metric.remove("p", loop)
    assert _samples(ours) == _samples(theirs)


def test_a_value_on_an_edge_counts_in_that_bucket() -> None:
    registry = CollectorRegistry()
    histogram = LabelledHistogram("h_seconds", "doc", ["loop"], BUCKETS, registry)
    histogram.labels("a").observe(0.01)
    buckets = {dict(labels)["le"]: value for name, labels, value in _samples(registry)
               if name == "h_seconds_bucket"}
    assert buckets["0.005"] == 0 and buckets["0.01"] == 1 and buckets["+Inf"] == 1


def test_wrong_labels_and_a_missing_series_are_refused() -> None:
    counter = LabelledCounter("c", "doc", LABELS, CollectorRegistry())
    with pytest.raises(ValueError, match="takes the labels"):
        counter.labels("only-one")
    with pytest.raises(KeyError):
        counter.remove("p", "never-changed")
