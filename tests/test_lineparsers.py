"""A server parses line protocol in place, or in its helper process while a parse is running in
place; either way the batch is the same, and a dead helper costs no write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from tsq.lineparsers import HELPED_FROM_BYTES, CompiledLoad, LineParsers
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
def parsers() -> Iterator[LineParsers]:
    found = LineParsers(CompiledLoad())  # its own: the process's may be loaded already
    yield found
    found.close()


def test_a_cli_call_parses_in_place_and_starts_no_process(parsers: LineParsers) -> None:
    assert len(BODY) >= HELPED_FROM_BYTES
    same(parsers.parse(BODY, "ns"), parse_lines(BODY, "ns"))
    assert parsers._helper is None


def test_a_write_arriving_during_a_parse_is_parsed_by_the_helper(parsers: LineParsers) -> None:
    parsers.start()
    with parsers._here:  # a parse running in place
        helped = parsers.parse(BODY, "ns")
    same(helped, parse_lines(BODY, "ns"))
    assert [n for n, _ in helped.errors] == [4001]
    assert parsers._helper is not None


def test_a_dead_helper_costs_no_write(parsers: LineParsers) -> None:
    parsers.start()
    helper = parsers._helper
    assert helper is not None
    helper.submit(int).result()  # its process is up
    for process in list(helper._processes.values()):  # type: ignore[attr-defined]
        os.kill(process.pid, signal.SIGKILL)
        process.join(timeout=10)
    with parsers._here:
        same(parsers.parse(BODY, "ns"), parse_lines(BODY, "ns"))
        assert parsers._helper is None
        same(parsers.parse(BODY, "ns"), parse_lines(BODY, "ns"))  # a new helper
    assert parsers._helper is not None and parsers._helper is not helper


def test_the_helper_dies_with_the_server_kill_9_included(tmp_path: Path) -> None:
    script = ("import time\nfrom tsq.lineparsers import LineParsers\n"
              "if __name__ == '__main__':\n"
              "    parsers = LineParsers()\n    parsers.start()\n"
              "    helper = parsers._helper\n    helper.submit(int).result()\n"
              "    print(*helper._processes, flush=True)\n    time.sleep(60)\n")
    (tmp_path / "serve.py").write_text(script)
    with subprocess.Popen([sys.executable, str(tmp_path / "serve.py")],
                          stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            (helper,) = (int(pid) for pid in server.stdout.readline().split())
            assert psutil.pid_exists(helper)
        finally:
            server.kill()
            server.wait(timeout=10)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(helper) and psutil.Process(helper).status() != "zombie":
        assert time.monotonic() < deadline, "the helper outlived the server"
        time.sleep(0.05)


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
                        lambda body, *a: scanned.append(body[:4]) or real(body, *a))
    loading, loaded = threading.Event(), threading.Event()

    def load_held(body: str, *args: Any, **kwargs: Any) -> ParsedBatch:
        if body == lineparsers.WARM_BODY:  # the loading thread: held until the test says
            loading.set()
            assert loaded.wait(10)
        return parse_lines(body, *args, **kwargs)

    monkeypatch.setattr(lineparsers, "parse_lines", load_held)
    parsers._helped = True  # a server's, without starting its helper
    assert by_series(parsers.parse(plain, "ns")) == by_series(expected)
    assert loading.wait(10) and scanned == []  # read while the scan loads, not waiting for it
    loaded.set()
    assert parsers.compiled.wait(10)
    assert scanned == ["warm"]
    assert by_series(parsers.parse(plain, "ns")) == by_series(expected)
    assert scanned == ["warm", "cpu,"]


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
