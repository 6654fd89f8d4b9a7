"""The throwaway Prometheus 2.42 of benchmarks/prometheus.py, the differential reference for TSL's
PromQL output: OpenMetrics text from `to_openmetrics` goes through promtool into a real server,
and PromQL answers over it are the values worked out by hand."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from benchmarks.prometheus import available, prometheus, query, query_range, to_openmetrics

needs_prometheus = pytest.mark.skipif(
    not available(),
    reason="Prometheus 2.42 is not installed here (apt-get install prometheus; .ci/run installs it)")

T0 = 1_609_459_200  # 2021-01-01T00:00:00Z: older than any retention counted from today
STAMPS = np.arange(T0, T0 + 600, 10)  # one point every 10 s for 10 minutes, the last at T0+590
N = np.arange(60)
CPU = {("gra", "a"): N * 1.5, ("rbx", "b"): 100.0 - N, ("gra", "c"): (N * N % 7) + 0.25}
ODD = {"path": 'C:\\tmp\\"x"', "note": "line 1\nline 2", "plain": ""}


def dataset() -> str:
    rows: list[tuple[str, dict[str, str], np.ndarray, np.ndarray]] = [
        ("cpu", {"dc": dc, "host": host}, STAMPS, values) for (dc, host), values in CPU.items()]
    rows.append(("odd", ODD, np.array([T0]), np.array([7])))
    # Out of order, and split over two rows: to_openmetrics must sort and merge them.
    rows.append(("shuffled", {}, np.array([T0 + 20, T0]), np.array([3.0, 1.0])))
    rows.append(("shuffled", {}, np.array([T0 + 10]), np.array([2.0])))
    # Millisecond stamps near 1970 that a naive seconds text would lose a millisecond on, and
    # the values OpenMetrics spells NaN, +Inf, -Inf.
    rows.append(("ms", {}, np.array([1.001, 1.003, 2.005, 0.001]),
                 np.array([1.0, np.nan, np.inf, -np.inf])))
    return to_openmetrics(rows)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with prometheus(dataset()) as url:
        yield url


def values(result: list[dict]) -> dict[str, list[tuple[float, float]]]:
    return {"/".join(r["metric"].values()): [(float(t), float(v)) for t, v in r["values"]]
            for r in result}


@pytest.mark.slow
@needs_prometheus
def test_avg_by_dc_over_a_range(base: str) -> None:
    found = values(query_range(base, "avg by (dc) (cpu)", T0, T0 + 590, 60))
    steps = np.arange(0, 60, 6)  # samples at T0, T0+60, ...: the step lands on each
    assert found == {
        "gra": [(T0 + 10 * i, (CPU["gra", "a"][i] + CPU["gra", "c"][i]) / 2) for i in steps],
        "rbx": [(T0 + 10 * i, CPU["rbx", "b"][i]) for i in steps],
    }


@pytest.mark.slow
@needs_prometheus
def test_a_step_between_samples_takes_the_one_before(base: str) -> None:
    found = values(query_range(base, 'cpu{host="b"}', T0 + 5, T0 + 125, 30))
    assert found == {"cpu/rbx/b": [(T0 + 5 + 30 * k, 100.0 - (5 + 30 * k) // 10)
                                   for k in range(5)]}


@pytest.mark.slow
@needs_prometheus
def test_sum_at_an_instant_is_the_sum_of_the_last_values(base: str) -> None:
    last = sum(float(v[-1]) for v in CPU.values())
    [answer] = query(base, "sum(cpu)", T0 + 600)
    assert answer["metric"] == {}
    assert answer["value"] == [T0 + 600, format(last, "g")]
    # The lookback is 5 minutes, closed on the left: the last sample (T0+590) still counts at
    # exactly T0+890, and not a millisecond later.
    assert float(query(base, "sum(cpu)", T0 + 890)[0]["value"][1]) == last
    assert query(base, "sum(cpu)", T0 + 890.001) == []


@pytest.mark.slow
@needs_prometheus
def test_label_values_with_quotes_backslashes_and_newlines_round_trip(base: str) -> None:
    [answer] = query(base, "odd", T0)
    # An empty label value is no label at all in Prometheus.
    assert answer["metric"] == {"__name__": "odd", "path": 'C:\\tmp\\"x"', "note": "line 1\nline 2"}
    assert answer["value"] == [T0, "7"]


@pytest.mark.slow
@needs_prometheus
def test_rows_are_sorted_and_merged_and_milliseconds_kept(base: str) -> None:
    [shuffled] = query(base, "shuffled[1m]", T0 + 20)
    assert shuffled["values"] == [[T0, "1"], [T0 + 10, "2"], [T0 + 20, "3"]]
    [ms] = query(base, "ms[10s]", 3)
    assert ms["values"] == [[0.001, "-Inf"], [1.001, "1"], [1.003, "NaN"], [2.005, "+Inf"]]


@pytest.mark.slow
@needs_prometheus
def test_prometheus_errors_are_raised(base: str) -> None:
    with pytest.raises(RuntimeError, match="parse error"):
        query(base, "sum(cpu", T0)
    with pytest.raises(RuntimeError, match="scalar"):
        query(base, "scalar(sum(cpu))", T0)


@pytest.mark.slow
@needs_prometheus
def test_promtool_rejection_is_raised() -> None:
    with pytest.raises(RuntimeError, match="EOF"), prometheus("cpu 1 1\n"):
        pass


def test_openmetrics_text() -> None:
    text = to_openmetrics([
        ("a", {"z": "1", "b": 'q"\\'}, np.array([20, 10]), np.array([2.5, 1.0])),
        ("b:c", {}, np.array([1.5]), np.array([3])),
        ("a", {"b": "2"}, np.array([10]), np.array([4.0])),
        ("a", {"b": "empty"}, np.array([], dtype=np.int64), np.array([])),
    ])
    assert text == ('# TYPE a gauge\n'
                    'a{b="q\\"\\\\",z="1"} 1.0 10\n'
                    'a{b="q\\"\\\\",z="1"} 2.5 20\n'
                    'a{b="2"} 4.0 10\n'
                    '# TYPE b:c gauge\n'
                    'b:c 3 1.5\n'
                    '# EOF\n')


@pytest.mark.parametrize(("row", "message"), [
    (("a", {}, np.array([-1, 5]), np.array([1, 2])), "before 1970"),
    (("a", {}, np.array([5.0, 5.0001]), np.array([1, 2])), "two samples at 5 s"),
    (("a", {}, np.array([1, 2]), np.array([1])), "timestamps for"),
    (("a", {}, np.array([1.0, np.nan]), np.array([1, 2])), "not a finite number"),
    (("a-b", {}, np.array([1]), np.array([1])), "metric name"),
    (("a", {"1x": "v"}, np.array([1]), np.array([1])), "label name"),
    (("a", {"__name__": "v"}, np.array([1]), np.array([1])), "label name"),
])
def test_openmetrics_refuses_what_promtool_would_drop(row: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_openmetrics([row])
