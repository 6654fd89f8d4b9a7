"""Every example of docs/tsl-functions.md runs: natively on a small store, where it must give
series with points, and through the WarpScript compiler."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from tests.conftest import ROOT
from tsq import tsl
from tsq.connectors.embedded import EmbeddedStore
from tsq.errors import TslError
from tsq.runtimes.tsl.evaluate import Evaluation
from tsq.series import SeriesSet

DOC = ROOT / "docs" / "tsl-functions.md"
NOW = datetime(2021, 1, 1, tzinfo=UTC)
BLOCK = re.compile(r"### (?P<name>[^\n]+)\n.*?```tsl ?(?P<kind>[a-z-]*)\n(?P<code>.*?)\n```", re.S)


def _examples() -> list[object]:
    found = [(m["name"], m["code"], m["kind"]) for m in BLOCK.finditer(DOC.read_text())]
    return [pytest.param(code, kind, id=name) for name, code, kind in found]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path_factory.mktemp("docs") / "points.duckdb")
    end = int(NOW.timestamp()) * 10**9
    stamps = end - 10**9 * 10 * np.arange(60)[::-1]
    rng = np.random.default_rng(7)
    rows = [("cpu", {"host": h, "dc": dc}, stamps, np.round(rng.uniform(5, 60, 60), 2))
            for h, dc in (("web01", "gra"), ("web02", "gra"), ("web03", "rbx"))]
    rows.append(("mem", {"host": "web01", "dc": "gra"}, stamps, np.round(rng.uniform(1, 8, 60), 2)))
    store.write(SeriesSet.from_series(rows))
    yield store
    store.close()


def test_the_page_has_an_example_for_each_function() -> None:
    assert len(_examples()) >= 55


@pytest.mark.parametrize(("code", "kind"), _examples())
def test_example(code: str, kind: str, store: EmbeddedStore) -> None:
    if kind == "native-only":   # the reference refuses it for Warp 10, with its own message
        with pytest.raises(TslError, match="TSL doesn't allow"):
            tsl.compile(code, "warpscript")
    else:
        assert tsl.compile(code, "warpscript").startswith("NOW 'now' STORE")
    if kind == "meta":
        [listed] = Evaluation(store, now=NOW).run_all(code).meta
        assert listed == ["web01", "web02"]
        return
    if kind == "compile-only":
        with pytest.raises(TslError, match="no connector"):
            tsl.evaluate(code, store, now=NOW)
        return
    found = tsl.evaluate(code, store, now=NOW)
    assert len(found) > 0 and found.points > 0, f"no series from:\n{code}"
