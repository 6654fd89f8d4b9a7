"""The benchmarks still work (quick mode: small sizes, no timing claims)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import pgserver
from tests.conftest import ROOT


def quick(*names: str) -> subprocess.CompletedProcess[str]:
    """`python -m benchmarks --quick NAMES`, which must succeed."""
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", *names], cwd=ROOT,
                          capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_scheduler_benchmark_runs_and_loses_nothing() -> None:
    done = quick("scheduler")
    facts = [json.loads(line[line.index("{"):]) for line in done.stdout.splitlines()
             if line.startswith("scheduler") and line.rstrip().endswith("}")]
    tsq = next(f for f in facts if "duplicate_keys" in f)
    assert tsq["duplicate_keys"] == 0 and tsq["lost_times"] == 0
    assert tsq["loops_that_fired"] == tsq["loops"]
    assert tsq["resume_s"] is not None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_rollup_benchmark_runs_and_agrees_with_its_peers() -> None:
    done = quick("rollup")  # the answers are compared before timing
    assert "tsq kernels" in done.stdout and "pandas groupby.resample" in done.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ingest_benchmark_runs_and_stores_every_point() -> None:
    done = quick("ingest")  # each store is counted after the writes
    for when in ("a past day", "the newest 72 minutes"):
        for clients in (1, 4):
            assert f"tsq /write (embedded), {when}, {clients} client(s)" in done.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_last_window_benchmark_runs_and_agrees_with_its_peers() -> None:
    done = quick("last_window")  # every store's means are checked against numpy first
    for window in ("1m", "1h"):
        assert f"tsq POST /v1/query, {window}" in done.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tsl_compile_benchmark_runs_and_prints_its_rows() -> None:
    done = quick("tsl_compile")  # every parser's tree is compared first
    for impl in ("lark Earley tree", "parse_script (LALR + syntax)", "bind (each run: tree cached)",
                 "parse (LALR + syntax + bind)"):
        assert f"tsl_compile      {impl}" in done.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tsl_rollup_benchmark_runs_and_agrees_with_its_peers() -> None:
    done = quick("tsl_rollup")  # every answer is checked before timing
    assert "tsq TSL loop run (deployed)" in done.stdout
    assert "tsq TSL query, POST /v1/query" in done.stdout
    facts = [json.loads(line[line.index("{"):]) for line in done.stdout.splitlines()
             if line.startswith("tsl_rollup") and line.rstrip().endswith("}")]
    assert any(f.get("points_read") == 100 * 8640 for f in facts)  # [t0, t0 + 1 day): all


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_javascript_benchmarks_run_and_data_round_trips() -> None:
    done = quick("js_invocation", "js_data")  # js_data checks what came back
    assert "bare V8: fresh context + eval (floor)" in done.stdout
    assert "tsq db.write from a Float64Array (10k)" in done.stdout
    assert "runs_per_s" in done.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cardinality_benchmark_runs_and_finds_its_series() -> None:
    done = quick("cardinality")  # each select finds its one series
    facts = [json.loads(line[line.index("{"):]) for line in done.stdout.splitlines()
             if line.startswith("cardinality") and line.rstrip().endswith("}")]
    ratios = [f for f in facts if "write_ratio" in f]
    assert len(ratios) == 3 and ratios[0]["write_ratio"] == ratios[0]["select_ratio"] == 1.0
    assert "one-series select, 10000 series" in done.stdout


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_postgres_runs_benchmark_measures_both_backends() -> None:
    reason = pgserver.missing()
    if reason is not None:
        pytest.skip(reason)
    done = quick("postgres_runs")  # every run is created and claimed, or it fails
    facts = {line[len("postgres_runs"):line.index("{")].strip(): json.loads(line[line.index("{"):])
             for line in done.stdout.splitlines()
             if line.startswith("postgres_runs") and line.rstrip().endswith("}")}
    assert set(facts) == {"SQLite", "PostgreSQL", "PostgreSQL async commit"}, facts
    assert all(f["inserts_per_s"] > 0 and f["claims_per_s_in_batches"] > 0
               for f in facts.values())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_footprint_benchmark_runs_and_counts_every_point() -> None:
    done = quick("footprint")  # each store is counted before it is measured
    facts = {line.split("{")[0].split(None, 1)[1].strip(): json.loads(line[line.index("{"):])
             for line in done.stdout.splitlines() if line.startswith("footprint")}
    tsq = facts["tsq embedded (DuckDB)"]
    assert tsq["points"] == 10 * 8640 and 0 < tsq["bytes_per_point"] < 64
    assert facts["tsq embedded, compacted"]["bytes"] <= tsq["bytes"]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_cluster_benchmark_measures_the_queue_and_the_failover() -> None:
    reason = pgserver.missing()
    if reason is not None:
        pytest.skip(reason)
    done = quick("cluster")  # every burst's runs end, every kill is followed by a fire
    rows = [line for line in done.stdout.splitlines() if line.startswith("cluster_")]
    assert any(row.startswith("cluster_failover") for row in rows), done.stdout
    ratios = [json.loads(row[row.index("{"):]) for row in rows
              if row.startswith("cluster_runs") and "{" in row]
    assert len(ratios) == 2 and all(
        len(r["ratios"]) == len(r["work_queue"]) == len(r["one_process"]) >= 2
        and min(r["work_queue"] + r["one_process"]) > 0 for r in ratios), done.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_trust_probes_run_and_every_route_asks_for_a_token() -> None:
    done = quick("trust")
    facts = {line.split("{", 1)[0].split(None, 1)[1].strip(): json.loads(line[line.index("{"):])
             for line in done.stdout.splitlines()
             if line.startswith("trust") and line.rstrip().endswith("}")}
    tokenless = facts["token-less requests"]
    assert tokenless["refused_401_or_login"] == tokenless["routes_needing_a_token"] > 30
    assert "GET /healthz" in tokenless["open_routes"]
    assert set(facts["100 concurrent sync runs"]["answers"]) <= {"200", "429"}
