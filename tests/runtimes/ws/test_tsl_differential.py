"""Differential tests: every TSL conformance query that reads data, run natively and compiled to
WarpScript on tsq's VM, on the same points, must give the same series with the same values.

Each case of tests/conformance/tsl_warpscript.jsonl that the reference compiles to a FETCH is
run (a) natively (`tsl.evaluate`) and (b) as the reference's WarpScript (`ws.execute`), both on
one embedded store. The answers are matched series by series (class name and labels) and their
values compared (rtol 1e-9, booleans as 1/0). Where the Prometheus differential
(tests/runtimes/tsl/test_prometheus_differential.py) compares the same query, (c) checks that
its answer agrees with the WarpScript one too (when Prometheus is installed).

Why the two can agree at all: native TSL reads windows `[start, end)` and makes buckets
`[t, t + span)` labelled by their start t; Warp 10's FETCH reads `(end - span, end]` and its
BUCKETIZE makes buckets `(t - span, t]` labelled by their end t (docs/time.md). Every point here
sits 5 s off the 10 s marks (…:05, …:15), so no point is on a window's or a bucket's boundary,
where the two conventions part: a native bucket and the Warp 10 bucket one span later hold the
same points. The native ticks of a bucketized answer are therefore compared one span later
(`shift`); raw points keep their times in both.

Integer times: native TSL reads an integer by its size (seconds, ms, µs or ns: docs/tsl.md);
the reference copies the literal into WarpScript, where a LONG is always microseconds. The
doc's µs literals (1346846400000000, 2012-09-05T12:00:00Z) mean the same time on both sides;
its ms literals (1346846400000) are 2012 natively and 1970-01-16 in WarpScript: strict xfails.

Cases that cannot agree are strict xfails or skips, each with its reason; the module prints the
counts (agree / xfail / skipped) at the end.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.conftest import CONFORMANCE
from tsq import tsl, ws
from tsq.connectors.embedded import EmbeddedStore
from tsq.errors import WarpScriptError
from tsq.runtimes.tsl.evaluate import duration_ns
from tsq.runtimes.ws.values import Gts
from tsq.series import SeriesSet

NOW = datetime(2021, 1, 1, tzinfo=UTC)  # the conformance cases' now
NOW_S = 1_609_459_200
DOC_START_S = 1_346_846_400  # 2012-09-05T12:00:00Z, the doc's from(1346846400000000, …)
DOC_END_US = 1_346_847_000_006_000  # …, 1346847000006000): 12:10:00.006
US = 1_000
NS = 1_000_000_000
HOUR = 3600

CASES = [json.loads(line) for line in
         (CONFORMANCE / "tsl_warpscript.jsonl").read_text().splitlines() if line.strip()]
COMPILED = [case for case in CASES if "warpscript" in case]
SERIES = [("sys.cpu.nice", "web01", "lga"), ("sys.cpu.nice", "web02", "gra"),
          ("sys.cpu.nice", "web03", "lga"), ("foo", "web01", "lga"), ("foo", "web02", "gra")]
COUNTS: Counter[str] = Counter()


def stamps() -> npt.NDArray[np.int64]:
    """Every 10 s, 5 s off the marks: around the doc's 2012 range (12:00-12:10, a quarter of an
    hour either side) and over the two hours before the cases' now (for last())."""
    doc = np.arange(DOC_START_S - 900 + 5, DOC_START_S + 1500, 10)
    recent = np.arange(NOW_S - 2 * HOUR + 5, NOW_S, 10)
    return np.concatenate([doc, recent]).astype(np.int64)


def dataset() -> SeriesSet:
    """Halves from 0 to 4 (so equal(2), lessThan(2), … keep some points and not others)."""
    rng = np.random.default_rng(20120905)
    times = stamps() * NS
    return SeriesSet.from_series([(name, {"host": host, "dc": dc}, times,
                                   rng.integers(0, 9, len(times)) / 2)
                                  for name, host, dc in SERIES])


@pytest.fixture(scope="module")
def store() -> Iterator[EmbeddedStore]:
    points = EmbeddedStore(":memory:")
    points.write(dataset())
    yield points
    points.close()


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("TSL native vs WarpScript: " + ", ".join(
            f"{COUNTS[k]} {k}" for k in ("agree", "xfail", "skipped")))


# -- answers ---------------------------------------------------------------------------------

Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Series:
    key: Key
    ticks: tuple[int, ...]  # microseconds
    values: tuple[Any, ...]


def _value(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    return value


def _series(name: str, labels: Mapping[str, str], ticks: Any, values: Any) -> Series:
    return Series((name, tuple(sorted(labels.items()))), tuple(int(t) for t in ticks),
                  tuple(_value(v) for v in values))


def native_answer(source: str, store: EmbeddedStore, shift_us: int) -> list[Series]:
    return sorted((_series(s.name, s.labels, np.asarray(s.timestamps) // US + shift_us, s.values)
                   for s in tsl.evaluate(source, store, now=NOW)),
                  key=lambda s: (s.key, s.ticks))


def warpscript_answer(script: str, store: EmbeddedStore) -> list[Series]:
    found: list[Series] = []

    def walk(value: Any) -> None:
        if isinstance(value, Gts):
            order = np.argsort(value.ticks, kind="stable")
            found.append(_series(value.name, value.labels, value.ticks[order],
                                 value.values[order]))
        elif isinstance(value, list):
            for item in value:
                walk(item)
    walk(ws.execute(script, connector=store, now_us=NOW_S * 1_000_000))
    return sorted(found, key=lambda s: (s.key, s.ticks))


def _same_value(got: Any, want: Any) -> bool:
    if isinstance(got, float) and isinstance(want, float):
        return (math.isnan(got) and math.isnan(want)) or math.isclose(got, want, rel_tol=1e-9)
    return bool(got == want)


def assert_same(native: list[Series], warpscript: list[Series], until_us: int | None) -> None:
    if until_us is not None:
        native, warpscript = (_until(answer, until_us) for answer in (native, warpscript))
    assert [s.key for s in native] == [s.key for s in warpscript], "different series"
    assert any(s.ticks for s in native), "no points on either side: the comparison is empty"
    for got, want in zip(native, warpscript, strict=True):
        assert got.ticks == want.ticks, f"{got.key}: ticks {got.ticks[:5]} vs {want.ticks[:5]}"
        differ = [i for i, (g, w) in enumerate(zip(got.values, want.values, strict=True))
                  if not _same_value(g, w)]
        assert not differ, (f"{got.key}: values differ at {len(differ)} ticks, first "
                            f"{got.ticks[differ[0]]}: {got.values[differ[0]]!r} natively, "
                            f"{want.values[differ[0]]!r} in WarpScript")


def _until(answer: list[Series], until_us: int) -> list[Series]:
    out = []
    for series in answer:
        keep = [i for i, t in enumerate(series.ticks) if t <= until_us]
        out.append(Series(series.key, tuple(series.ticks[i] for i in keep),
                          tuple(series.values[i] for i in keep)))
    return out


# -- the label convention ------------------------------------------------------------------------

_SPAN = re.compile(r"sampleBy\(\s*(?:span\s*=\s*)?([^,\s)]+)")


def bucket_shift_us(source: str) -> int:
    """How much later WarpScript labels the same bucket: one span (its end, not its start)."""
    found = _SPAN.search(source)
    if found is None:
        return 0
    span = found.group(1)
    return int(span) if span.isdigit() else duration_ns(span) // US  # a bare number is µs


def until_us(source: str) -> int | None:
    """The doc's range ends at 12:10:00.006. Natively, its window holds 6 ms of the bucket that
    starts at 12:10 (labelled 12:10, compared at 12:11), which fills from its neighbours; the
    reference's WarpScript rounds the end down to the minute, so its last bucket is the one
    ending 12:10. The bucket that the window only grazes is left out of the comparison."""
    if "sampleBy" in source and str(DOC_END_US) in source:
        return DOC_START_S * 1_000_000 + 600 * 1_000_000
    return None


# -- the cases -----------------------------------------------------------------------------------

P = "ovh/tsl:"
MS_LITERALS = (
    "the range is in milliseconds (1346846400000 = 2012-09-05T12:00:00Z natively, where the data "
    "is); the reference copies the literals into FETCH, where a LONG is microseconds: "
    "1970-01-16T14:07:26.4Z, where there is none")
XFAILS: dict[str, str] = {
    f"{P}README.md:query-example": MS_LITERALS,
    f"{P}spec/doc.md:L10": MS_LITERALS,
}
SKIPS: dict[str, str] = {}


def _param(case: dict[str, Any]) -> Any:
    source = case["source"]
    marks = []
    if source in XFAILS:
        marks.append(pytest.mark.xfail(reason=XFAILS[source], strict=True))
    return pytest.param(case, id=source.removeprefix(P), marks=marks)


def reads_data(case: Mapping[str, Any]) -> bool:
    """A case reads points when its WarpScript FETCHes; a bare select() compiles to FIND, which
    gives series without points (natively it reads them all: there is nothing to compare)."""
    return bool(re.search(r"\bFETCH\b", case["warpscript"]))


@pytest.mark.parametrize("case", [_param(c) for c in COMPILED])
def test_native_and_warpscript_agree(store: EmbeddedStore, case: dict[str, Any]) -> None:
    source = case["source"]
    if not reads_data(case):
        COUNTS["skipped"] += 1
        pytest.skip("reads no points: the select has no from()/last(), so the reference "
                    "compiles it to FIND (series, no points)")
    if source in SKIPS:
        COUNTS["skipped"] += 1
        pytest.skip(SKIPS[source])
    COUNTS["xfail" if source in XFAILS else "agree"] += 1
    native = native_answer(case["tsl"], store, bucket_shift_us(case["tsl"]))
    assert_same(native, warpscript_answer(case["warpscript"], store), until_us(case["tsl"]))


def test_every_classified_case_exists() -> None:
    sources = {case["source"] for case in COMPILED}
    for table in (XFAILS, SKIPS):
        assert set(table) <= sources, set(table) - sources


def test_the_points_sit_off_every_boundary() -> None:
    assert set((stamps() % 10).tolist()) == {5}


def test_a_warpscript_error_is_not_swallowed(store: EmbeddedStore) -> None:
    with pytest.raises(WarpScriptError):
        warpscript_answer("[ 'TOKEN' 'sys.cpu.nice' {} NOW 1 h ] FETCH 0 /", store)
