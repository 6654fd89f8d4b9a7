"""Rollup: per-series 1-minute mean, then the mean over hosts by dc, for one day of
`cpu{host, dc}` every 10 s (BENCHMARKS.md), on data in memory. tsq's kernels beside pandas,
DuckDB SQL, polars and plain numpy `add.reduceat`; every answer is compared before timing."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.report import Report, timed
from tsq.kernels import Aggregator, Buckets, bucketize, group_by
from tsq.series import SeriesSet

STEP_NS = 10 * 10**9
MINUTE_NS = 60 * 10**9
DAY_NS = 86_400 * 10**9
START_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
SEED = 20260101


def make_data(hosts: int) -> dict[str, Any]:
    """The day: one point every 10 s per host, dc = host number mod 4 (deterministic)."""
    rng = np.random.default_rng(SEED)
    per_host = DAY_NS // STEP_NS
    t = START_NS + np.arange(per_host, dtype=np.int64) * STEP_NS
    phase = (t - START_NS) / DAY_NS * 2 * np.pi
    base = rng.uniform(10, 60, hosts)[:, None]
    walk = np.cumsum(rng.normal(0, 0.2, (hosts, per_host)), axis=1)
    noise = rng.normal(0, 2, (hosts, per_host))
    values = np.round(np.clip(base + 20 * np.sin(phase)[None, :] + walk + noise, 0, 100), 2)
    return {"hosts": hosts, "per_host": per_host, "timestamps": np.tile(t, hosts),
            "values": values.ravel(), "dc": np.arange(hosts) % 4}


def as_series_set(data: dict[str, Any]) -> SeriesSet:
    hosts, per_host = data["hosts"], data["per_host"]
    return SeriesSet(
        tuple(["cpu"] * hosts),
        tuple({"host": f"web{i:03d}", "dc": ("gra", "rbx", "sbg", "bhs")[i % 4]}
              for i in range(hosts)),
        data["timestamps"], data["values"],
        np.arange(0, hosts * per_host + 1, per_host, dtype=np.int64))


def tsq_kernels(series: SeriesSet) -> np.ndarray:
    minute = bucketize(series, Buckets(MINUTE_NS, closed="left"), Aggregator("mean"))
    by_dc = group_by(minute, ["dc"], Aggregator("mean"))
    order = np.argsort([labels["dc"] for labels in by_dc.labels], kind="stable")
    return np.concatenate([by_dc[int(i)].values for i in order])


def numpy_reduceat(data: dict[str, Any]) -> np.ndarray:
    hosts, per_host = data["hosts"], data["per_host"]
    per_minute = MINUTE_NS // STEP_NS
    starts = np.arange(0, hosts * per_host, per_minute)
    minute = np.add.reduceat(data["values"], starts) / per_minute
    minutes = per_host // per_minute
    by_host = minute.reshape(hosts, minutes)
    dcs = ("gra", "rbx", "sbg", "bhs")
    sums = np.zeros((4, minutes))
    np.add.at(sums, data["dc"], by_host)
    counts = np.bincount(data["dc"], minlength=4)[:, None]
    means = sums / counts
    order = np.argsort(dcs, kind="stable")
    return means[order].ravel()


def reduceat_minutes(data: dict[str, Any]) -> np.ndarray:
    """The bucket pass alone in bare numpy: 1-minute means, knowing the data is regular."""
    per_minute = MINUTE_NS // STEP_NS
    starts = np.arange(0, data["hosts"] * data["per_host"], per_minute)
    means: np.ndarray = np.add.reduceat(data["values"], starts)
    means /= per_minute
    return means


def bucketize_minutes(series: SeriesSet) -> np.ndarray:
    """The same pass through tsq's kernel, which knows nothing of the data's regularity."""
    return bucketize(series, Buckets(MINUTE_NS, closed="left"), Aggregator("mean")).values


def bucket_pass(report: Report, data: dict[str, Any], series: SeriesSet, repeat: int) -> None:
    """bucketize beside `add.reduceat` on the same arrays: what finding the buckets costs."""
    np.testing.assert_allclose(bucketize_minutes(series), reduceat_minutes(data), rtol=1e-12)
    report.add("bucket pass", "numpy add.reduceat", timed(lambda: reduceat_minutes(data), repeat))
    report.add("bucket pass", "tsq bucketize", timed(lambda: bucketize_minutes(series), repeat),
               "numpy add.reduceat")


def pandas_frame(data: dict[str, Any]) -> Any:
    import pandas as pd

    hosts, per_host = data["hosts"], data["per_host"]
    dcs = np.array(["gra", "rbx", "sbg", "bhs"])[data["dc"]]
    return pd.DataFrame({
        "dc": np.repeat(dcs, per_host),
        "host": np.repeat(np.array([f"web{i:03d}" for i in range(hosts)]), per_host),
        "time": pd.to_datetime(data["timestamps"], unit="ns", utc=True),
        "value": data["values"]})


def pandas_rollup(frame: Any) -> np.ndarray:
    minute = (frame.set_index("time").groupby(["dc", "host"])["value"].resample("1min").mean())
    by_dc = minute.groupby(level=["dc", "time"]).mean()
    return by_dc.sort_index().to_numpy()


def duckdb_rollup(connection: Any) -> np.ndarray:
    rows = connection.execute("""
        SELECT dc, bucket, avg(m) FROM (
            SELECT dc, host, time_bucket(INTERVAL 1 minute, time) AS bucket, avg(value) AS m
            FROM day GROUP BY dc, host, bucket)
        GROUP BY dc, bucket ORDER BY dc, bucket""").fetchnumpy()
    return np.asarray(rows["avg(m)"])


def polars_rollup(frame: Any) -> np.ndarray:
    import polars as pl

    return (frame.with_columns(pl.col("time").dt.truncate("1m").alias("bucket"))
            .group_by(["dc", "host", "bucket"]).agg(pl.col("value").mean())
            .group_by(["dc", "bucket"]).agg(pl.col("value").mean())
            .sort(["dc", "bucket"])["value"].to_numpy())



def run(report: Report, *, quick: bool) -> None:
    data = make_data(100 if quick else 1000)
    repeat = 2 if quick else 7
    series = as_series_set(data)
    expected = tsq_kernels(series)
    peers: list[tuple[str, Callable[[], np.ndarray]]] = [
        ("numpy add.reduceat", lambda: numpy_reduceat(data))]
    frame = pandas_frame(data)
    peers.append(("pandas groupby.resample", lambda: pandas_rollup(frame)))
    try:
        import duckdb

        connection = duckdb.connect()
        connection.register("day", frame)
        connection.execute("CREATE TABLE day_t AS SELECT * FROM day")
        connection.unregister("day")
        connection.execute("ALTER TABLE day_t RENAME TO day")
        peers.append(("DuckDB time_bucket SQL", lambda: duckdb_rollup(connection)))
    except ImportError:
        pass
    try:
        import polars as pl

        polars_frame = pl.DataFrame({  # from numpy columns: pl.from_pandas needs pyarrow
            "dc": frame["dc"].to_numpy(), "host": frame["host"].to_numpy(),
            "time": pl.Series(data["timestamps"]).cast(pl.Datetime("ns", "UTC")),
            "value": data["values"]})
        peers.append(("polars group_by", lambda: polars_rollup(polars_frame)))
    except ImportError:
        pass
    for name, call in peers:
        np.testing.assert_allclose(call(), expected, rtol=1e-9, err_msg=name)
    for name, call in peers:
        report.add("rollup", name, timed(call, repeat))
    report.add("rollup", "tsq kernels", timed(lambda: tsq_kernels(series), repeat),
               [name for name, _ in peers])
    bucket_pass(report, data, series, repeat)
    raw_bytes = series.timestamps.nbytes + series.values.nbytes
    tracemalloc.start()
    tsq_kernels(series)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    report.note("rollup", "tsq kernels memory", {
        "points": series.points, "raw_columns_mb": round(raw_bytes / 2**20, 1),
        "peak_extra_mb": round(peak / 2**20, 1),
        "peak_vs_raw": round(peak / raw_bytes, 2)})
