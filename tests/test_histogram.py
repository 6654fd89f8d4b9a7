"""tsq.histogram against prometheus_client's own Histogram: the same observations scrape the
same samples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tsq.histogram import LabelledHistogram

BUCKETS = (0.005, 0.01, 0.1, 1.0, 60.0)
LOOPS = ("a", "b", "c")


def _samples(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items())), sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples
            if not sample.name.endswith("_created")}  # tsq.metrics turns those off


def _pair() -> tuple[CollectorRegistry, Histogram, CollectorRegistry, LabelledHistogram]:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    return (theirs, Histogram("h_seconds", "doc", ["project", "loop"], buckets=BUCKETS,
                              registry=theirs),
            ours, LabelledHistogram("h_seconds", "doc", ["project", "loop"], BUCKETS, ours))


# values on the bucket edges, beside them, and far past the last
VALUES = st.one_of(st.sampled_from([0.0, *BUCKETS, 0.0050001, 59.999, 1e9]),
                   st.floats(min_value=0, max_value=100, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LOOPS), VALUES), max_size=40),
       st.sets(st.sampled_from(LOOPS)))
def test_scrapes_as_prometheus_client_histogram_does(
        observed: list[tuple[str, float]], removed: set[str]) -> None:
    theirs, reference, ours, histogram = _pair()
    for loop, value in observed:
        reference.labels("p", loop).observe(value)
        histogram.labels("p", loop).observe(value)
    for loop in removed & {loop for loop, _ in observed}:
        reference.remove("p", loop)
        histogram.remove("p", loop)
    assert _samples(ours) == _samples(theirs)


def test_a_value_on_an_edge_counts_in_that_bucket() -> None:
    registry = CollectorRegistry()
    histogram = LabelledHistogram("h_seconds", "doc", ["loop"], BUCKETS, registry)
    histogram.labels("a").observe(0.01)
    buckets = {dict(labels)["le"]: value for name, labels, value in _samples(registry)
               if name == "h_seconds_bucket"}
    assert buckets["0.005"] == 0 and buckets["0.01"] == 1 and buckets["+Inf"] == 1


def test_wrong_labels_and_a_missing_series_are_refused() -> None:
    histogram = LabelledHistogram("h_seconds", "doc", ["project", "loop"], BUCKETS,
                                  CollectorRegistry())
    with pytest.raises(ValueError, match="takes the labels"):
        histogram.labels("only-one")
    with pytest.raises(KeyError):
        histogram.remove("p", "never-observed")
