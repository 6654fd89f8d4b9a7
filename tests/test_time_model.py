"""One time model (docs/time.md): a window is [start, end), a bucket [t, t + span) labelled t.

Points sit exactly on minute boundaries, as Telegraf writes them, where the two conventions
part. A JavaScript loop, a TSL loop and the rollup shorthand roll up the same windows and must
write the same points; an hourly rollup of the minutes must read exactly the 60 minutes its
window's raw points went into; and the kernel's buckets hold each point exactly once."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.scheduling_helpers import FakeClock, utc
from tsq.config import Settings
from tsq.hostcalls import sampling_from_message, sampling_message
from tsq.kernels import Aggregator, Buckets, bucket_index, bucketize
from tsq.selector import parse_selector
from tsq.series import SeriesSet
from tsq.service import Service

T0 = 1767225600  # 2026-01-01T00:00:00Z
STEP = 30  # s: two points a minute, one of them on the minute
POINTS = 2 * 3600 // STEP + 1  # 00:00:00 … 02:00:00, both boundaries included
HOURS = [("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"),
         ("2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z")]
RATE = "R/2026-01-01T00:00:00Z/PT1H/ET10M"

JS_ROLLUP = """export default async function (event) {
  const {start, end} = event.window;
  const [cpu] = await db.select('tm_cpu{dc="gra"}', {start, end});
  const sums = new Map();                       // minute label (its start) → [sum, count]
  cpu.timestamps.forEach((t, i) => {
    const label = Math.floor(t / 60000) * 60000;
    const [sum, count] = sums.get(label) || [0, 0];
    sums.set(label, [sum + cpu.values[i], count + 1]);
  });
  const labels = [...sums.keys()].sort((a, b) => a - b);
  await db.write([{name: "tm_js", labels: {dc: "gra"}, timestamps: labels,
                   values: labels.map(l => sums.get(l)[0] / sums.get(l)[1])}]);
  return {minutes: labels.length};
}
"""
TSL_ROLLUP = """select("tm_cpu").where("dc=gra").from(start, end)
  .sampleBy(1m, mean, "none").rename("tm_tsl").store("token")
"""
LOOPS = f"""functions:
  tm-js:
    handler: tm-js.js
    events: [{{hourly: {{rate: {RATE}}}}}]
  tm-tsl:
    handler: tm-tsl.tsl
    events: [{{hourly: {{rate: {RATE}}}}}]
  tm-1m:
    rollup: {{from: tm_cpu, to: tm_short, span: 1m, aggregate: mean, by: [dc]}}
    events: [{{hourly: {{rate: {RATE}}}}}]
  tm-1h:
    rollup: {{from: tm_short, to: tm_short_1h, span: 1h, aggregate: mean, by: [dc]}}
    events: [{{after-1m: {{after: tm-1m}}}}]
"""


def raw() -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds and values: value i at point i, so a minute gained or lost changes a
    mean."""
    return T0 + STEP * np.arange(POINTS), np.arange(POINTS, dtype=np.float64)


def expected(span: int, start: int, end: int) -> tuple[list[int], list[float]]:
    """numpy: the mean of each bucket [t, t + span) of the raw points in [start, end), as
    (labels in epoch ms, means)."""
    stamps, values = raw()
    inside = (stamps >= start) & (stamps < end)
    labels = stamps[inside] // span * span
    keys = np.unique(labels)
    return ([int(k) * 1000 for k in keys],
            [float(values[inside][labels == k].mean()) for k in keys])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(Settings.load(tmp_path_factory.mktemp("time-model")),
                  clock=FakeClock(utc("2026-01-01T03:00:00Z")))
    stamps, values = raw()
    svc.write_lines("\n".join(f"tm_cpu,dc=gra,host=a value={v} {t}"
                              for t, v in zip(stamps.tolist(), values.tolist(), strict=True)),
                    "s")
    svc.deploy(LOOPS, "loops.yml", {"tm-js.js": JS_ROLLUP, "tm-tsl.tsl": TSL_ROLLUP}.get)
    yield svc
    svc.close()


def stored(service: Service, name: str) -> tuple[list[int], list[float]]:
    [series] = service.store.select(parse_selector(name))
    return (series.timestamps // 10**6).tolist(), series.values.tolist()


def run_hours(service: Service, loop: str) -> None:
    for start, end in HOURS:
        record = service.run(loop, window=(utc(start), utc(end)))
        assert record.status == "success", record.error


def test_js_tsl_and_the_shorthand_write_the_same_minutes(service: Service) -> None:
    for loop in ("tm-js", "tm-tsl", "tm-1m"):
        run_hours(service, loop)
    want = expected(60, T0, T0 + 2 * 3600)
    assert len(want[0]) == 120 and want[0][0] == T0 * 1000
    # [00:00, 00:01) holds the points at 00:00:00 and 00:00:30, not the one at 00:01:00
    assert want[1][0] == (0 + 1) / 2
    assert stored(service, "tm_js") == want
    assert stored(service, "tm_tsl") == want
    assert stored(service, "tm_short") == want
    # the point at 02:00:00 opens the next window: no run above read it
    assert service.store.select(parse_selector("tm_short"), (T0 + 7200) * 10**9).points == 0


def test_an_hourly_rollup_of_the_minutes_reads_its_own_60_minutes(service: Service) -> None:
    """The hour [h, h + 1h) reads the minute points labelled h … h + 59m, the buckets its raw
    points [h, h + 1h) went into: the mean of the minute means is the raw hour's mean (every
    minute holds two points), no minute lost at the start or borrowed from the next hour."""
    if not service.store.select(parse_selector("tm_short")).points:
        run_hours(service, "tm-1m")
    run_hours(service, "tm-1h")
    labels, means = stored(service, "tm_short_1h")
    assert labels == [T0 * 1000, (T0 + 3600) * 1000]
    np.testing.assert_allclose(means, expected(3600, T0, T0 + 2 * 3600)[1], rtol=1e-12)
    np.testing.assert_allclose(means, [(0 + 119) / 2, (120 + 239) / 2], rtol=1e-12)


# -- the kernel's buckets ----------------------------------------------------------------------

spans = st.integers(1, 10**12)
stamps = st.lists(st.integers(-(10**15), 10**15), min_size=1, max_size=50)


@given(stamps=stamps, span=spans, anchor=st.integers(-(10**13), 10**13))
def test_a_point_lies_in_the_bucket_its_label_starts(stamps: list[int], span: int,
                                                    anchor: int) -> None:
    grid = Buckets(span, anchor)  # the default: tsq's time model
    times = np.array(stamps, np.int64)
    labels = grid.tick(bucket_index(times, grid))
    assert np.all(labels <= times) and np.all(times < labels + span)
    assert np.all((labels - anchor) % span == 0)


@given(stamps=stamps, span=spans, anchor=st.integers(-(10**13), 10**13))
def test_warp10_buckets_end_at_their_label(stamps: list[int], span: int, anchor: int) -> None:
    grid = Buckets(span, anchor, closed="right", label="end")
    times = np.array(stamps, np.int64)
    labels = grid.tick(bucket_index(times, grid))
    assert np.all(labels - span < times) and np.all(times <= labels)
    assert np.all((labels - anchor) % span == 0)


@given(stamps=st.lists(st.integers(0, 10_000), min_size=1, max_size=60),
       span=st.integers(1, 500), first=st.integers(0, 20), count=st.integers(1, 20))
def test_a_fixed_grid_counts_each_point_once(stamps: list[int], span: int, first: int,
                                             count: int) -> None:
    """Buckets first … first + count - 1 (in spans) hold exactly the points of
    [first·span, (first + count)·span), each once, a point on a boundary in the bucket it
    opens."""
    low, high = first * span, (first + count - 1) * span
    unique = np.unique(np.array(stamps, np.int64))
    series = SeriesSet.from_series([("s", {}, unique, np.ones(len(unique)))])
    counted = bucketize(series, Buckets(span, first=low, last=high), Aggregator("count"))
    inside = unique[(unique >= low) & (unique < high + span)]
    assert counted.values.sum() == len(inside)
    for label, found in zip(counted.timestamps.tolist(), counted.values.tolist(), strict=True):
        assert found == np.count_nonzero((inside >= label) & (inside < label + span))


@pytest.mark.parametrize("grid", [Buckets(60, 0, first=0, last=120),
                                  Buckets(60, 30, "right", label="end")])
def test_a_grid_crosses_to_the_service_with_its_convention(grid: Buckets) -> None:
    """A TSL loop's sampleBy is bucketed where the store reads (the host call carries the grid):
    its closed side and its label edge must arrive as they left."""
    message = sampling_message(grid, Aggregator("mean"), [])
    assert sampling_from_message(message).grid == grid
