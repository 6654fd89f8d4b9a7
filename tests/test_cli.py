"""The `tsq` command on a local data directory, as a new user would type it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, demo_reports, tsq


@pytest.mark.slow
def test_quick_start(tmp_path: Path) -> None:
    assert "deployed hello version 1" in tsq(tmp_path, "deploy", str(EXAMPLE)).stdout
    ran = tsq(tmp_path, "run", "hello", "--event", "gra", "--json")
    assert ran.returncode == 0, ran.stderr
    record = json.loads(ran.stdout)
    assert record["status"] == "success" and record["result"]["greeting"] == "Hello, ovh-a-gra!"
    history = json.loads(tsq(tmp_path, "runs", "--json").stdout)["runs"]
    assert [r["id"] for r in history] == [record["id"]]
    logs = json.loads(tsq(tmp_path, "logs", record["id"], "--json").stdout)["logs"]
    assert "Hello from ovh-a-gra" in logs[0]["message"]


@pytest.mark.slow
def test_exit_codes_and_errors(tmp_path: Path) -> None:
    (tmp_path / "loops.yml").write_text("functions:\n  boom:\n    handler: boom.js\n")
    (tmp_path / "boom.js").write_text("module.exports = async () => { throw new Error('kaput') }")
    assert tsq(tmp_path, "deploy", str(tmp_path / "loops.yml")).returncode == 0
    failed = tsq(tmp_path, "run", "boom")
    assert failed.returncode == 1 and "kaput" in failed.stderr
    missing = tsq(tmp_path, "run", "nope")
    assert missing.returncode == 3 and "no loop named 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
    (tmp_path / "bad.yml").write_text("functions:\n  x:\n    handler: gone.js\n")
    bad = tsq(tmp_path, "deploy", str(tmp_path / "bad.yml"))
    assert bad.returncode == 3 and "bad.yml:3:14: functions.x.handler" in bad.stderr
    assert "gone.js" in bad.stderr


@pytest.mark.slow
def test_show_and_backfill_a_scheduled_loop(tmp_path: Path) -> None:
    assert tsq(tmp_path, "deploy", str(EXAMPLE)).returncode == 0
    shown = tsq(tmp_path, "show", "heartbeat").stdout
    assert "R/2026-01-01T00:00:00Z/PT10S/ET5S" in shown and shown.count("window [") == 3
    done = tsq(tmp_path, "backfill", "heartbeat", "--from", "2026-01-01T00:00:00Z",
               "--to", "2026-01-01T00:01:00Z")
    assert done.returncode == 0, done.stderr
    assert "6 scheduled times, 6 succeeded, 0 failed, 0 skipped" in done.stdout
    history = json.loads(tsq(tmp_path, "runs", "--loop", "heartbeat", "--json").stdout)["runs"]
    assert sorted(r["result"]["window"][1] for r in history)[0] == "2026-01-01T00:00:00.000Z"
    bad = tsq(tmp_path, "backfill", "heartbeat", "--from", "soon", "--to", "later")
    assert bad.returncode == 3 and "'soon' is not an ISO-8601 time" in bad.stderr


@pytest.mark.slow
def test_query_tsl_and_tsl_compile(tmp_path: Path) -> None:
    points = tmp_path / "points.lp"
    points.write_text("".join(f"clicpu,host=a value={i} {1767225600 + 60 * i}\n" for i in range(5)))
    assert tsq(tmp_path, "write", str(points), "--precision", "s").returncode == 0
    query = 'select("clicpu").from(start, end).sampleBy(2m, sum, "none")'
    found = tsq(tmp_path, "query", "--tsl", query, "-v", "start=1767225600000",
                "-v", "end=1767225900000", "--json")
    assert found.returncode == 0, found.stderr
    [series] = json.loads(found.stdout)["series"]
    assert series["values"] == [1.0, 5.0, 4.0]     # [0:00, 0:02), [0:02, 0:04), [0:04, 0:06)
    assert series["timestamps"] == [1767225600000, 1767225720000, 1767225840000]
    table = tsq(tmp_path, "query", "--tsl", query, "-v", "start=1767225600000",
                "-v", "end=1767225900000")
    assert "clicpu" in table.stdout and "host=a" in table.stdout
    explained = tsq(tmp_path, "query", "--explain", "--tsl", query + '.rename("x")',
                    "-v", "start=1767225600000", "-v", "end=1767225900000").stdout.splitlines()
    assert explained[:3] == [
        "embedded store: read 1 series of clicpu in [2026-01-01T00:00:00.000Z, "
        "2026-01-01T00:05:00.000Z)",
        "embedded store: bucketed by 120 s, sum: 3 buckets", "tsq: rename(x): 1 series, 3 points"]

    bad = tsq(tmp_path, "query", "--tsl", 'select("clicpu").last(1h')
    assert bad.returncode == 3
    assert "missing closing parenthesis" in bad.stderr and "^" in bad.stderr
    assert "Traceback" not in bad.stderr

    warp = tsq(tmp_path, "tsl", "compile", 'select("sys.cpu.nice").last(2m, shift=1h)')
    assert warp.stdout == ("NOW 'now' STORE\n\n[ 'TOKEN' 'sys.cpu.nice' {} $now 1 h  - 2 m ] FETCH \n"
                           "<% DROP DUP DUP ATTRIBUTES SWAP LABELS APPEND RELABEL %> LMAP\n\n")
    prom = tsq(tmp_path, "tsl", "compile", "--to", "promql", "--now", "2021-01-01T00:00:00Z",
               'select("cpu").last(1h).sampleBy(1m, last)')
    assert json.loads(prom.stdout) == [{"query": "cpu", "start": "1609455600", "end": "1609459200",
                                        "step": "1m", "instant_query": False}]


@pytest.mark.slow
def test_demo_runs_the_example_pipeline(tmp_path: Path) -> None:
    started = datetime.now(UTC)
    shown = tsq(tmp_path, "demo")
    assert shown.returncode == 0, shown.stderr
    assert "rolled up 216 hours" in shown.stdout
    made = demo_reports(started, datetime.now(UTC))
    assert any(f"made {count} daily reports" in shown.stdout for count in made)
    reports = json.loads(tsq(tmp_path, "runs", "--loop", "cpu-report", "--json").stdout)["runs"]
    assert len(reports) in made and {r["status"] for r in reports} == {"success"}
    newest = max(reports, key=lambda r: r["scheduled_ms"])
    assert f"newest report: run {newest['id']} (success)" in shown.stdout
    chart = tsq(tmp_path, "artifacts", "get", newest["id"], "cpu-hourly.png", "-o",
                str(tmp_path / "chart.png"))
    assert chart.returncode == 0, chart.stderr
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    retentions = json.loads(tsq(tmp_path, "runs", "--loop", "cpu-retention", "--json").stdout)
    assert sum(r["result"]["deleted"] for r in retentions["runs"]) > 0


def test_show_says_what_a_shorthand_runs_and_where(tmp_path: Path) -> None:
    loops = tmp_path / "loops.yml"
    loops.write_text("""connectors:
  influx: {type: influxdb, url: "http://user:pw@127.0.0.1:8086", database: telegraf,
           password: {secret: hunter2}}
functions:
  web-1m:
    rollup: {from: cpu, to: web_1m, span: 1m, aggregate: mean, by: [dc, host]}
    connector: influx
  web-retention:
    retention: {select: cpu, keep: 7d, covered_by: [web-1m]}
""")
    assert tsq(tmp_path / "data", "deploy", str(loops)).returncode == 0
    rollup = tsq(tmp_path / "data", "show", "web-1m").stdout.splitlines()
    assert rollup[:2] == ["web-1m (default), rollup cpu → web_1m (1m mean by dc, host)",
                          "   connector influx (influxdb at http://user:********@127.0.0.1:8086)"]
    retention = tsq(tmp_path / "data", "show", "web-retention").stdout.splitlines()
    assert retention[0] == "web-retention (default), retention of cpu (keep 7d, covered by web-1m)"
    shown = tsq(tmp_path / "data", "show", "web-1m", "--json").stdout
    assert "hunter2" not in shown and json.loads(shown)["spec"]["connector"]["password"] == \
        "********"


def test_the_cli_starts_without_the_database_or_v8() -> None:
    """Every CLI call pays its imports: SQLAlchemy and V8 load only when a command works on a
    local data directory, never for --help or a call to a running server."""
    probe = ("import sys, tsq.cli; heavy = {'sqlalchemy', 'STPyV8', 'duckdb', 'pandas'}; "
             "print(sorted(heavy & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
