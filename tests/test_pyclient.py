"""tsq.Client, the Python client: the same calls against a server (over HTTP) and against a data
directory (in this process), answering lists, series as a wide DataFrame and a plot, and runs as
a DataFrame."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

import tsq
from tests.conftest import serving
from tsq.answers import Answer, column_name
from tsq.config import Settings
from tsq.errors import BadRequest, NotFound, TslError
from tsq.service import Service

matplotlib.use("Agg")

POINTS = """cpu,dc=gra,host=a value=1 1795478400
cpu,dc=gra,host=a value=2 1795478460
cpu,dc=gra,host=b value=10 1795478460
"""
LOOPS = """functions:
  counter:
    handler: counter.js
"""
HANDLER = """export default async function (event) {
  console.log(`window ${event.window.start}`);
  await artifacts.json("summary.json", {start: event.window.start});
  return {changes: 0, start: event.window.start};
}
"""


@pytest.fixture(scope="module", params=["server", "data directory"])
def client(request: pytest.FixtureRequest) -> Iterator[tsq.Client]:
    with tempfile.TemporaryDirectory() as data:
        if request.param == "data directory":
            with tsq.Client(data_dir=data) as local:
                yield local
            return
        service = Service(Settings.load(data))
        try:
            with serving(service) as url, tsq.Client(url, token=service.admin_token) as remote:
                yield remote
        finally:
            service.close()


def test_it_talks_to_what_it_was_given(client: tsq.Client) -> None:
    assert client.where.startswith(("server http://127.0.0.1:", "data directory "))
    assert repr(client).startswith("<tsq.Client of ")


def test_points_come_back_as_a_wide_dataframe(client: tsq.Client) -> None:
    assert client.write(POINTS, precision="s") == 3
    answer = client.query_tsl('select("cpu").from("2026-11-24T00:00:00Z", '
                              '"2026-11-24T01:00:00Z")')
    assert len(answer) == 2
    frame = answer.to_pandas()
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC" and frame.index.name == "time"
    assert list(frame.columns) == ['cpu{dc="gra", host="a"}', 'cpu{dc="gra", host="b"}']
    assert list(frame.index) == [pd.Timestamp("2026-11-24T00:00:00Z"),
                                 pd.Timestamp("2026-11-24T00:01:00Z")]
    assert frame['cpu{dc="gra", host="a"}'].tolist() == [1.0, 2.0]
    b = frame['cpu{dc="gra", host="b"}']
    assert np.isnan(b.iloc[0]) and b.iloc[1] == 10.0  # no point of b at a's first time


def test_an_answer_plots_one_line_per_series(client: tsq.Client) -> None:
    client.write(POINTS, precision="s")
    ax = client.query_tsl('select("cpu").from("2026-11-24T00:00:00Z", "2026-11-24T01:00:00Z")'
                          ).plot(title="cpu")
    assert len(ax.get_lines()) == 2
    assert ax.get_title() == "cpu"
    empty = client.query_tsl('select("nothing").from(0, 1000)')
    assert empty.to_pandas().empty
    assert empty.plot().get_lines() == []


def test_warpscript_answers_its_stack_and_series(client: tsq.Client) -> None:
    answer = client.query_ws("1 2 +")
    assert answer.stack == [3]
    assert len(answer) == 0


def test_a_loop_is_deployed_run_and_read_back(client: tsq.Client, tmp_path: Path) -> None:
    (tmp_path / "loops.yml").write_text(LOOPS)
    (tmp_path / "counter.js").write_text(HANDLER)
    [deployed] = client.deploy(tmp_path / "loops.yml")
    assert deployed["name"] == "counter"
    assert [loop["name"] for loop in client.loops()] == ["counter"]
    start = datetime(2026, 11, 24, tzinfo=UTC)
    run = client.run("counter", window=(start, "2026-11-24T00:05:00Z"))
    assert run["status"] == "success"
    assert run["result"] == {"changes": 0, "start": "2026-11-24T00:00:00.000Z"}
    assert client.get_run(run["id"][:12])["id"] == run["id"]
    assert [line["message"] for line in client.logs(run["id"])] == [
        "window 2026-11-24T00:00:00.000Z"]
    [kept] = client.artifacts(run["id"])
    assert kept["name"] == "summary.json"
    assert json.loads(client.artifact(run["id"], "summary.json")) == {
        "start": "2026-11-24T00:00:00.000Z"}


def test_runs_make_a_ledger(client: tsq.Client) -> None:
    runs = client.runs("counter", status="success")
    assert runs and all(run["loop"] == "counter" for run in runs)
    ledger = runs.to_pandas()
    assert ledger.loc[0, "status"] == "success"
    assert ledger.loc[0, "window_start"] == pd.Timestamp("2026-11-24T00:00:00Z")
    assert ledger.loc[0, "finished"] >= ledger.loc[0, "started"]
    assert ledger.loc[0, "result"] == {"changes": 0, "start": "2026-11-24T00:00:00.000Z"}
    assert client.runs("nothing").to_pandas().empty


def test_errors_are_tsq_errors(client: tsq.Client) -> None:
    with pytest.raises(TslError):
        client.query_tsl("select(")
    with pytest.raises(NotFound, match="no loop named 'missing'"):
        client.run("missing")
    with pytest.raises(BadRequest, match="has no time zone"):
        client.run("counter", window=(datetime(2026, 1, 1), datetime(2026, 1, 2)))


def test_column_names_read_as_selectors() -> None:
    assert column_name("cpu", {}) == "cpu"
    assert column_name("cpu", {"host": "a", "dc": "gra"}) == 'cpu{dc="gra", host="a"}'


def test_the_same_series_twice_keeps_both_columns() -> None:
    one = {"name": "x", "labels": {}, "timestamps": [1000], "values": [1.0]}
    frame = Answer({"series": [one, {**one, "values": [2.0]}]}).to_pandas()
    assert list(frame.columns) == ["x", "x'"]
    assert frame.iloc[0].tolist() == [1.0, 2.0]


def test_import_tsq_stays_light() -> None:
    code = ("import sys, tsq; light = 'tsq.client' not in sys.modules and 'pandas' not in "
            "sys.modules; print(light, tsq.Client.__module__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.split() == ["True", "tsq.client"]
