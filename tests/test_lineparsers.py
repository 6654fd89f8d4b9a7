"""Line protocol is parsed by the compiled scan once numba's code is loaded; a server reads with
pandas' reader until then, without waiting for it, and the batch is the same either way."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from tsq.lineparsers import CompiledLoad, LineParsers
from tsq.lineprotocol import ParsedBatch, parse_lines

BODY = "\n".join(f"cpu,host=h{i % 50},dc=gra value={i / 4} {1_700_000_000 + i}000000000"
                 for i in range(4000)) + "\nnot a line\n"


def same(one: ParsedBatch, other: ParsedBatch) -> None:
    assert (one.points, one.errors) == (other.points, other.errors)
    assert one.numbers.names == other.numbers.names
    assert one.numbers.labels == other.numbers.labels
    np.testing.assert_array_equal(one.numbers.timestamps, other.numbers.timestamps)
    np.testing.assert_array_equal(one.numbers.values, other.numbers.values)


@pytest.fixture
def parsers() -> LineParsers:
    return LineParsers(CompiledLoad())  # its own: the process's may be loaded already


def test_outside_a_server_a_parse_is_what_parse_lines_gives(parsers: LineParsers) -> None:
    """Outside a server (`tsq write`, a notebook) a parse waits for nothing to load: the batch
    is the scan's, and the same as `parse_lines` gives."""
    parsed = parsers.parse(BODY, "ns")
    same(parsed, parse_lines(BODY, "ns"))
    assert [n for n, _ in parsed.errors] == [4001]


def by_series(batch: ParsedBatch) -> dict[Any, tuple[list[int], list[float]]]:
    """The batch's points by series, whatever order a parser gives its series in."""
    numbers = batch.numbers
    return {(s.name, tuple(sorted(s.labels.items()))): (s.timestamps.tolist(), s.values.tolist())
            for s in (numbers[i] for i in range(len(numbers)))}


def test_a_server_reads_without_the_compiled_scan_until_it_is_loaded(
        parsers: LineParsers, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first write starts loading the scan in a thread and is not made to wait for it
    (pandas' reader reads it); once loaded, large plain batches take the scan."""
    from tsq import lineparsers, lineprotocol

    plain = BODY.rsplit("\n", 2)[0]  # no bad line: the scan would take it
    expected = parse_lines(plain, "ns")
    scanned: list[str] = []
    real = lineprotocol._parse_scanned
    monkeypatch.setattr(lineprotocol, "_parse_scanned",
                        lambda raw, *a: scanned.append(raw[:4].decode()) or real(raw, *a))
    loading, loaded = threading.Event(), threading.Event()

    def load_held(body: str, *args: Any, **kwargs: Any) -> ParsedBatch:
        if body == lineparsers.WARM_BODY:  # the loading thread: held until the test says
            loading.set()
            assert loaded.wait(10)
        return parse_lines(body, *args, **kwargs)

    monkeypatch.setattr(lineparsers, "parse_lines", load_held)
    parsers._serving = True  # a server's, without `start` beginning the load
    assert by_series(parsers.parse(plain, "ns")) == by_series(expected)
    assert loading.wait(10) and scanned == []  # read while the scan loads, not waiting for it
    assert parsers.parse_joined([plain, plain], "ns") is None  # each alone, meanwhile
    loaded.set()
    assert parsers.compiled.wait(10)
    assert scanned == ["warm"]
    assert by_series(parsers.parse(plain, "ns")) == by_series(expected)
    assert scanned == ["warm", "cpu,"]
    joined = parsers.parse_joined([plain, plain], "ns")
    assert joined is not None and joined[1] == [expected.points] * 2
    assert by_series(joined[0]) == by_series(expected)  # the same points again: replaced


def test_the_compiled_code_is_loaded_once_and_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from tsq import lineparsers

    loads: list[str] = []
    real = lineparsers.parse_lines
    monkeypatch.setattr(lineparsers, "parse_lines",
                        lambda body, *a, **k: loads.append(body[:4]) or real(body, *a, **k))
    load = CompiledLoad()
    assert not load.ready()  # begun, not done
    assert load.wait(30) and load.ready() and load.wait(0)
    assert loads == ["warm"]  # one load, however often asked


def test_the_blocks_codec_is_loaded_after_the_scan_without_holding_it_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tsq.kernels import blocks

    warmed = threading.Event()
    release = threading.Event()
    monkeypatch.setattr(blocks, "warm", lambda: (warmed.set(), release.wait(30)))
    load = CompiledLoad()
    assert load.wait(30)  # the scan is there while the codec still loads
    assert warmed.wait(30) and not load.codec_loaded.is_set()
    release.set()
    assert load.codec_loaded.wait(30)


def test_compiled_code_that_cannot_load_leaves_pandas_reading(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from tsq import lineparsers

    def broken(body: str, *args: Any, **kwargs: Any) -> ParsedBatch:
        raise RuntimeError("numba is broken")

    monkeypatch.setattr(lineparsers, "parse_lines", broken)
    load = CompiledLoad()
    started = time.monotonic()
    assert not load.wait(30)
    assert time.monotonic() - started < 10  # told at once, not at the timeout
    assert not load.ready()
    assert "could not be loaded" in caplog.text
