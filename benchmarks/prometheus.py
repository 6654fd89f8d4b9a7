"""A throwaway Prometheus 2.42 on 127.0.0.1 (`apt-get install prometheus`): temporary config and
data directory, no scrape jobs, and the samples it serves imported beforehand from OpenMetrics text
with `promtool tsdb create-blocks-from openmetrics`. The differential reference for TSL's PromQL
output and for the rollup benchmark.

promtool's import is silent about what it drops, so `to_openmetrics` refuses what it would drop:
samples of a series must be in time order (a sample older than the previous one of its series is
discarded), two samples of a series at the same millisecond keep only the first, and samples
before 1970 are discarded. Prometheus stores milliseconds: timestamps are rounded to them.

Retention is measured back from the newest block, not from the wall clock, so data from 2021 stays
queryable today; the server's retention is 100 years so that old and new data loaded together
both stay too. The lookback window of PromQL stays the default 5 minutes, as in production."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from benchmarks.influxdb import _wait_for, free_port

__all__ = ["available", "prometheus", "query", "query_range", "to_openmetrics"]

CONFIG = """
global:
  scrape_interval: 1m
  evaluation_interval: 1m
"""
# promtool cuts blocks of 2 h and parses the whole input once per block: wider blocks make the
# import of a long range one pass instead of hundreds. promtool rounds this down to one of the
# TSDB's block ranges (2 h times a power of 3); this one is 2 h * 3^5 = 486 h, about 20 days.
MAX_BLOCK_DURATION = "486h"
RETENTION = "100y"
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Row = tuple[str, Mapping[str, str], npt.ArrayLike, npt.ArrayLike]


def available() -> bool:
    return shutil.which("prometheus") is not None and shutil.which("promtool") is not None


# What a connector's tests turn on: writes through remote write, of history too (samples
# older than the newest one held are out of order), and deletes through the admin API.
WRITABLE = """
storage:
  tsdb:
    out_of_order_time_window: {window}
"""
WRITABLE_FLAGS = ("--web.enable-remote-write-receiver", "--web.enable-admin-api")


@contextmanager
def prometheus(openmetrics: str | Path | None = None, *,
               writable: str | None = None, root: Path | None = None) -> Iterator[str]:
    """The base URL of a fresh Prometheus serving `openmetrics` (OpenMetrics text, or a file of
    it); stopped afterwards. `writable` (a duration, e.g. "100y") turns on the remote-write
    receiver and the admin API, and accepts samples that far older than the newest. Its files
    go in `root` (the TSDB in `root`/data) when given, else in a temporary directory."""
    with nullcontext(str(root)) if root else tempfile.TemporaryDirectory() as top:
        data = Path(top) / "data"
        log = Path(top) / "prometheus.log"
        if openmetrics is not None:
            _import(openmetrics, Path(top), data)
        config = Path(top) / "prometheus.yml"
        config.write_text(CONFIG + (WRITABLE.format(window=writable) if writable else ""))
        port = free_port()
        with running(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
                      f"--web.listen-address=127.0.0.1:{port}",
                      f"--storage.tsdb.retention.time={RETENTION}",
                      *(WRITABLE_FLAGS if writable else ())],
                     f"http://127.0.0.1:{port}", "/-/ready", log) as base:
            yield base


def _import(openmetrics: str | Path, root: Path, data: Path) -> None:
    if isinstance(openmetrics, str):
        source = root / "import.om"
        source.write_text(openmetrics, encoding="utf-8")
    else:
        source = openmetrics
    done = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet",
         f"--max-block-duration={MAX_BLOCK_DURATION}", str(source), str(data)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = done.stderr.strip() or done.stdout.strip()
        raise RuntimeError(f"promtool could not import the OpenMetrics text "
                           f"(exit {done.returncode}): {said}")


@contextmanager
def running(argv: list[str], base: str, ready: str, log: Path) -> Iterator[str]:
    """A server started with `argv`, its output in `log`, once `base + ready` answers; `base`,
    and the server stopped afterwards."""
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink,
                                   stderr=subprocess.STDOUT)
    try:
        _wait_ready(process, base + ready, log)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path,
                timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before it "
                               f"was ready:\n{_tail(log)}")
        try:
            _wait_for(url, timeout_s=0.5)
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} was not ready within {timeout_s:g} s:\n"
                                   f"{_tail(log)}") from None


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def to_openmetrics(rows: Iterable[Row]) -> str:
    """OpenMetrics text for promtool from (metric name, labels, timestamps in seconds, values)
    rows: one `# TYPE name gauge` per metric name with all its series after it, each series'
    samples sorted by time, `# EOF` last. Rows of the same series are merged. Raises ValueError
    for what promtool would silently drop: samples before 1970, two samples of a series at the
    same millisecond; and for names Prometheus does not accept."""
    families: dict[str, dict[tuple[tuple[str, str], ...], list[tuple[Any, Any]]]] = {}
    for name, labels, stamps, values in rows:
        if not METRIC_NAME.fullmatch(name):
            raise ValueError(f"not a Prometheus metric name: {name!r}")
        for key in labels:
            if not LABEL_NAME.fullmatch(key) or key == "__name__":
                raise ValueError(f"not a Prometheus label name: {key!r}")
        series = tuple(sorted((str(k), str(v)) for k, v in labels.items()))
        families.setdefault(name, {}).setdefault(series, []).append(
            (np.asarray(stamps), np.asarray(values)))
    out: list[str] = []
    for name, family in families.items():
        out.append(f"# TYPE {name} gauge")
        for series, parts in family.items():
            stamps = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
            values = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
            if stamps.shape != values.shape or stamps.ndim != 1:
                raise ValueError(f"{name}{dict(series)}: {stamps.shape} timestamps for "
                                 f"{values.shape} values")
            if len(stamps) == 0:
                continue
            prefix = name + ("{" + ",".join(f'{k}="{_escape(v)}"' for k, v in series) + "}"
                             if series else "")
            out.append(_series_lines(prefix, stamps, values))
    out.append("# EOF\n")
    return "\n".join(out)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _series_lines(prefix: str, stamps: npt.NDArray[Any], values: npt.NDArray[Any]) -> str:
    if stamps.dtype.kind in "iu":
        millis = stamps.astype(np.int64) * 1000
    else:
        seconds = stamps.astype(np.float64)
        if not np.isfinite(seconds).all():
            raise ValueError(f"{prefix}: a timestamp that is not a finite number")
        millis = np.round(seconds * 1000).astype(np.int64)
    order = np.argsort(millis, kind="stable")
    millis, values = millis[order], values[order]
    if millis[0] < 0:
        raise ValueError(f"{prefix}: a sample before 1970 ({millis[0] / 1000:g} s), which "
                         f"promtool would drop")
    if len(millis) > 1 and not np.all(millis[1:] != millis[:-1]):
        at = int(millis[1:][millis[1:] == millis[:-1]][0])
        raise ValueError(f"{prefix}: two samples at {at / 1000:g} s, of which promtool would "
                         f"keep only the first")
    return "\n".join(f"{prefix} {v} {t}"
                     for v, t in zip(_values_text(values), _stamps_text(millis), strict=True))


def _stamps_text(millis: npt.NDArray[np.int64]) -> list[Any]:
    """Seconds that promtool turns back into exactly `millis`: it parses a float and truncates
    it times 1000, so 1.001 (1000.9999…) would lose a millisecond; those take the next float up."""
    if not np.any(millis % 1000):
        return (millis // 1000).tolist()  # type: ignore[no-any-return]
    seconds = millis / 1000
    for _ in range(4):
        short = np.trunc(seconds * 1000) < millis
        if not short.any():
            break
        seconds[short] = np.nextafter(seconds[short], math.inf)
    return [repr(s) for s in seconds.tolist()]


def _values_text(values: npt.NDArray[Any]) -> list[Any]:
    if values.dtype.kind in "iub":
        return values.astype(np.int64).tolist()  # type: ignore[no-any-return]
    floats = values.astype(np.float64)
    text = [repr(v) for v in floats.tolist()]
    if not np.isfinite(floats).all():
        special = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}
        text = [special.get(v, v) for v in text]
    return text


def query_range(base: str, query: str, start: float | str, end: float | str,
                step: float | str) -> list[dict[str, Any]]:
    """`data.result` of /api/v1/query_range: a matrix, [{"metric": {...}, "values": [[t, "v"],
    ...]}, ...]. Times in seconds (or RFC 3339), the step in seconds (or a duration like 1m)."""
    return _api(base, "query_range", {"query": query, "start": start, "end": end, "step": step})


def query(base: str, query: str, time: float | str) -> list[dict[str, Any]]:
    """`data.result` of /api/v1/query at `time`: for a vector, [{"metric": {...}, "value": [t,
    "v"]}, ...]."""
    return _api(base, "query", {"query": query, "time": time})


def _api(base: str, endpoint: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    answer = httpx.post(f"{base}/api/v1/{endpoint}", data=params, timeout=120)
    try:
        body = answer.json()
    except ValueError:
        raise RuntimeError(f"Prometheus answered {answer.status_code}: {answer.text[:500]}") \
            from None
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus: {body.get('errorType')}: {body.get('error')}")
    data = body["data"]
    if data["resultType"] not in ("vector", "matrix"):  # a scalar or string: [t, "v"]
        raise RuntimeError(f"Prometheus returned a {data['resultType']}, not a vector or "
                           f"matrix: {data['result']!r}")
    return data["result"]  # type: ignore[no-any-return]
