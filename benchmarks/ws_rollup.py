"""WarpScript beside TSL: the 1-minute mean by dc of a day of `cpu{host, dc}` on the embedded
store, as the TSL query and as the WarpScript that does the same (FETCH, BUCKETIZE mean,
REDUCE mean by dc), in process (the store read and the kernels, no worker pipe), answers checked
equal; and the VM's own speed: a FOR loop of 100,000 iterations, in words run per second.
Target (BENCHMARKS.md): the WarpScript rollup within 1.5x of TSL's."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.report import Report, timed
from benchmarks.rollup import DAY_NS, START_NS, as_series_set, make_data
from tsq import tsl, ws
from tsq.connectors.embedded import EmbeddedStore
from tsq.kernels import maps

BENCH = "ws_rollup"
START_US, END_US = START_NS // 1000, (START_NS + DAY_NS) // 1000
# The points sit 5 s off the 10 s marks (OFFSET_NS), so none is on a boundary, where tsq's
# [start, end) and [t, t + 1m) and Warp 10's (start, end] and (t - 1m, t] part (docs/time.md):
# both read the whole day and put the same points in each minute, which tsq labels by its start
# and BUCKETIZE by its end, LABEL_SHIFT_NS later.
OFFSET_NS = 5 * 10**9
LABEL_SHIFT_NS = 60 * 10**9
TSL = (f'select("cpu").from({START_NS // 10**6}, to={(START_NS + DAY_NS) // 10**6})'
       '.sampleBy(1m, mean, "none").groupBy(["dc"], mean)')
WARPSCRIPT = (f"[ 't' 'cpu' {{}} {END_US} {END_US - START_US} ] FETCH "
              f"[ SWAP bucketizer.mean {END_US} 1 m 0 ] BUCKETIZE "
              "[ SWAP [ 'dc' ] reducer.mean ] REDUCE")
LOOP_WORDS = "0 'n' STORE 1 100000 <% $n + 'n' STORE %> FOR $n"  # 4 words an iteration


def run(report: Report, *, quick: bool) -> None:
    hosts, repeat = (8, 2) if quick else (100, 5)
    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddedStore(str(Path(folder) / "points.duckdb"))
        try:
            store.write(maps.shift(as_series_set(make_data(hosts)), OFFSET_NS))
            now = datetime.fromtimestamp(END_US / 10**6, UTC)
            native = tsl.evaluate(TSL, store, now=now)
            stack = ws.execute(WARPSCRIPT, connector=store)
            _check(native, ws.stack_series(stack))
            report.add(BENCH, "TSL (native)", timed(lambda: tsl.evaluate(TSL, store, now=now),
                                                    repeat, warm=1))
            report.add(BENCH, "WarpScript (tsq VM)", timed(
                lambda: ws.execute(WARPSCRIPT, connector=store), repeat, warm=1),
                baseline="TSL (native)")
        finally:
            store.close()
    samples = timed(lambda: ws.execute(LOOP_WORDS), repeat, warm=1)
    report.add("ws_for_loop", "100,000-iteration FOR", samples)
    words = 4 * 100_000 + 6
    report.note("ws_for_loop", "100,000-iteration FOR",
                {"words_per_s": round(words / float(np.median(samples)))})


def _check(native: object, mine: object) -> None:
    from tsq.series import SeriesSet
    assert isinstance(native, SeriesSet) and isinstance(mine, SeriesSet)
    by_labels = {tuple(sorted(s.labels.items())): s for s in native}
    assert len(by_labels) == len(mine), (len(by_labels), len(mine))
    for series in mine:
        theirs = by_labels[tuple(sorted(series.labels.items()))]
        order = np.argsort(series.timestamps)
        assert (series.timestamps[order] - LABEL_SHIFT_NS).tolist() == theirs.timestamps.tolist()
        np.testing.assert_allclose(series.values[order], theirs.values, rtol=1e-9)
