"""Reports: a JavaScript loop keeps files with its run (artifacts.save/json/html/csv/chart),
listed and downloaded through the API and the CLI; the CSV and chart rendering on their own."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from matplotlib import image

from tests.conftest import deploy, run
from tsq import reports
from tsq.errors import BadRequest
from tsq.series import NS_PER_MS, SeriesSet
from tsq.service import Service

BASE_MS = 1767225600000  # 2026-01-01T00:00:00Z
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

REPORT = f"""
export default async function () {{
  const base = {BASE_MS};
  await db.write([
    {{name: "art_cpu", labels: {{dc: "gra", host: "web01"}}, timestamps: [base, base + 60000, base + 120000], values: [1.5, 2.5, 4]}},
    {{name: "art_cpu", labels: {{dc: "gra", host: "web02"}}, timestamps: [base, base + 60000], values: [10, 20]}},
  ]);
  const cpu = await db.select('art_cpu{{dc="gra"}}');
  const saved = {{
    csv: await artifacts.csv("cpu.csv", cpu),
    summary: await artifacts.json("summary.json", {{series: cpu.length, hosts: cpu.map(s => s.labels.host)}}),
    page: await artifacts.html("report.html", "<h1>CPU</h1><img src='cpu.png'>"),
    chart: await artifacts.chart("cpu.png", cpu, {{title: "CPU", ylabel: "%", width: 640, height: 320, kind: "step"}}),
    svg: await artifacts.chart("cpu.svg", cpu[0]),
    raw: await artifacts.save("raw.bin", new Uint8Array([0, 1, 2, 255]).subarray(1)),
    first: await artifacts.save("notes.txt", "first draft"),
    notes: await artifacts.save("notes.txt", "second draft", "text/plain; charset=utf-8"),
  }};
  return saved;
}}
"""


@pytest.fixture(scope="module")
def report_run(api: httpx.Client) -> dict[str, object]:
    assert deploy(api, "art-report", REPORT).status_code == 201
    answer = run(api, "art-report")
    assert answer.status_code == 200, answer.text
    record: dict[str, object] = answer.json()
    return record


def _download(api: httpx.Client, run_id: str, name: str) -> httpx.Response:
    answer = api.get(f"/v1/runs/{run_id}/artifacts/{name}")
    assert answer.status_code == 200, answer.text
    return answer


def test_a_loop_keeps_its_reports_with_the_run(api: httpx.Client,
                                               report_run: dict[str, object]) -> None:
    run_id, saved = str(report_run["id"]), report_run["result"]
    assert isinstance(saved, dict)
    assert saved["csv"]["contentType"] == "text/csv"
    assert saved["csv"]["url"] == f"/v1/runs/{run_id}/artifacts/cpu.csv"
    assert saved["notes"]["size"] == len(b"second draft")
    listed = api.get(f"/v1/runs/{run_id}/artifacts").json()
    assert listed["run"] == run_id
    assert [(a["name"], a["contentType"]) for a in listed["artifacts"]] == [
        ("cpu.csv", "text/csv"), ("cpu.png", "image/png"), ("cpu.svg", "image/svg+xml"),
        ("notes.txt", "text/plain; charset=utf-8"), ("raw.bin", "application/octet-stream"),
        ("report.html", "text/html"), ("summary.json", "application/json")]
    for artifact in listed["artifacts"]:
        body = api.get(artifact["url"])
        assert len(body.content) == artifact["size"], artifact["name"]
        assert body.headers["content-disposition"] == f'inline; filename="{artifact["name"]}"'
        assert body.headers["content-type"].startswith(artifact["contentType"])


def test_saving_a_name_again_replaces_it_and_bytes_cross_whole(
        api: httpx.Client, report_run: dict[str, object]) -> None:
    run_id = str(report_run["id"])
    assert _download(api, run_id, "notes.txt").content == b"second draft"
    assert _download(api, run_id, "raw.bin").content == b"\x01\x02\xff"
    assert _download(api, run_id, "summary.json").json() == {"series": 2,
                                                             "hosts": ["web01", "web02"]}
    page = _download(api, run_id, "report.html")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "sandbox" in page.headers["content-security-policy"]
    assert page.text == "<h1>CPU</h1><img src='cpu.png'>"


def test_the_csv_holds_every_point(api: httpx.Client, service: Service,
                                   report_run: dict[str, object]) -> None:
    answer = _download(api, str(report_run["id"]), "cpu.csv")
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert service.artifacts.get(str(report_run["id"]), "cpu.csv")[1] == answer.content
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == ["time", "name", "dc", "host", "value"]
    parsed = [(r[0], r[1], r[2], r[3], float(r[4])) for r in rows[1:]]
    assert parsed == [
        ("2026-01-01T00:00:00.000Z", "art_cpu", "gra", "web01", 1.5),
        ("2026-01-01T00:01:00.000Z", "art_cpu", "gra", "web01", 2.5),
        ("2026-01-01T00:02:00.000Z", "art_cpu", "gra", "web01", 4.0),
        ("2026-01-01T00:00:00.000Z", "art_cpu", "gra", "web02", 10.0),
        ("2026-01-01T00:01:00.000Z", "art_cpu", "gra", "web02", 20.0)]


def test_the_chart_is_a_png_of_the_size_asked(api: httpx.Client,
                                              report_run: dict[str, object]) -> None:
    run_id = str(report_run["id"])
    png = _download(api, run_id, "cpu.png")
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG_SIGNATURE)
    pixels = image.imread(io.BytesIO(png.content), format="png")
    assert pixels.shape[:2] == (320, 640)
    assert np.ptp(pixels[..., :3]) > 0  # something was drawn
    svg = _download(api, run_id, "cpu.svg")
    assert svg.content.lstrip().startswith(b"<?xml") and b"<svg" in svg.content


BAD_INPUTS = """
export default async function () {
  const seen = [];
  const unsettled = artifacts.save(42, "x");
  seen.push(unsettled instanceof Promise ? "a promise" : "thrown");
  for (const attempt of [
      () => unsettled,
      () => artifacts.csv("cpu.txt", []),
      () => artifacts.csv("cpu.csv", [{labels: {}}]),
      () => artifacts.csv("cpu.csv", "cpu"),
      () => artifacts.chart("cpu.jpg", []),
      () => artifacts.chart("cpu.png", [], {colour: "red"}),
      () => artifacts.chart("cpu.png", [], {width: 99999}),
      () => artifacts.chart("cpu.png", [], {kind: "bar"}),
      () => artifacts.chart("cpu.png", [], "big"),
      () => artifacts.save("x.bin", {a: 1}),
      () => artifacts.save("x.txt", "x", "not a type"),
      () => artifacts.json("a.json", undefined),
      () => artifacts.json("a.txt", {}),
      () => artifacts.html("a.html", 42),
      () => artifacts.save("bad name.txt", "x"),
  ]) {
    try { await attempt(); seen.push("no error"); } catch (e) { seen.push(e.name + ": " + e.message); }
  }
  return seen;
}
"""


def test_bad_input_rejects_with_a_message_naming_the_method(api: httpx.Client) -> None:
    assert deploy(api, "art-bad", BAD_INPUTS).status_code == 201
    seen = run(api, "art-bad").json()["result"]
    expected = [
        "a promise",
        "TypeError: artifacts.save needs a file name as its first argument, like 'notes.txt', got 42",
        "TypeError: artifacts.csv('cpu.txt'): the name must end in .csv, like 'cpu.csv'",
        "TypeError: artifacts.csv needs series as db.select and tsl() return them",
        "TypeError: artifacts.csv needs series as db.select and tsl() return them",
        "TypeError: artifacts.chart('cpu.jpg'): the name must end in .png or .svg, like 'cpu.png' (the format follows the extension)",
        "TypeError: artifacts.chart: unknown option 'colour'; the options are title, ylabel, width, height, kind",
        "TypeError: artifacts.chart: option width must be a whole number of pixels from 100 to 4000, got 99999",
        'TypeError: artifacts.chart: option kind must be "line" or "step", got "bar"',
        'TypeError: artifacts.chart\'s options must be an object like {title: "CPU", kind: "step"}, got "big"',
        "TypeError: artifacts.save needs the content as a string, an ArrayBuffer or a typed array (bytes), got object",
        'TypeError: artifacts.save: the content type must be a media type like "text/plain"',
        "TypeError: artifacts.json: the value has no JSON form (a undefined)",
        "TypeError: artifacts.json('a.txt'): the name must end in .json, like 'summary.json'",
        "TypeError: artifacts.html needs the page as a string",
        "BadRequest: artifacts.save('bad name.txt'): artifact name 'bad name.txt' is not a file name like report.csv",
    ]
    assert len(seen) == len(expected)
    for got, want in zip(seen, expected, strict=True):
        assert got.startswith(want), (got, want)


def test_unknown_runs_and_names_are_404(api: httpx.Client,
                                        report_run: dict[str, object]) -> None:
    for path in ("/v1/runs/nope/artifacts", "/v1/runs/nope/artifacts/cpu.csv"):
        answer = api.get(path)
        assert answer.status_code == 404
        assert answer.json()["error"] == {"type": "NotFound", "details": {},
                                          "message": "no run with id or id prefix 'nope'"}
    missing = api.get(f"/v1/runs/{report_run['id']}/artifacts/gone.csv")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"].startswith(
        f"run {report_run['id']} has no artifact 'gone.csv'; its artifacts: cpu.csv, cpu.png")
    empty = run(api, "art-bad").json()["id"]
    assert api.get(f"/v1/runs/{empty}/artifacts").json() == {"run": empty, "artifacts": []}


def test_resume_runs_a_failed_run_again(api: httpx.Client) -> None:
    source = """export default async () => {
      if (!(await db.select("art_flag")).length) throw new Error("no flag yet");
      return "flag seen";
    }"""
    assert deploy(api, "art-flag", source).status_code == 201
    failed = run(api, "art-flag").json()["error"]["details"]["run"]
    assert api.post("/v1/runs/nope/resume").status_code == 404
    assert api.post("/write", content=b"art_flag value=1 1").status_code == 204
    resumed = api.post(f"/v1/runs/{failed['id']}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json() == {"pipeline": failed["pipeline_id"], "resumed": [failed["id"]],
                              "steps": 1}
    record = _until_ended(api, failed["id"])
    assert (record["status"], record["result"], record["attempt"]) == ("success", "flag seen", 2)
    again = api.post(f"/v1/runs/{failed['id']}/resume")
    assert again.status_code == 409 and again.json()["error"]["type"] == "Conflict"
    assert "nothing to resume" in again.json()["error"]["message"]


def _until_ended(api: httpx.Client, run_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record: dict[str, object] = api.get(f"/v1/runs/{run_id}").json()
        if record["status"] not in ("queued", "running"):
            return record
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end")


# -- the rendering functions on their own ---------------------------------------------------------

def _series() -> SeriesSet:
    minute = 60_000 * NS_PER_MS
    return SeriesSet.from_series([
        ("cpu", {"host": "a,b", "dc": "gra"}, [0, minute], [1.5, np.nan]),
        ("mem", {"name": "big"}, [NS_PER_MS], [3.0])])


def test_csv_columns_are_time_name_labels_value() -> None:
    rows = list(csv.reader(io.StringIO(reports.csv_bytes(_series()).decode())))
    assert rows == [["time", "name", "dc", "host", "label_name", "value"],
                    ["1970-01-01T00:00:00.000Z", "cpu", "gra", "a,b", "", "1.5"],
                    ["1970-01-01T00:01:00.000Z", "cpu", "gra", "a,b", "", ""],
                    ["1970-01-01T00:00:00.001Z", "mem", "", "", "big", "3.0"]]
    assert reports.csv_bytes(SeriesSet.empty()) == b"time,name,value\n"


def test_series_from_js_reads_the_packed_buffer() -> None:
    meta = [{"name": "cpu", "labels": {"dc": "gra"}, "count": 2},
            {"name": "mem", "labels": {}, "count": 1}]
    packed = np.array([2000.0, 1000.0, 5.0, 10.0, 20.0, 30.0])
    found = reports.series_from_js("csv", meta, packed)
    assert found.names == ("cpu", "mem") and found.labels[0] == {"dc": "gra"}
    assert found.timestamps.tolist() == [1000 * NS_PER_MS, 2000 * NS_PER_MS, 5 * NS_PER_MS]
    assert found.values.tolist() == [20.0, 10.0, 30.0]  # each series sorted by time
    with pytest.raises(BadRequest, match="finite epoch millisecond"):
        reports.series_from_js("csv", meta[:1], np.array([np.nan, 1.0, 1.0, 2.0]))
    with pytest.raises(BadRequest, match="count 3 points but 2 were sent"):
        reports.series_from_js("chart", meta, np.zeros(4))


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_chart_has_the_size_and_format_asked(fmt: str) -> None:
    options = reports.ChartOptions(title="CPU", width=300, height=200, kind="step")
    drawn = reports.chart_bytes(_series(), options, "svg" if fmt == "svg" else "png")
    if fmt == "svg":
        assert b'width="300pt"' in drawn or b'width="216pt"' in drawn
        return
    assert drawn.startswith(PNG_SIGNATURE)
    assert image.imread(io.BytesIO(drawn), format="png").shape[:2] == (200, 300)


def test_an_empty_chart_says_so_rather_than_failing() -> None:
    drawn = reports.chart_bytes(SeriesSet.empty(), reports.ChartOptions(width=200, height=100))
    assert image.imread(io.BytesIO(drawn), format="png").shape[:2] == (100, 200)


def test_names_and_options_are_checked() -> None:
    assert reports.chart_options(None) == reports.ChartOptions()
    assert reports.chart_options({"width": 1200.0, "kind": "step"}).width == 1200
    with pytest.raises(BadRequest, match="option height must be a whole number"):
        reports.chart_options({"height": True})
    with pytest.raises(BadRequest, match="option title must be a string"):
        reports.chart_options({"title": 3})
    assert reports.check_name("save", "anything.xyz") == "anything.xyz"
    assert reports.check_name("chart", "CPU.SVG") == "CPU.SVG"
    assert reports.chart_format("CPU.SVG") == "svg"
    with pytest.raises(BadRequest, match=r"artifacts.html\('a.txt'\): the name must end in "
                                         r"\.html or \.htm"):
        reports.check_name("html", "a.txt")
    with pytest.raises(BadRequest, match="got null"):
        reports.check_name("csv", None)
    assert reports.check_content_type("save", "text/plain; charset=utf-8") is not None
    with pytest.raises(BadRequest, match="media type"):
        reports.check_content_type("save", "text/plain\r\nX-Evil: 1")
    assert reports.legend_label(_series()[0]) == "cpu{dc=gra,host=a,b}"


# -- the CLI --------------------------------------------------------------------------------------

CLI_REPORT = """module.exports = async () => {
  await artifacts.csv("points.csv", [{name: "c", labels: {}, timestamps: [0, 1000], values: [1, 2]}]);
  await artifacts.json("summary.json", {ok: true});
  return {ok: true};
};
"""


def tsq(data: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TSQ_DATA_DIR": str(data), "TSQ_WORKERS": "1", "COLUMNS": "200"}
    env.pop("TSQ_URL", None)
    return subprocess.run([sys.executable, "-m", "tsq", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False, cwd=cwd)


@pytest.mark.slow
def test_cli_shows_a_run_and_downloads_its_artifacts(tmp_path: Path) -> None:
    data, here = tmp_path / "data", tmp_path / "here"
    here.mkdir()
    (tmp_path / "loops.yml").write_text("functions:\n  report:\n    handler: report.js\n")
    (tmp_path / "report.js").write_text(CLI_REPORT)
    assert tsq(data, "deploy", str(tmp_path / "loops.yml")).returncode == 0
    ran = tsq(data, "run", "report", "--json")
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["id"]

    listed = tsq(data, "runs", "--loop", "report", "--status", "success", "--json")
    assert [r["id"] for r in json.loads(listed.stdout)["runs"]] == [run_id]
    shown = tsq(data, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    for expected in ("success", "report (default)", "pipeline", "attempt", "points.csv",
                     "text/csv", f"/v1/runs/{run_id}/artifacts/summary.json"):
        assert expected in shown.stdout, expected
    as_json = json.loads(tsq(data, "runs", "show", run_id, "--json").stdout)
    assert [a["name"] for a in as_json["artifacts"]] == ["points.csv", "summary.json"]

    got = tsq(data, "artifacts", "get", run_id, "points.csv", cwd=here)
    assert got.returncode == 0, got.stderr
    assert (here / "points.csv").read_text().splitlines()[1] == "1970-01-01T00:00:00.000Z,c,1.0"
    refused = tsq(data, "artifacts", "get", run_id, "points.csv", cwd=here)
    assert refused.returncode == 3 and "exists; add --force" in refused.stderr
    forced = tsq(data, "artifacts", "get", run_id, "summary.json", "-o",
                 str(here / "points.csv"), "--force")
    assert forced.returncode == 0 and json.loads((here / "points.csv").read_text()) == {"ok": True}
    missing = tsq(data, "artifacts", "get", run_id, "gone.csv", cwd=here)
    assert missing.returncode == 3 and "has no artifact 'gone.csv'" in missing.stderr
    assert "Traceback" not in missing.stderr

    nothing = tsq(data, "runs", "resume", run_id)
    assert nothing.returncode == 1 and "nothing to resume" in nothing.stderr
    assert "Traceback" not in nothing.stderr
